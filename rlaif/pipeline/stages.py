"""The stages of the main job for one prompt: sample, revise, pair, label; and the labels' tally.

Each stage re-derives what the stage before it made through the run store, so a stage can
start from any prompt of a killed run without holding the run in memory. ``stage_fn`` names
each stage's work on one item, so the driver and a Ray worker run exactly the same code;
``LocalStages`` runs the stages in this process (threads where the models are servers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from rlaif.backends.base import Backend, generate_in_groups
from rlaif.compare import PairJudge, Preference
from rlaif.constitution import Constitution
from rlaif.critique import Revision, revise_many
from rlaif.pipeline.config import RunConfig
from rlaif.pipeline.executor import (
    label,
    label_by_prompt,
    ordered_map,
    stage_concurrency,
)
from rlaif.prompts import Prompt
from rlaif.stats import no_signal_warning
from rlaif.synth import Response, response_requests, to_responses


def sample(policy: Backend, p: Prompt, config: RunConfig) -> list[Response]:
    """Stage 1, generate: the policy's sampled responses to one prompt (through the store)."""
    return sample_group(policy, [p], config)[0]


def sample_group(policy: Backend, prompts: Sequence[Prompt], config: RunConfig) -> list[list]:
    """Stage 1 for consecutive prompts: every response of each, handed to the policy
    ``config.batch_size`` at a time; the same responses as :func:`sample` of each prompt."""
    requests = [
        r
        for p in prompts
        for r in response_requests(
            p.chat(),
            config.n_responses,
            seed=config.seed,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
        )
    ]
    responses = to_responses(generate_in_groups(policy, requests, config.batch_size))
    n = config.n_responses
    return [responses[i * n : (i + 1) * n] for i in range(len(prompts))]


def distinct_responses(sampled: list[Response]) -> list[Response]:
    """The distinct non-empty responses, each text's first sample kept (and its truncation)."""
    seen: dict[str, Response] = {}
    for r in sampled:
        if r.text and r.text not in seen:
            seen[r.text] = r
    return list(seen.values())


def revise_responses(
    policy: Backend, critic: Backend, constitution: Constitution, p: Prompt, config: RunConfig
) -> list[Revision]:
    """Stage 2, revise: the critique-revise rounds of each distinct response of one prompt."""
    return revise_group(policy, critic, constitution, [p], config)[0]


def revise_group(
    policy: Backend,
    critic: Backend,
    constitution: Constitution,
    prompts: Sequence[Prompt],
    config: RunConfig,
) -> list[list[Revision]]:
    """Stage 2 for consecutive prompts: each round's critiques and rewrites of all their
    distinct responses handed over ``config.batch_size`` at a time; the same revisions as
    :func:`revise_responses` of each prompt."""
    if config.revision_rounds == 0:
        return [[] for _ in prompts]
    per_prompt = [distinct_responses(s) for s in sample_group(policy, prompts, config)]
    items = [
        (p.text, r.text, r.truncated) for p, rs in zip(prompts, per_prompt, strict=True) for r in rs
    ]
    revisions = revise_many(
        policy,
        constitution,
        items,
        rounds=config.revision_rounds,
        seed=config.seed,
        critic=critic,
        max_tokens=config.max_tokens,
        batch_size=config.batch_size,
    )
    out, start = [], 0
    for rs in per_prompt:
        out.append(revisions[start : start + len(rs)])
        start += len(rs)
    return out


def pairs(
    policy: Backend,
    critic: Backend,
    judge: PairJudge,
    constitution: Constitution,
    p: Prompt,
    config: RunConfig,
) -> Iterator[tuple[str, str, str, tuple]]:
    """(a, b, pair_type, (a truncated, b truncated)) for every pair of one prompt, re-derived
    through the store."""
    responses = distinct_responses(sample(policy, p, config))
    if config.pairs == "all":
        for a, b in combinations(responses, 2):
            yield a.text, b.text, "responses", (a.truncated, b.truncated)
    elif len(responses) >= 2:
        principle = constitution.sample(config.seed, "best-worst", p.text)
        scores = [
            judge.score(p.text, r.text, principle, truncated=r.truncated).score for r in responses
        ]
        readable = [(s, i) for i, s in enumerate(scores) if s is not None]
        if len(readable) >= 2:
            best, worst = responses[max(readable)[1]], responses[min(readable)[1]]
            if best is not worst:
                yield best.text, worst.text, "responses", (best.truncated, worst.truncated)
    for rev in revise_responses(policy, critic, constitution, p, config):
        if rev.final != rev.original:
            yield rev.original, rev.final, "revision", (rev.original_truncated, rev.truncated)


#: the stages, each a function of one item: a prompt (sample, revise, pairs) or a pair (label)
STAGES = ("sample", "revise", "pairs", "label")


@dataclass
class Models:
    """What the stages call: the policy, the critic (the judge's backend) and the judge."""

    policy: Backend | None
    critic: Backend
    judge: PairJudge
    constitution: Constitution
    config: RunConfig | None


def stage_fn(stage: str, m: Models) -> Callable[[Any], Any]:
    """The work of ``stage`` on one item with the models ``m``.

    ``sample``: a prompt's sampled responses; ``revise``: its revisions; ``pairs``: its
    ``(prompt, a, b, pair_type, truncated)`` label jobs; ``label``: the judge's preference for
    one ``(prompt, a, b[, truncated])``.
    """
    if stage == "label":
        return lambda pair: label(m.judge, pair)
    policy, config = m.policy, m.config
    if policy is None or config is None:
        raise ValueError(f"stage {stage!r} needs the policy and the run's config")
    if stage == "sample":
        return lambda p: sample(policy, p, config)
    if stage == "revise":
        return lambda p: revise_responses(policy, m.critic, m.constitution, p, config)
    if stage == "pairs":
        return lambda p: [
            (p, *pair) for pair in pairs(policy, m.critic, m.judge, m.constitution, p, config)
        ]
    raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")


def group_fn(stage: str, m: Models) -> Callable[[Sequence[Prompt]], list] | None:
    """The work of ``stage`` on consecutive prompts at once (``sample``, ``revise``); None for
    a stage done one item at a time."""
    policy, config = m.policy, m.config
    if policy is None or config is None:
        return None
    if stage == "sample":
        return lambda ps: sample_group(policy, ps, config)
    if stage == "revise":
        return lambda ps: revise_group(policy, m.critic, m.constitution, ps, config)
    return None


def grouped_map(fn: Callable[[Sequence], list], items: Iterable, size: int) -> Iterator:
    """``fn`` over consecutive groups of ``size`` items; its results one item at a time."""
    group: list = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield from fn(group)
            group = []
    if group:
        yield from fn(group)


class LocalStages:
    """The stages in this process: threads where every model of a stage is a server, groups
    of prompts where the generate and revise stages can batch (``--batch-size``)."""

    def __init__(self, models: Models) -> None:
        self.models = models

    def map(self, stage: str, items: Iterable) -> Iterator:
        """``stage`` over ``items``, results in input order."""
        config = self.models.config
        if config is None:
            raise ValueError("LocalStages needs the run's config")
        specs = {
            "sample": (config.policy,),
            "revise": (config.policy, config.judge),
            "pairs": (config.policy, config.judge),
            "label": (config.judge,),
        }[stage]
        threads = stage_concurrency(config.concurrency, *specs)
        if stage == "label" and threads == 1:
            return label_by_prompt(self.models.judge, items)
        group = group_fn(stage, self.models)
        if threads == 1 and config.batch_size > 1 and group is not None:
            # prompts whose responses fill one batch: batch_size sequences per group
            return grouped_map(group, items, max(1, config.batch_size // config.n_responses))
        return ordered_map(stage_fn(stage, self.models), items, threads)

    def summary(self) -> dict:
        """Nothing to add to run.json: the stages ran in this process."""
        return {}

    def __enter__(self) -> LocalStages:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class RunStats:
    """Running summary of the labels of one run."""

    def __init__(self) -> None:
        self.labels = 0
        self.unreadable = 0
        #: labels by who decided them: "ai" (the judge model) or "rule" (a check, a rule judge)
        self.label_source: Counter = Counter()
        self.margin_sum = 0.0
        self.consistent = 0
        self.consistency_known = 0
        #: per kind of text ("responses", "revisions"): how many, how many cut at the token
        #: limit, how many of unknown truncation
        self.truncated: dict[str, dict[str, int]] = {
            kind: {"truncated": 0, "total": 0, "unknown": 0} for kind in ("responses", "revisions")
        }
        self._labelled: list[dict] = []

    def count_truncated(self, kind: str, flags: list[bool | None]) -> None:
        """Count generated texts of one kind by their truncation flags (None: unknown)."""
        counts = self.truncated[kind]
        for flag in flags:
            counts["total"] += 1
            counts["truncated"] += int(flag is True)
            counts["unknown"] += int(flag is None)

    def add(self, pref: Preference, record: dict) -> None:
        """Count one label (``pref``) and keep what the no-signal check reads of its record."""
        self.labels += 1
        self.label_source[pref.label_source] += 1
        if pref.p_a is None:
            self.unreadable += 1
            return
        # only what the no-signal check reads: a large run's texts stay out of memory
        self._labelled.append(
            {k: record.get(k) for k in ("p_chosen", "mode", "position_consistent")}
        )
        self.margin_sum += abs(pref.p_a - 0.5)
        if pref.position_consistent is not None:
            self.consistency_known += 1
            self.consistent += int(pref.position_consistent)

    def summary(self) -> dict:
        """The labels' figures for run.json: mean margin, position consistency, sources."""
        readable = self.labels - self.unreadable
        return {
            "mean_margin": round(self.margin_sum / readable, 6) if readable else None,
            "position_consistency_rate": (
                round(self.consistent / self.consistency_known, 6)
                if self.consistency_known
                else None
            ),
            "unreadable": self.unreadable,
            "label_source": {k: self.label_source[k] for k in ("rule", "ai")},
        }

    def warnings(self, min_margin: float) -> list[str]:
        """One line per problem with the labels as a whole (see rlaif.stats)."""
        warning = no_signal_warning(self._labelled, min_margin)
        return [warning] if warning else []
