"""Models for training and the ``hf:`` backend: checkpoint checks, the converted embedded
model against llama.cpp on the same weights, and seeded generation."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import tiny_checkpoint

from rlaif.backends import load_backend, parse_model_spec
from rlaif.backends.checkpoints import is_checkpoint, resolve_checkpoint
from rlaif.backends.hf import TransformersBackend
from rlaif.errors import BackendError, ModelSpecError

RLAIF = [sys.executable, "-m", "rlaif"]
COMPARE = [
    {
        "role": "user",
        "content": "Which answer is better? A: Paris is the capital of France. B: Berlin. "
        "Reply with A or B.",
    }
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model")


def test_resolve_checkpoint_accepts_hf_and_plain_dir(tiny):
    assert resolve_checkpoint(f"hf:{tiny}") == tiny
    assert resolve_checkpoint(str(tiny)) == tiny
    assert parse_model_spec(f"hf:{tiny}") == ("hf", str(tiny))


def test_resolve_checkpoint_errors(tmp_path, tiny):
    cases = {
        f"hf:{tmp_path / 'missing'}": "no such directory",
        f"hf:{tiny / 'config.json'}": "is a file",
        f"hf:{tmp_path}": "not a Hugging Face checkpoint",
        "openai:gpt@http://x/v1": "cannot be trained",
        "hf:": "needs a checkpoint directory",
    }
    for spec, message in cases.items():
        with pytest.raises(ModelSpecError, match=message):
            resolve_checkpoint(spec)
    # weights without a tokenizer: not usable
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tok / name).write_bytes((tiny / name).read_bytes())
    with pytest.raises(ModelSpecError, match="no tokenizer"):
        resolve_checkpoint(f"hf:{no_tok}")
    # a half-written directory (config only) is not taken for a checkpoint
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    assert not is_checkpoint(half)


def test_bad_hf_model_is_one_error_line(tmp_path):
    proc = subprocess.run(
        [*RLAIF, "generate", "--model", f"hf:{tmp_path}", "--prompt", "hi"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: hf:"), proc.stderr
    assert "not a Hugging Face checkpoint" in lines[0]


def test_tiny_backend_generates_reproducibly(tiny):
    backend = TransformersBackend(f"hf:{tiny}")
    msgs = [{"role": "user", "content": "Say something."}]
    a = backend.generate(msgs, max_tokens=6, temperature=1.0, seed=1)
    b = backend.generate(msgs, max_tokens=6, temperature=1.0, seed=1)
    c = backend.generate(msgs, max_tokens=6, temperature=1.0, seed=2)
    assert a == b
    assert a.text != c.text  # a random 49k-token model: two seeds agreeing is vanishingly rare
    assert a.prompt_tokens == len(backend.prompt_tokens(msgs))
    assert 0 < a.completion_tokens <= 6
    scores = backend.choice_logprobs(msgs, ["A", "B"])
    assert scores.method == "logprobs"
    assert all(v is not None and v < 0 for v in scores.logprobs.values())
    with pytest.raises(BackendError, match="not a single token"):
        backend.choice_logprobs(msgs, ["Antidisestablishmentarianism"])


def test_embedded_through_transformers_matches_llamacpp(smollm2):
    """The converted checkpoint holds the GGUF's weights: same log-probs as llama.cpp."""
    path = resolve_checkpoint("smollm2")
    assert resolve_checkpoint("smollm2") == path  # converted once, then cached
    hf = load_backend(f"hf:{path}")
    assert isinstance(hf, TransformersBackend)
    assert hf.prompt_tokens(COMPARE) == smollm2.prompt_tokens(COMPARE)
    ours = hf.choice_logprobs(COMPARE, ["A", "B"]).logprobs
    theirs = smollm2.choice_logprobs(COMPARE, ["A", "B"]).logprobs
    for choice in ("A", "B"):
        # llama.cpp multiplies in Q4/Q8 arithmetic, transformers in float32: close, not equal
        assert math.isclose(ours[choice], theirs[choice], abs_tol=0.1), (ours, theirs)
    greedy = hf.generate(COMPARE, max_tokens=12)
    assert greedy.text and greedy.finish_reason in ("stop", "length")
