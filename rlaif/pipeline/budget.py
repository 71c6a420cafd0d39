"""``--max-cost``: stop a run cleanly before a model call could take its spend past the budget.

The budget covers everything the run directory has paid for: the calls already in its store
(from earlier invocations, at today's prices) and the calls this invocation makes. Before each
call that reaches a model, its cost is bounded from above (a quick over-count of the input
tokens, and the call's ``max_tokens`` as output); a call that could cross the budget is not
made and the run stops with :class:`BudgetExceeded`. Every call paid for is already in the
store, so the same command with a higher ``--max-cost`` continues where the run stopped and
ends with the records an unbudgeted run makes.

:class:`BudgetedBackend` sits between the run store's cache and the real backend, so only
calls that really reach a model are checked and counted; calls may run in several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from rlaif.backends.base import Backend, ChoiceScores, GenerateRequest, Generation, Messages
from rlaif.errors import BudgetExceeded
from rlaif.pipeline.pricing import CHOICE_OUTPUT_TOKENS, PriceTable, quick_input_tokens


class Budget:
    """Dollars a run may spend in all, what it has spent, and what calls in flight may cost."""

    def __init__(
        self, max_cost: float | None, prices: PriceTable, spent: float = 0.0, where: str = ""
    ) -> None:
        self.max_cost = max_cost
        self.prices = prices
        #: dollars of every paid call: those already in the store plus this invocation's
        self.spent = spent
        #: dollars of this invocation's calls
        self.spent_now = 0.0
        self.where = where
        self._reserved = 0.0
        self._lock = threading.Lock()

    def reserve(self, model_id: str, messages: Messages, max_output: int) -> float:
        """Set aside the most a call may cost; BudgetExceeded if that would cross the budget."""
        bound = self.prices.price(model_id).cost(quick_input_tokens(messages), max_output)
        with self._lock:
            if self.max_cost is not None and self.spent + self._reserved + bound > self.max_cost:
                raise BudgetExceeded(
                    f"budget reached: ${self.spent:.6f} of --max-cost ${self.max_cost:g} is "
                    f"spent and the next call to {model_id} may cost up to ${bound:.6f}; every "
                    f"paid call is kept in {self.where or 'the run store'}: rerun the same "
                    "command with a higher --max-cost to continue"
                )
            self._reserved += bound
        return bound

    def settle(self, reserved: float, model_id: str, input_tokens: int, output_tokens: int) -> None:
        """Replace a call's reservation by what it cost (zero tokens if the call failed)."""
        cost = self.prices.price(model_id).cost(input_tokens, output_tokens)
        with self._lock:
            self._reserved -= reserved
            self.spent += cost
            self.spent_now += cost


class BudgetedBackend(Backend):
    """Wraps a backend: every call is checked against the budget before, counted after."""

    def __init__(self, inner: Backend, budget: Budget) -> None:
        self.inner = inner
        self.budget = budget
        self.model_id = inner.model_id
        self.price_per_million = inner.price_per_million

    def generate(
        self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> Generation:
        """Generate with the wrapped backend if the budget allows the call."""
        reserved = self.budget.reserve(self.model_id, messages, max_tokens)
        gen = None
        try:
            gen = self.inner.generate(
                messages, max_tokens=max_tokens, temperature=temperature, seed=seed
            )
        finally:
            used = self._settle(reserved, messages, gen)
        # the stored result carries what was charged, so a resumed run counts it again
        return replace(gen, prompt_tokens=used[0], completion_tokens=used[1])

    def generate_many(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Generate for every request at once if the budget allows all of them."""
        reserved: list[float] = []
        try:
            for r in requests:
                reserved.append(self.budget.reserve(self.model_id, r.messages, r.max_tokens))
        except BudgetExceeded:
            for r, amount in zip(requests, reserved, strict=False):
                self._settle(amount, r.messages, None)
            raise
        gens: list[Generation] | None = None
        try:
            gens = self.inner.generate_many(requests)
        finally:
            results = gens or [None] * len(requests)
            used = [
                self._settle(amount, r.messages, gen)
                for r, amount, gen in zip(requests, reserved, results, strict=True)
            ]
        return [
            replace(gen, prompt_tokens=u[0], completion_tokens=u[1])
            for gen, u in zip(gens, used, strict=True)
        ]

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        """Score the choices with the wrapped backend if the budget allows the call."""
        reserved = self.budget.reserve(self.model_id, messages, CHOICE_OUTPUT_TOKENS)
        scores = None
        try:
            scores = self.inner.choice_logprobs(messages, choices)
        finally:
            used = self._settle(reserved, messages, scores)
        return replace(scores, prompt_tokens=used[0], completion_tokens=used[1])

    def close(self) -> None:
        """Close the wrapped backend."""
        self.inner.close()

    def _settle(self, reserved, messages: Messages, result) -> tuple[int, int]:
        """Charge a finished (or failed: ``result`` None) call; the tokens it used."""
        used = (
            _usage(messages, result.prompt_tokens, result.completion_tokens, result.text)
            if result
            else (0, 0)
        )
        self.budget.settle(reserved, self.model_id, *used)
        return used


def _usage(messages: Messages, prompt_tokens: int, completion_tokens: int, text: str):
    """A call's tokens; a server that reported no usage is charged the quick over-count."""
    if prompt_tokens == 0:
        prompt_tokens = quick_input_tokens(messages)
    if completion_tokens == 0 and text:
        completion_tokens = quick_input_tokens([{"content": text}])
    return prompt_tokens, completion_tokens
