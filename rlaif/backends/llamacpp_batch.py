"""Several generations decoded in lockstep in one llama.cpp batch (the low-level API).

One llama.cpp context with ``n_seq_max`` sequences, each with its own KV stream
(``kv_unified=False``): a sequence's cells are laid out exactly as in a one-sequence context,
so its attention sums run in the same order as single-stream decoding. Each distinct prompt is
evaluated once (in chunks of ``n_batch``, as ``Llama.eval`` does) and its KV copied to the other
sequences that sample the same prompt; a prompt that shares a head with one evaluated before it
(the chat template's system turn, a conversation's earlier turns) copies that head's KV and
evaluates its own tail only, as single-stream decoding does with the prefix it keeps from its
previous call. Every step then decodes one token of every unfinished sequence in one
``llama_decode``: matrix-matrix work where single-stream decoding does matrix-vector work.
Each sequence has its own sampler chain, built as llama-cpp-python's
``Llama._init_sampler`` builds it and seeded with the request's own seed, so what a sequence
samples depends on its request alone, not on which other requests share the batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

#: llama-cpp-python's sampling defaults for chat completions (``Llama.create_chat_completion``)
TOP_K, TOP_P, MIN_P, TYPICAL_P, PENALTY_LAST_N = 40, 0.95, 0.05, 1.0, 64


@dataclass(frozen=True)
class TokenRequest:
    """One generation to decode: its prompt tokens and sampling parameters."""

    tokens: tuple[int, ...]
    max_tokens: int
    temperature: float
    seed: int


@dataclass
class _Sequence:
    """A sequence being decoded: its request, sampler, position and the tokens it sampled."""

    request: TokenRequest
    sampler: object
    n_past: int
    out: list[int] = field(default_factory=list)
    finish: str | None = None
    #: the reply's bytes once finished
    text: bytes = b""
    #: bytes still missing of a multi-byte UTF-8 character at the end of the text
    multibyte: int = 0


class BatchDecoder:
    """A llama.cpp context of ``n_seq_max`` independent sequences over an open model."""

    def __init__(
        self,
        llama_cpp,
        model,
        detokenize: Callable[[list[int], list[int]], bytes],
        *,
        n_seq_max: int,
        n_ctx_seq: int,
        n_threads: int,
        n_batch: int,
        stops: Sequence[bytes] = (),
    ) -> None:
        self._lib = llama_cpp
        self._detokenize = detokenize
        self._stops = list(stops)
        self.n_seq_max = n_seq_max
        self.n_ctx_seq = n_ctx_seq
        self.n_batch = n_batch
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx_seq * n_seq_max
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.kv_unified = False  # one KV stream per sequence (see the module's docstring)
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as Llama's default
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise MemoryError(f"llama.cpp could not create a context of {n_seq_max} sequences")
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._batch = llama_cpp.llama_batch_init(max(n_batch, n_seq_max), 0, 1)
        #: prompt tokens evaluated by the last :meth:`run` (a shared prefix counted once)
        self.evaluated = 0

    def _sampler(self, request: TokenRequest):
        """The sampler chain ``Llama._init_sampler`` builds for these parameters and seed."""
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        add = lib.llama_sampler_chain_add
        # the arguments llama-cpp-python passes (neutral penalties: a no-op, kept for parity)
        add(chain, lib.llama_sampler_init_penalties(self._n_vocab, PENALTY_LAST_N, 1.0, 0.0, 0.0))
        if request.temperature == 0.0:
            add(chain, lib.llama_sampler_init_greedy())
        else:
            add(chain, lib.llama_sampler_init_top_k(TOP_K))
            add(chain, lib.llama_sampler_init_typical(TYPICAL_P, 1))
            add(chain, lib.llama_sampler_init_top_p(TOP_P, 1))
            add(chain, lib.llama_sampler_init_min_p(MIN_P, 1))
            add(chain, lib.llama_sampler_init_temp(request.temperature))
            add(chain, lib.llama_sampler_init_dist(request.seed))
        return chain

    def _fill(self, items: Sequence[tuple[int, int, int, bool]]) -> None:
        """Put (token, position, sequence id, wants logits) items into the batch."""
        b = self._batch
        for i, (token, pos, seq, logits) in enumerate(items):
            b.token[i] = token
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        b.n_tokens = len(items)

    def _decode(self, items: Sequence[tuple[int, int, int, bool]]) -> None:
        self._fill(items)
        rc = self._lib.llama_decode(self.ctx, self._batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def _prefill(self, seq: int, tokens: Sequence[int], start: int = 0) -> None:
        """Evaluate ``tokens[start:]`` into sequence ``seq`` (which holds ``tokens[:start]``), in
        chunks of ``n_batch`` as ``Llama.eval``; logits for the last token only."""
        for begin in range(start, len(tokens), self.n_batch):
            chunk = tokens[begin : begin + self.n_batch]
            last = begin + len(chunk) == len(tokens)
            self._decode(
                [(t, begin + i, seq, last and i == len(chunk) - 1) for i, t in enumerate(chunk)]
            )
        self.evaluated += len(tokens) - start

    def _take(self, s: _Sequence, idx: int) -> None:
        """Sample sequence ``s``'s next token from batch position ``idx``; mark it finished."""
        token = self._lib.llama_sampler_sample(s.sampler, self.ctx, idx)
        prompt = list(s.request.tokens)
        if self._lib.llama_vocab_is_eog(self._vocab, token):
            s.text, s.finish = self._detokenize(s.out, prompt), "stop"
            return
        s.out.append(token)
        # the checks of llama-cpp-python's Llama._create_completion, in its order: an unfinished
        # UTF-8 character defers the stop and length checks to the next token
        text = self._detokenize(s.out, prompt)
        for k, char in enumerate(text[-3:]):
            k = 3 - k
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > k and pattern & char == pattern:
                    s.multibyte = num - k
        if s.multibyte > 0:
            s.multibyte -= 1
        elif any(stop in text for stop in self._stops):
            first = next(stop for stop in self._stops if stop in text)
            s.text, s.finish = text[: text.index(first)], "stop"
        elif len(s.out) >= s.request.max_tokens:
            s.text, s.finish = text, "length"

    def run(self, requests: Sequence[TokenRequest]) -> list[tuple[bytes, int, str]]:
        """Decode ``requests`` (at most ``n_seq_max``): (reply bytes, tokens, finish) each."""
        if len(requests) > self.n_seq_max:
            raise ValueError(f"{len(requests)} requests for {self.n_seq_max} sequences")
        lib = self._lib
        mem = lib.llama_get_memory(self.ctx)
        lib.llama_memory_clear(mem, True)
        seqs = [_Sequence(r, self._sampler(r), len(r.tokens)) for r in requests]
        self.evaluated = 0
        try:
            for s in seqs:
                # + 4: an unfinished UTF-8 character may run past max_tokens
                if len(s.request.tokens) + s.request.max_tokens + 4 > self.n_ctx_seq:
                    raise ValueError(
                        f"prompt of {len(s.request.tokens)} tokens plus {s.request.max_tokens} "
                        f"to generate exceeds the {self.n_ctx_seq} tokens of a sequence"
                    )
            self._prefill_prompts(seqs, mem)
            self._lockstep(seqs)
            return [(s.text, len(s.out), s.finish or "length") for s in seqs]
        finally:
            for s in seqs:
                lib.llama_sampler_free(s.sampler)

    def _prefill_prompts(self, seqs: list[_Sequence], mem) -> None:
        """Evaluate every distinct prompt once and take each sequence's first token.

        A prompt that repeats one before it copies that sequence's KV. A prompt that shares a
        head with one evaluated before it (the chat template's system turn, a conversation's
        earlier turns) copies the sequence with the longest such head, drops what follows the
        head, and evaluates its own tail: what single-stream decoding does with the prefix it
        keeps from its previous call. The head stops one token short of the prompt, whose last
        token's logits give the first sampled token.
        """
        lib = self._lib
        first: dict[tuple[int, ...], int] = {}
        for i, s in enumerate(seqs):
            tokens = s.request.tokens
            if tokens in first:
                lib.llama_memory_seq_cp(mem, first[tokens], i, -1, -1)
                continue
            head, donor = 0, None
            for j in first.values():
                n = len(os.path.commonprefix([seqs[j].request.tokens, tokens]))
                if n > head:
                    head, donor = n, j
            head = min(head, len(tokens) - 1)
            if donor is not None and head > 0:
                # a copy across KV streams copies the whole sequence (its prompt: nothing was
                # decoded after it yet); the cells after the head are then dropped
                lib.llama_memory_seq_cp(mem, donor, i, -1, -1)
                lib.llama_memory_seq_rm(mem, i, head, -1)
            else:
                head = 0
            first[tokens] = i
            self._prefill(i, tokens, head)
            # sample now: the next prompt's evaluation overwrites these logits
            for j in range(i, len(seqs)):
                if seqs[j].request.tokens == tokens:
                    self._take(seqs[j], -1)

    def _lockstep(self, seqs: list[_Sequence]) -> None:
        """Decode one token of every unfinished sequence per step until all are finished."""
        while True:
            active = [(i, s) for i, s in enumerate(seqs) if s.finish is None and s.out]
            if not active:
                return
            for _, s in active:
                if s.n_past + len(s.out) >= self.n_ctx_seq:
                    raise ValueError(f"a sequence ran past its {self.n_ctx_seq} tokens")
            self._decode([(s.out[-1], s.n_past + len(s.out) - 1, i, True) for i, s in active])
            for k, (_, s) in enumerate(active):
                self._take(s, k)

    def close(self) -> None:
        """Free the context and the batch."""
        if self.ctx:
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self.ctx)
            self.ctx = None
