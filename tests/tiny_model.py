"""A tiny randomly-initialized llama-style checkpoint with the real SmolLM2 tokenizer.

The tokenizer is read from the embedded GGUF (no download); the model has one small layer, so
a training step takes well under a second. Tests train it for a few steps and check that the
machinery works (parameters change, losses are finite); its outputs mean nothing.
"""

from __future__ import annotations

from pathlib import Path

from rlaif.backends.llamacpp import embedded_model_path

_TOKENIZER = None


def smollm2_tokenizer():
    """The embedded model's tokenizer (with its chat template), read once from the GGUF."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from transformers import AutoTokenizer

        gguf = embedded_model_path()
        _TOKENIZER = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if _TOKENIZER.pad_token is None:
            _TOKENIZER.pad_token = _TOKENIZER.eos_token
    return _TOKENIZER


def tiny_checkpoint(dir: Path, *, seed: int = 0) -> Path:
    """Write a tiny LlamaForCausalLM (hidden size 32, one layer) and tokenizer to ``dir``.

    Returns ``dir``, usable as ``hf:DIR`` and by ``rlaif train --model``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = smollm2_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
    )
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dir)
    tokenizer.save_pretrained(dir)
    return dir
