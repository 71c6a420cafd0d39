"""Backends, chosen by one model string.

The forms, what each runs, and the help and error text about them are listed once, in
``rlaif.backends.specs.MODEL_SPECS``; ``parse_model_spec`` splits a string into its backend.

Beside the backends: ``checkpoints`` (the embedded model converted once to a Hugging Face
checkpoint, local checkpoints checked and their tokenizers loaded), ``accelerator`` (the
device and dtype: a visible CUDA GPU in bf16, otherwise the CPU), ``ratelimit`` (pacing and
retries of a server's requests), ``cached`` (every call through the run store) and
``gguf_export`` (a checkpoint written once as GGUF for llama.cpp). ``check_judge_spec`` says
early whether a judge string is a model string or a scoring function that loads.
"""

from __future__ import annotations

from pathlib import Path

from rlaif.backends.base import Backend, ChoiceScores, Generation, Messages
from rlaif.backends.specs import EMBEDDED, PREFIXES, VALID_SPECS
from rlaif.errors import ModelSpecError
from rlaif.rules import is_programmatic, load_score_function

__all__ = [
    "Backend",
    "ChoiceScores",
    "Generation",
    "Messages",
    "load_backend",
    "parse_model_spec",
    "VALID_SPECS",
]

_OPEN: dict[str, Backend] = {}


def parse_model_spec(spec: str) -> tuple[str, str]:
    """Split a model string into (backend kind, argument); ModelSpecError if it is not valid."""
    spec = (spec or "").strip()
    if spec == EMBEDDED:
        return "llamacpp", EMBEDDED
    kind, sep, arg = spec.partition(":")
    if not sep or not arg or kind not in PREFIXES:
        raise ModelSpecError(f"unknown model {spec!r}; valid forms: {VALID_SPECS}")
    if kind == "llamacpp" and not Path(arg).is_file():
        raise ModelSpecError(f"{spec}: no such GGUF file {arg!r}; valid forms: {VALID_SPECS}")
    if kind == "gguf" and Path(arg).expanduser().is_file():
        raise ModelSpecError(
            f"{spec}: gguf: takes a checkpoint directory to export and run with llama.cpp; "
            f"for a GGUF file write llamacpp:{arg}"
        )
    if kind in ("hf", "gguf"):
        from rlaif.backends.checkpoints import check_checkpoint

        check_checkpoint(Path(arg).expanduser(), spec)
    return kind, arg


def load_backend(spec: str | Backend) -> Backend:
    """Open the backend a model string names (or pass a Backend through).

    Backends are shared within a process: naming ``smollm2`` as policy and judge loads it once.
    """
    if isinstance(spec, Backend):
        return spec
    if spec in _OPEN:
        return _OPEN[spec]
    kind, arg = parse_model_spec(spec)
    if kind == "llamacpp":
        from rlaif.backends.llamacpp import LlamaCppBackend, embedded_model_path

        path = embedded_model_path() if arg == EMBEDDED else Path(arg)
        backend: Backend = LlamaCppBackend(path, model_id=spec)
    elif kind == "hf":
        from rlaif.backends.hf import TransformersBackend

        backend = TransformersBackend(spec, model_id=spec)
    elif kind == "gguf":
        from rlaif.backends.gguf_export import export_gguf
        from rlaif.backends.llamacpp import LlamaCppBackend

        backend = LlamaCppBackend(export_gguf(Path(arg).expanduser()), model_id=spec)
    else:
        from rlaif.backends.openai_compat import OpenAIBackend

        model, _, base_url = arg.partition("@")
        if not model:
            raise ModelSpecError(f"{spec}: no model name; write openai:MODEL@BASE_URL")
        backend = OpenAIBackend(model, base_url or None, model_id=spec)
    _OPEN[spec] = backend
    return backend


def check_judge_spec(spec: str) -> None:
    """Fail early on a bad judge string: a model string, or a scoring function (imported)."""
    if isinstance(spec, str) and is_programmatic(spec):
        load_score_function(spec)
    else:
        parse_model_spec(spec)
