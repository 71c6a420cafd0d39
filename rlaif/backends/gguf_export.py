"""Export of a SmolLM2-shaped Hugging Face checkpoint to a GGUF file that llama.cpp runs.

The checkpoints rlaif trains start from the embedded model, so they share its architecture and
tokenizer: the export copies every metadata key of the embedded GGUF (tokenizer and chat
template included; the checkpoint's own chat template replaces it when it has one) and writes
the checkpoint's weights under llama.cpp's tensor names, in float16 (1-D norms in float32), with
the rotary permutation of the query and key projections that llama.cpp's
``convert_hf_to_gguf.py`` applies (transformers undoes it when it reads a GGUF file). The file
``DIR/model-f16.gguf`` is written once, under a temporary name renamed when complete, and
reused while it is newer than every file it was made from.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rlaif.errors import ModelSpecError

#: the output's weight types: float16 halves the file and the memory read per token
DTYPES = ("f16", "f32")

#: config.json keys that must equal the embedded model's, and the GGUF keys they come from
_SHAPE_KEYS = {
    "hidden_size": "llama.embedding_length",
    "num_hidden_layers": "llama.block_count",
    "intermediate_size": "llama.feed_forward_length",
    "num_attention_heads": "llama.attention.head_count",
    "num_key_value_heads": "llama.attention.head_count_kv",
    "vocab_size": "llama.vocab_size",
}

#: Hugging Face names inside one decoder layer -> llama.cpp names
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}

#: metadata of the embedded file that describes its weights, not the model: rewritten or dropped
_SKIPPED_KEYS = ("general.architecture", "general.file_type", "general.quantization_version")

#: files the export reads; the GGUF is stale when any is newer
_SOURCES = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def gguf_path(checkpoint: Path, dtype: str = "f16") -> Path:
    """Where :func:`export_gguf` writes the GGUF of a checkpoint directory."""
    return Path(checkpoint) / f"model-{dtype}.gguf"


def permute_qk(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary row order of a query or key projection (``LlamaModel.permute``).

    Within each head, Hugging Face keeps the two rotated halves apart; GGUF interleaves them.
    ``n_head`` is the number of heads this projection has (key/value heads for ``k_proj``).
    """
    half = weights.shape[0] // n_head // 2
    return (
        weights.reshape(n_head, 2, half, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)
    )


def _rope_theta(config: dict) -> float | None:
    """The rotary base of a config (transformers 4 ``rope_theta`` or 5 ``rope_parameters``)."""
    params = config.get("rope_parameters") or {}
    rope_type = params.get("rope_type", "default")
    scaling = config.get("rope_scaling")
    if rope_type != "default" or (scaling and scaling.get("rope_type", "default") != "default"):
        return None
    return params.get("rope_theta", config.get("rope_theta"))


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    return field.contents() if field is not None else None


def check_exportable(checkpoint: Path, reader: Any) -> dict:
    """The checkpoint's config if it has the embedded model's architecture and tokenizer.

    Raises ModelSpecError otherwise: such a checkpoint is generated through transformers
    (``hf:DIR``).
    """
    checkpoint = Path(checkpoint)
    other = f"{checkpoint} cannot be exported to GGUF; generate through transformers with hf:DIR"
    try:
        config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelSpecError(f"{other}: its config.json cannot be read ({e})") from e
    problems = []
    if config.get("model_type") != "llama":
        problems.append(f"model_type {config.get('model_type')!r} is not 'llama'")
    for key, gguf_key in _SHAPE_KEYS.items():
        if config.get(key) != _field(reader, gguf_key):
            problems.append(
                f"{key}={config.get(key)} (the embedded model has {_field(reader, gguf_key)})"
            )
    head_dim = config.get("head_dim") or config.get("hidden_size", 0) // max(
        1, config.get("num_attention_heads") or 1
    )
    if head_dim != _field(reader, "llama.rope.dimension_count"):
        problems.append(f"head_dim={head_dim}")
    theta = _rope_theta(config)
    if theta is None or not np.isclose(theta, _field(reader, "llama.rope.freq_base")):
        problems.append("its rotary embedding is not the embedded model's (base, scaling)")
    eps = config.get("rms_norm_eps")
    if eps is None or not np.isclose(eps, _field(reader, "llama.attention.layer_norm_rms_epsilon")):
        problems.append(f"rms_norm_eps={eps}")
    for key in ("attention_bias", "mlp_bias"):
        if config.get(key):
            problems.append(f"{key} is set")
    if config.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={config.get('hidden_act')!r}")
    if problems:
        raise ModelSpecError(
            f"{other}: it is not the embedded model's architecture ({'; '.join(problems)})"
        )
    tokens = _field(reader, "tokenizer.ggml.tokens")
    try:
        tok = json.loads((checkpoint / "tokenizer.json").read_text(encoding="utf-8"))
        vocab = dict(tok["model"]["vocab"])
        vocab.update({t["content"]: t["id"] for t in tok.get("added_tokens", [])})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelSpecError(f"{other}: its tokenizer.json cannot be read ({e})") from e
    if len(vocab) != len(tokens) or any(vocab.get(t) != i for i, t in enumerate(tokens)):
        raise ModelSpecError(f"{other}: its tokenizer is not the embedded model's")
    return config


def _chat_template(checkpoint: Path) -> str | None:
    """The checkpoint's own chat template (``chat_template.jinja`` or tokenizer_config.json)."""
    jinja = checkpoint / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    try:
        config = json.loads((checkpoint / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    template = config.get("chat_template")
    return template if isinstance(template, str) else None


def _tensors(checkpoint: Path, config: dict, dtype: str) -> dict[str, np.ndarray]:
    """The checkpoint's weights under llama.cpp's names, q/k permuted, in the output's types."""
    try:
        from safetensors import safe_open
    except ImportError as e:  # pragma: no cover - the 'train' extra
        raise ModelSpecError("exporting to GGUF needs: pip install safetensors") from e
    files = sorted(checkpoint.glob("*.safetensors"))
    if not files:
        raise ModelSpecError(
            f"{checkpoint}: no *.safetensors weights to export; generate through hf:DIR"
        )
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    float_type = np.float16 if dtype == "f16" else np.float32
    out: dict[str, np.ndarray] = {}
    for file in files:
        # "pt" reads every dtype (bfloat16 included); numpy cannot hold bfloat16
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                weights = f.get_tensor(name).float().numpy()
                if name == "model.embed_tokens.weight":
                    target = "token_embd.weight"
                elif name == "model.norm.weight":
                    target = "output_norm.weight"
                elif name == "lm_head.weight":
                    if config.get("tie_word_embeddings", True):
                        continue  # tied: llama.cpp reuses token_embd, as for the embedded model
                    target = "output.weight"
                else:
                    prefix, _, rest = name.partition(".layers.")
                    layer, _, part = rest.partition(".")
                    if prefix != "model" or not layer.isdigit() or part not in _LAYER_NAMES:
                        raise ModelSpecError(
                            f"{checkpoint}: unexpected tensor {name!r} in {file.name}; "
                            "generate through hf:DIR"
                        )
                    target = f"blk.{layer}.{_LAYER_NAMES[part]}"
                    if part == "self_attn.q_proj.weight":
                        weights = permute_qk(weights, n_head)
                    elif part == "self_attn.k_proj.weight":
                        weights = permute_qk(weights, n_kv)
                out[target] = np.ascontiguousarray(
                    weights.astype(np.float32 if weights.ndim == 1 else float_type)
                )
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{part}"
        for i in range(config["num_hidden_layers"])
        for part in _LAYER_NAMES.values()
    }
    if not config.get("tie_word_embeddings", True):
        expected.add("output.weight")
    missing = sorted(expected - set(out))
    if missing:
        raise ModelSpecError(
            f"{checkpoint}: weights missing from the checkpoint: {', '.join(missing[:5])}"
        )
    return out


def _is_fresh(target: Path, checkpoint: Path) -> bool:
    if not target.is_file():
        return False
    sources = [checkpoint / n for n in _SOURCES] + list(checkpoint.glob("*.safetensors"))
    newest = max((p.stat().st_mtime for p in sources if p.is_file()), default=0.0)
    return target.stat().st_mtime > newest


def _write(path: Path, reader: Any, template: str | None, tensors: dict, dtype: str) -> None:
    """Write a GGUF file: the embedded model's metadata (``reader``), these weights.

    The checkpoint's own chat template, when it has one, replaces the embedded model's.
    """
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=_field(reader, "general.architecture"))
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in _SKIPPED_KEYS:
            continue
        value = field.contents()
        if key == "tokenizer.chat_template" and template:
            value = template
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, value_type, sub_type=sub_type)
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32
    )
    for name, weights in tensors.items():
        writer.add_tensor(name, weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def export_gguf(checkpoint: Path, *, dtype: str = "f16") -> Path:
    """Write ``DIR/model-f16.gguf`` for a checkpoint directory (once) and return its path.

    ``dtype="f32"`` writes ``DIR/model-f32.gguf`` instead: twice the size, slower, and closer
    to transformers (max log-prob difference 0.03 against 0.08 for f16, measured on the
    embedded model's converted checkpoint). The file is reused while it is newer than the
    checkpoint's weights, config and tokenizer. ModelSpecError for a checkpoint that is not
    the embedded model's architecture and tokenizer (generate such a checkpoint through
    transformers, ``hf:DIR``).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    checkpoint = Path(checkpoint).expanduser()
    target = gguf_path(checkpoint, dtype)
    if _is_fresh(target, checkpoint):
        return target
    try:
        import gguf
    except ImportError as e:  # pragma: no cover - the 'train' extra
        raise ModelSpecError(
            "exporting a checkpoint to GGUF needs the 'train' extra (the gguf package): "
            "pip install -c constraints.txt -e '.[train]'"
        ) from e
    from rlaif.backends.llamacpp import embedded_model_path

    reader = gguf.GGUFReader(str(embedded_model_path()))
    config = check_exportable(checkpoint, reader)
    tensors = _tensors(checkpoint, config, dtype)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}-", dir=checkpoint)
    except OSError as e:
        raise ModelSpecError(f"{checkpoint}: cannot write its GGUF export there ({e})") from e
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)  # mkstemp makes it private; the checkpoint's other files are not
    try:
        _write(tmp, reader, _chat_template(checkpoint), tensors, dtype)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
