"""The main job: prompts in, AI-labelled preference data and revision data out.

Stages, each with a progress bar:

1. **generate** ``n_responses`` sampled responses per prompt with the policy;
2. **revise** each response with ``revision_rounds`` critique-revise rounds (the judge
   critiques, the policy rewrites; every round is kept in ``revisions.jsonl``);
3. **label** pairs with the judge (both orders, soft labels, a sampled principle). Pairs are
   either ``all`` pairs of distinct responses of a prompt, or ``best-worst``: the judge scores
   every response pointwise and only the best and the worst are compared. Each response and
   its final revision also form a pair (``pair_type: revision``, the Constitutional AI
   supervised stage), labelled by the judge like any other.

Every model call goes through the run store, so a stage re-derives what earlier stages made
from the store instead of holding the run in memory, a killed run resumes where it stopped,
and re-running a finished run makes no model call at all.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Literal

from rlaif import __version__, templates
from rlaif.backends import load_backend, parse_model_spec
from rlaif.backends.cached import CachedBackend
from rlaif.compare import Judge
from rlaif.constitution import load_constitution
from rlaif.critique import revise
from rlaif.errors import RunError
from rlaif.generate import generate
from rlaif.outputs import OUTPUT_FILES, RUN_JSON, OutputWriter, preference_record
from rlaif.prompts import Prompt, builtin_prompts_path, file_sha256, load_prompts
from rlaif.store import STORE_FILE, Store


@dataclass
class RunConfig:
    """Everything that defines a run; defaults follow the papers (both orders, soft labels)."""

    out: Path
    #: prompts file (JSONL, JSON, CSV, text); None for the built-in set
    prompts: str | None = None
    policy: str = "smollm2"
    judge: str = "smollm2"
    #: constitution file or "default"
    constitution: str = "default"
    n_responses: int = 2
    #: critique-revise rounds per response (0: no revisions, no sft.jsonl records)
    revision_rounds: int = 1
    pairs: Literal["all", "best-worst"] = "all"
    mode: Literal["pairwise", "pointwise"] = "pairwise"
    cot: bool = False
    #: pairs with |p - 0.5| below this go to low_margin.jsonl instead of preferences.jsonl
    min_margin: float = 0.0
    limit: int | None = None
    seed: int = 0
    temperature: float = 0.8
    #: longest policy response and revision, in tokens
    max_tokens: int = 128
    #: dollars per million input / output tokens, for every model of the run (0 when local)
    price_in: float = 0.0
    price_out: float = 0.0

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.n_responses < 1:
            raise ValueError(f"n_responses must be >= 1, not {self.n_responses}")
        if self.revision_rounds < 0:
            raise ValueError(f"revision_rounds must be >= 0, not {self.revision_rounds}")
        if self.n_responses < 2 and self.revision_rounds == 0:
            raise ValueError(
                "nothing to compare: n_responses=1 and revision_rounds=0 form no pair; "
                "raise one of them"
            )
        if not 0.0 <= self.min_margin < 0.5:
            raise ValueError(f"min_margin must be in [0, 0.5), not {self.min_margin}")
        if self.pairs not in ("all", "best-worst"):
            raise ValueError(f"pairs must be 'all' or 'best-worst', not {self.pairs!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, not {self.limit}")
        if self.price_in < 0 or self.price_out < 0:
            raise ValueError("prices must be >= 0")


@dataclass
class RunResult:
    """What ``run`` returns: the run directory and the contents of its ``run.json``."""

    out: Path
    info: dict = field(default_factory=dict)


def _identity(config: RunConfig, prompts_path: Path) -> dict:
    """What makes a run directory this run: its prompt set, policy and seed."""
    return {
        "prompts_sha256": file_sha256(prompts_path),
        "policy": config.policy,
        "seed": config.seed,
    }


def open_run_dir(config: RunConfig, prompts_path: Path) -> Store:
    """Create or reopen the run directory; RunError if it holds a different run."""
    out = config.out
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a directory")
    store_path = out / STORE_FILE
    if out.is_dir() and not store_path.exists():
        stray = [p.name for p in out.iterdir() if not p.name.startswith(".")]
        if stray:
            raise RunError(
                f"{out}: not empty and not an rlaif run directory ({', '.join(sorted(stray)[:3])}"
                "...); choose a new --out"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{out}: cannot create the run directory ({e.strerror})") from e
    store = Store(store_path)
    identity = json.dumps(_identity(config, prompts_path), sort_keys=True)
    previous = store.get_meta("identity")
    if previous is None:
        store.set_meta("identity", identity)
    elif previous != identity:
        old, new = json.loads(previous), json.loads(identity)
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in new if old.get(k) != new[k])
        store.close()
        raise RunError(
            f"{out}: holds a different run ({diff}); choose a new --out or delete the directory"
        )
    return store


def _progress(show: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not show,
        transient=False,
    )


def run(config: RunConfig, *, show_progress: bool = True) -> RunResult:
    """Run the main job; returns the run directory and what ``run.json`` says."""
    started = time.time()
    prompts_path = Path(config.prompts) if config.prompts else builtin_prompts_path()
    # Everything that can be wrong with the input is found before any model is loaded.
    prompts = load_prompts(prompts_path, limit=config.limit)
    constitution = load_constitution(config.constitution)
    parse_model_spec(config.policy)
    parse_model_spec(config.judge)
    store = open_run_dir(config, prompts_path)
    writer = OutputWriter(config.out)
    try:
        policy = CachedBackend(load_backend(config.policy), store)
        judge_backend = CachedBackend(load_backend(config.judge), store)
        judge = Judge(
            judge_backend, constitution, seed=config.seed, mode=config.mode, cot=config.cot
        )
        timings: dict[str, float] = {}
        stats = _Stats()
        with _progress(show_progress) as progress:
            t = time.time()
            task = progress.add_task("generate", total=len(prompts))
            for p in prompts:
                _responses(policy, p, config)
                progress.advance(task)
            timings["generate"] = time.time() - t

            t = time.time()
            task = progress.add_task("revise", total=len(prompts) * config.revision_rounds)
            for p in prompts:
                for rev in _revisions(policy, judge_backend, constitution, p, config):
                    writer.write("revisions.jsonl", {"prompt_id": p.id, **rev.to_dict()})
                    if rev.rounds and rev.final != rev.original:
                        writer.write(
                            "sft.jsonl",
                            {
                                "prompt": p.for_record(),
                                "completion": _as_completion(p, rev.final),
                                "prompt_id": p.id,
                                "principle_id": rev.rounds[-1].critique.principle_id,
                                "policy": config.policy,
                                "constitution_hash": constitution.hash,
                            },
                        )
                progress.advance(task, config.revision_rounds)
            timings["revise"] = time.time() - t

            t = time.time()
            task = progress.add_task("label", total=len(prompts))
            for p in prompts:
                for a, b, pair_type in _pairs(
                    policy, judge_backend, judge, constitution, p, config
                ):
                    pref = judge.compare(p.text, a, b)
                    name, record = preference_record(
                        p, a, b, pref, policy=config.policy, pair_type=pair_type
                    )
                    if name == "preferences.jsonl" and (
                        abs(record["p_chosen"] - 0.5) < config.min_margin
                        or record["p_chosen"] == 0.5
                    ):
                        name = "low_margin.jsonl"
                    writer.write(name, record)
                    stats.add(pref)
                progress.advance(task)
            timings["label"] = time.time() - t
        timings["total"] = time.time() - started
        info = _run_info(config, prompts, prompts_path, constitution, policy, judge_backend)
        info.update(
            counts={
                "prompts": len(prompts),
                **{name.removesuffix(".jsonl"): writer.counts[name] for name in OUTPUT_FILES},
            },
            labels=stats.labels,
            stats=stats.summary(),
            timings_s={k: round(v, 3) for k, v in timings.items()},
        )
        finish_cost_per_label(info)
        writer.publish(info)
    except BaseException:
        writer.discard()
        raise
    finally:
        store.close()
    return RunResult(config.out, info)


def _as_completion(p: Prompt, text: str) -> str | list[dict]:
    return [{"role": "assistant", "content": text}] if p.is_chat else text


def _responses(policy: CachedBackend, p: Prompt, config: RunConfig) -> list[str]:
    return generate(
        policy,
        p.chat(),
        config.n_responses,
        seed=config.seed,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
    )


def _distinct(texts: list[str]) -> list[str]:
    seen: list[str] = []
    for t in texts:
        if t and t not in seen:
            seen.append(t)
    return seen


def _revisions(policy, critic, constitution, p: Prompt, config: RunConfig):
    if config.revision_rounds == 0:
        return []
    return [
        revise(
            policy,
            constitution,
            p.text,
            response,
            rounds=config.revision_rounds,
            seed=config.seed,
            critic=critic,
            max_tokens=config.max_tokens,
        )
        for response in _distinct(_responses(policy, p, config))
    ]


def _pairs(policy, critic, judge: Judge, constitution, p: Prompt, config: RunConfig):
    """(a, b, pair_type) for every pair of one prompt, re-derived through the store."""
    responses = _distinct(_responses(policy, p, config))
    if config.pairs == "all":
        for a, b in combinations(responses, 2):
            yield a, b, "responses"
    elif len(responses) >= 2:
        principle = constitution.sample(config.seed, "best-worst", p.text)
        scores = [judge.score(p.text, r, principle).p_first for r in responses]
        readable = [(s, i) for i, s in enumerate(scores) if s is not None]
        if len(readable) >= 2:
            best, worst = max(readable)[1], min(readable)[1]
            if best != worst:
                yield responses[best], responses[worst], "responses"
    for rev in _revisions(policy, critic, constitution, p, config):
        if rev.final != rev.original:
            yield rev.original, rev.final, "revision"


class _Stats:
    """Running summary of the labels of one run."""

    def __init__(self) -> None:
        self.labels = 0
        self.unreadable = 0
        self.margin_sum = 0.0
        self.consistent = 0
        self.consistency_known = 0

    def add(self, pref) -> None:
        self.labels += 1
        if pref.p_a is None:
            self.unreadable += 1
            return
        self.margin_sum += abs(pref.p_a - 0.5)
        if pref.position_consistent is not None:
            self.consistency_known += 1
            self.consistent += int(pref.position_consistent)

    def summary(self) -> dict:
        readable = self.labels - self.unreadable
        return {
            "mean_margin": round(self.margin_sum / readable, 6) if readable else None,
            "position_consistency_rate": (
                round(self.consistent / self.consistency_known, 6)
                if self.consistency_known
                else None
            ),
            "unreadable": self.unreadable,
        }


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"rlaif": __version__, "python": platform.python_version()}
    for pkg in ("llama-cpp-python", "openai"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _run_info(config, prompts, prompts_path, constitution, policy, judge) -> dict:
    config_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    tokens = {
        role: {"prompt": b.prompt_tokens_total, "completion": b.completion_tokens_total}
        for role, b in (("policy", policy), ("judge", judge))
    }
    prompt_tokens = sum(t["prompt"] for t in tokens.values())
    completion_tokens = sum(t["completion"] for t in tokens.values())
    cost = (prompt_tokens * config.price_in + completion_tokens * config.price_out) / 1e6
    judge_cost = (
        tokens["judge"]["prompt"] * config.price_in
        + tokens["judge"]["completion"] * config.price_out
    ) / 1e6
    return {
        "config": config_dict,
        "prompts_file": str(prompts_path),
        "prompts_sha256": file_sha256(prompts_path),
        "constitution": {
            "name": constitution.name,
            "source": constitution.source,
            "hash": constitution.hash,
        },
        "template_version": templates.TEMPLATE_VERSION,
        "versions": _versions(),
        "seed": config.seed,
        "model_calls": policy.model_calls + judge.model_calls,
        "cached_calls": policy.cached_calls + judge.cached_calls,
        "tokens": {
            "prompt": prompt_tokens,
            "completion": completion_tokens,
            "total": prompt_tokens + completion_tokens,
            "by_role": tokens,
            "kv_cache_reused_this_invocation": policy.reused_tokens + judge.reused_tokens,
        },
        "price_per_million": {"input": config.price_in, "output": config.price_out},
        "cost": round(cost, 8),
        "judge_cost": round(judge_cost, 8),
    }


def finish_cost_per_label(info: dict) -> None:
    """Add ``cost_per_label`` and ``judge_cost_per_label`` to a run's info (None if no label)."""
    labels = info.get("labels") or 0
    info["cost_per_label"] = round(info["cost"] / labels, 8) if labels else None
    info["judge_cost_per_label"] = round(info["judge_cost"] / labels, 8) if labels else None


__all__ = ["RunConfig", "RunResult", "run", "RUN_JSON"]
