"""The dry-run estimate of a run's tokens and dollars before any model is called.

The estimate counts the tokens of the real templates filled with the run's real prompts. A
response, critique or rationale that does not exist yet counts as long as it may be
(``max_tokens``), and each template is filled with its longest principle, so the estimate is
an upper bound. Local models are counted with their own tokenizer and chat template; an
``openai:`` (or ``hf:``) model's tokenizer is not at hand, so it is counted with the embedded
SmolLM2 tokenizer and its chat template (ChatML) as a proxy (BPE tokenizers of English text
agree to within about 10-20%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rlaif import templates
from rlaif.backends import parse_model_spec
from rlaif.backends.base import Messages
from rlaif.constitution import Constitution
from rlaif.pipeline.pricing import CHOICE_OUTPUT_TOKENS, PriceTable, stored_spend


class TokenCounter:
    """Counts the tokens of chat messages with a GGUF model's tokenizer and chat template.

    Opens the file with ``vocab_only`` (no weights, a fraction of a second). ``exact`` is
    False when the file is a proxy for a model whose own tokenizer is not at hand.
    """

    def __init__(self, spec: str) -> None:
        import llama_cpp
        from llama_cpp import llama_chat_format
        from llama_cpp._utils import suppress_stdout_stderr

        from rlaif.backends.llamacpp import close_at_exit, embedded_model_path

        kind, arg = parse_model_spec(spec)
        self.exact = kind == "llamacpp"
        path = Path(arg) if kind == "llamacpp" and arg != "smollm2" else embedded_model_path()
        self.name = path.name
        # llama.cpp warns on stderr that a vocabulary-only model has no context length
        with suppress_stdout_stderr(disable=False):
            self.llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        close_at_exit(self.llm)
        model = self.llm._model
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        self._formatter = llama_chat_format.Jinja2ChatFormatter(
            template=self.llm.metadata.get("tokenizer.chat_template") or _CHATML,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )

    def count(self, messages: Messages) -> int:
        """Input tokens of these messages plus the assistant header."""
        result = self._formatter(messages=messages)
        return len(
            self.llm.tokenize(
                result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
            )
        )

    def close(self) -> None:
        """Free the tokenizer."""
        self.llm.close()


_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}<|im_start|>assistant\n"
)


@dataclass
class StageEstimate:
    """Upper bounds of one stage's calls to one model."""

    stage: str
    model: str
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0


@dataclass
class RunEstimate:
    """What a run may spend, per stage, before any model is called."""

    stages: list[StageEstimate]
    #: how tokens were counted, per model
    tokenizers: dict[str, str]
    #: calls already in the run store (answered free on resume) and their cost
    stored_calls: int = 0
    stored_cost: float = 0.0

    def total(self, name: str) -> int | float:
        """One figure (``calls``, ``input_tokens``, ``output_tokens``, ``cost``) of all stages."""
        return sum(getattr(s, name) for s in self.stages)

    calls = property(lambda self: self.total("calls"), doc="Model calls at most.")
    input_tokens = property(lambda self: self.total("input_tokens"), doc="Input tokens at most.")
    output_tokens = property(lambda self: self.total("output_tokens"), doc="Output tokens at most.")
    cost = property(lambda self: self.total("cost"), doc="Dollars at most.")

    def to_dict(self) -> dict:
        """A JSON-ready dict, totals included."""
        return {
            "stages": [vars(s) for s in self.stages],
            "tokenizers": self.tokenizers,
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": round(self.cost, 8),
            "stored_calls": self.stored_calls,
            "stored_cost": round(self.stored_cost, 8),
        }


def estimate_run(config, prompts: list, constitution: Constitution, prices: PriceTable):
    """Upper bounds of a run's calls, tokens and dollars per stage; no model is called.

    ``config`` is a :class:`rlaif.pipeline.RunConfig`, ``prompts`` the loaded prompts.
    """
    counters: dict[str, TokenCounter] = {}
    try:
        for spec in (config.policy, config.judge):
            if spec not in counters:
                counters[spec] = TokenCounter(spec)
        tally = _Tally(config, counters, constitution)
        for p in prompts:
            tally.prompt(p)
        stages = tally.stages
        for s in stages.values():
            s.cost = prices.price(s.model).cost(s.input_tokens, s.output_tokens)
        tokenizers = {
            spec: (
                f"{c.name} (the model's own tokenizer)"
                if c.exact
                else f"{c.name} (a proxy: this model's own tokenizer is not at hand)"
            )
            for spec, c in counters.items()
        }
    finally:
        for c in counters.values():
            c.close()
    stored_calls, stored_cost = stored_spend(Path(config.out) / "store.sqlite", prices)
    return RunEstimate(
        stages=[s for s in stages.values() if s.calls],
        tokenizers=tokenizers,
        stored_calls=stored_calls,
        stored_cost=stored_cost,
    )


class _Tally:
    """The stages' calls and tokens at most, added up prompt by prompt."""

    def __init__(self, config, counters: dict[str, TokenCounter], constitution: Constitution):
        self.config = config
        self.policy, self.judge = counters[config.policy], counters[config.judge]
        self.principles = constitution.principles
        self.cot_max_tokens = _cot_max_tokens()
        self.stages = {
            "generate": StageEstimate("generate", config.policy),
            "critique": StageEstimate("critique", config.judge),
            "revise": StageEstimate("revise", config.policy),
            "label": StageEstimate("label", config.judge),
        }

    def add(self, stage: str, calls: int, input_tokens: int, output_tokens: int) -> None:
        """``calls`` calls of ``stage``, each reading and writing at most these tokens."""
        s = self.stages[stage]
        s.calls += calls
        s.input_tokens += calls * input_tokens
        s.output_tokens += calls * output_tokens

    def longest(self, counter: TokenCounter, template, *texts: str) -> int:
        """Input tokens of ``template`` filled with ``texts`` and its longest principle."""
        return max(counter.count(template(*texts, pr)) for pr in self.principles)

    def prompt(self, p) -> None:
        """Add every call of one prompt: its responses, their revisions and their labels."""
        from rlaif.critique import CRITIQUE_MAX_TOKENS

        config, policy, judge = self.config, self.policy, self.judge
        m, crit_m = config.max_tokens, CRITIQUE_MAX_TOKENS
        n, rounds = config.n_responses, config.revision_rounds
        self.add("generate", n, policy.count(templates.policy_messages(p.chat())), m)
        if rounds:
            crit_in = self.longest(judge, templates.critique_messages, p.text, "")
            rev_in = self.longest(policy, templates.revise_messages, p.text, "", "")
            self.add("critique", n * rounds, crit_in + m, crit_m)
            self.add("revise", n * rounds, rev_in + m + crit_m, m)
        # pointwise scores: one call per distinct response, cached by the judge
        scored = n if config.pairs == "best-worst" and n >= 2 else 0
        pairs = math.comb(n, 2) if config.pairs == "all" else int(n >= 2)
        revision_pairs = n if rounds else 0
        label_pairs = 0 if config.mode == "pointwise" else pairs + revision_pairs
        if config.mode == "pointwise":
            scored += n + revision_pairs
        if scored:
            one = self.longest(judge, templates.pointwise_messages, p.text, "")
            self.add("label", scored, one + m, CHOICE_OUTPUT_TOKENS)
        if label_pairs:
            self._compare(p, 2 * label_pairs)

    def _compare(self, p, calls: int) -> None:
        """Pairwise labels: ``calls`` comparisons (each pair in both orders), with or without
        chain of thought."""
        judge, m = self.judge, self.config.max_tokens
        if self.config.cot:
            reason = self.longest(judge, templates.compare_cot_messages, p.text, "", "")
            verdict = self.longest(judge, _cot_verdict_messages, p.text, "", "")
            cot_m = self.cot_max_tokens
            self.add("label", calls, reason + 2 * m, cot_m)
            self.add("label", calls, verdict + 2 * m + cot_m, CHOICE_OUTPUT_TOKENS)
        else:
            both = self.longest(judge, templates.compare_messages, p.text, "", "")
            self.add("label", calls, both + 2 * m, CHOICE_OUTPUT_TOKENS)


def _cot_verdict_messages(prompt: str, first: str, second: str, principle) -> Messages:
    reasoning = templates.compare_cot_messages(prompt, first, second, principle)
    return templates.cot_verdict_messages(reasoning, "")


def _cot_max_tokens() -> int:
    import inspect

    from rlaif.compare import Judge

    return inspect.signature(Judge).parameters["cot_max_tokens"].default
