"""GGUF export of checkpoints (``gguf:DIR``): llama.cpp on the export against transformers on
the checkpoint, for the embedded model's converted weights and for changed weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_model import tiny_checkpoint

from rlaif.backends import load_backend, parse_model_spec
from rlaif.backends.checkpoints import resolve_checkpoint
from rlaif.backends.gguf_export import export_gguf, gguf_path
from rlaif.backends.llamacpp import _default_threads
from rlaif.errors import ModelSpecError
from rlaif.synth import generate

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")

RLAIF = shutil.which("rlaif", path=os.path.dirname(sys.executable))

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain why the sky is blue in two sentences.",
]
#: max |log p(llama.cpp, f16 export) - log p(transformers, float32)| over every vocabulary entry
#: at every prompt position: measured 0.080 on the embedded weights and 0.088 on the changed
#: ones (f16 weights, and llama.cpp's f16 KV cache; an f32 export measured 0.030)
LOGPROB_TOL = 0.15
#: greedy tokens that must agree between the two (every measured generation, 5 to 32 tokens
#: long, was identical to the end)
GREEDY_AGREE = 16
#: the noise added to layer NOISY_LAYER's matrices, relative to each matrix's std
NOISY_LAYER, NOISE = 3, 0.5


def _messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A copy of the embedded model's converted checkpoint (never written into the cache)."""
    dest = tmp_path_factory.mktemp("gguf-export") / "base"
    shutil.copytree(resolve_checkpoint("smollm2"), dest)
    return dest


@pytest.fixture(scope="module")
def changed(base: Path) -> Path:
    """The same checkpoint with seeded noise added to every matrix of one layer."""
    from transformers import AutoModelForCausalLM

    dest = base.parent / "changed"
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.model.layers[NOISY_LAYER].parameters():
            if p.ndim == 2:
                p.add_(torch.randn(p.shape, generator=gen) * p.std() * NOISE)
    model.save_pretrained(dest)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (base / name).is_file():
            shutil.copy(base / name, dest / name)
    return dest


def _hf_logprobs(checkpoint: Path) -> list[np.ndarray]:
    """transformers' log-softmax at every position of each prompt (float32 model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32).eval()
    out = []
    for prompt in PROMPTS:
        text = tokenizer.apply_chat_template(
            _messages(prompt), add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
        out.append((ids, torch.log_softmax(logits, dim=-1).numpy()))
    return out


def _gguf_logprobs(path: Path, token_lists: list[list[int]]) -> list[np.ndarray]:
    """llama.cpp's log-softmax at every position of each token list."""
    import llama_cpp

    llm = llama_cpp.Llama(
        str(path),
        n_ctx=512,
        n_threads=_default_threads(),
        n_threads_batch=_default_threads(),
        logits_all=True,
        verbose=False,
    )
    try:
        out = []
        for ids in token_lists:
            llm.reset()
            llm.eval(ids)
            logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
            top = logits.max(axis=-1, keepdims=True)
            out.append(logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True)))
        return out
    finally:
        llm.close()


@pytest.fixture(scope="module")
def logprobs(base: Path, changed: Path) -> dict[str, dict[str, list[np.ndarray]]]:
    """{"base"|"changed": {"hf": [...], "gguf": [...]}}, one array per prompt."""
    result = {}
    for name, checkpoint in (("base", base), ("changed", changed)):
        hf = _hf_logprobs(checkpoint)
        tokens = [ids for ids, _ in hf]
        # the export's chat template tokenizes a prompt as the checkpoint's does
        backend = load_backend(f"gguf:{checkpoint}")
        assert tokens == [backend.prompt_tokens(_messages(p)) for p in PROMPTS]
        result[name] = {
            "hf": [lp for _, lp in hf],
            "gguf": _gguf_logprobs(export_gguf(checkpoint), tokens),
        }
    return result


def _max_diff(a: list[np.ndarray], b: list[np.ndarray], last: bool = False) -> float:
    return max(
        float(np.abs(x[-1] - y[-1] if last else x - y).max()) for x, y in zip(a, b, strict=True)
    )


def test_export_matches_transformers_on_the_embedded_weights(logprobs):
    got = logprobs["base"]
    assert _max_diff(got["gguf"], got["hf"]) < LOGPROB_TOL
    for g, h in zip(got["gguf"], got["hf"], strict=True):
        assert g[-1].argmax() == h[-1].argmax()  # the same next token


def test_export_follows_changed_weights(logprobs):
    base, changed = logprobs["base"], logprobs["changed"]
    assert _max_diff(changed["gguf"], changed["hf"]) < LOGPROB_TOL
    # the noise moves transformers' next-token log-probs a lot, and the export's alike
    moved = _max_diff(changed["hf"], base["hf"], last=True)
    assert moved > 10 * LOGPROB_TOL
    assert _max_diff(changed["gguf"], base["gguf"], last=True) > 10 * LOGPROB_TOL
    for cg, bg, ch, bh in zip(
        changed["gguf"], base["gguf"], changed["hf"], base["hf"], strict=True
    ):
        assert np.abs((cg - bg) - (ch - bh)).max() < 2 * LOGPROB_TOL


@pytest.mark.parametrize("which", ["base", "changed"])
def test_greedy_generations_agree(base, changed, which):
    checkpoint = base if which == "base" else changed
    hf, fast = load_backend(f"hf:{checkpoint}"), load_backend(f"gguf:{checkpoint}")
    tokenizer = hf.tokenizer
    for prompt in PROMPTS:
        a = hf.generate(_messages(prompt), max_tokens=32, temperature=0.0)
        b = fast.generate(_messages(prompt), max_tokens=32, temperature=0.0)
        ids_a = tokenizer(a.text.strip(), add_special_tokens=False)["input_ids"]
        ids_b = tokenizer(b.text.strip(), add_special_tokens=False)["input_ids"]
        n = min(GREEDY_AGREE, len(ids_a), len(ids_b))
        assert n > 0 and ids_a[:n] == ids_b[:n], (a.text, b.text)


def test_export_is_written_once_and_redone_when_the_weights_change(changed):
    path = export_gguf(changed)
    assert path == gguf_path(changed) == changed / "model-f16.gguf"
    written = path.stat().st_mtime_ns
    assert export_gguf(changed).stat().st_mtime_ns == written  # reused
    assert not [p for p in changed.iterdir() if p.name.startswith(".")]  # no temporary left
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_F16
    template = reader.fields["tokenizer.chat_template"].contents()
    assert template == (changed / "chat_template.jinja").read_text(encoding="utf-8")
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names  # tied to token_embd, as in the embedded model
    assert len(names) == 2 + 9 * 30
    del reader
    later = time.time() + 5
    os.utime(changed / "model.safetensors", (later, later))
    assert export_gguf(changed).stat().st_mtime_ns != written


def test_other_architectures_and_tokenizers_are_refused(tmp_path, base):
    tiny = tiny_checkpoint(tmp_path / "tiny")
    for call in (lambda: export_gguf(tiny), lambda: load_backend(f"gguf:{tiny}")):
        with pytest.raises(ModelSpecError, match="not the embedded model's architecture") as e:
            call()
        assert "hf:DIR" in str(e.value)
    assert not gguf_path(tiny).exists()
    # the right shape with another tokenizer (two tokens swapped)
    other = tmp_path / "other-tokenizer"
    other.mkdir()
    shutil.copy(base / "config.json", other / "config.json")
    tok = json.loads((base / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    first, second = list(vocab)[100:102]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    (other / "tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")
    with pytest.raises(ModelSpecError, match="tokenizer is not the embedded model's"):
        export_gguf(other)
    # gguf: names a checkpoint directory, not a GGUF file
    with pytest.raises(ModelSpecError, match="for a GGUF file write llamacpp:"):
        parse_model_spec(f"gguf:{tiny / 'config.json'}")
    assert parse_model_spec(f"gguf:{base}") == ("gguf", str(base))


def test_cli_generates_through_the_export(base):
    assert RLAIF, f"the rlaif console script is not installed next to {sys.executable}"
    args = ["--model", f"gguf:{base}", "--temperature", "0", "--max-tokens", "16"]
    subprocess.run([RLAIF, "generate", "--help"], capture_output=True, timeout=60, check=True)
    proc = subprocess.run(
        [RLAIF, "generate", *args, "--prompt", PROMPTS[0], "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"] == f"gguf:{base}"
    assert gguf_path(base).is_file()
    expected = generate(load_backend(f"gguf:{base}"), PROMPTS[0], temperature=0.0, max_tokens=16)
    assert out["responses"] == expected and expected[0]
