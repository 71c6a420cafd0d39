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
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rlaif import templates
from rlaif._version import __version__
from rlaif.backends import check_judge_spec, load_backend, parse_model_spec
from rlaif.backends.cached import CachedBackend
from rlaif.backends.ratelimit import RequestPolicy
from rlaif.compare import Judge, RuleJudge
from rlaif.constitution import Constitution, load_constitution
from rlaif.errors import BackendError, RunError
from rlaif.pipeline.budget import Budget, BudgetedBackend
from rlaif.pipeline.config import RunConfig
from rlaif.pipeline.dry_run import RunEstimate, estimate_run
from rlaif.pipeline.executor import apply_request_policy
from rlaif.pipeline.outputs import (
    OUTPUT_FILES,
    RUN_JSON,
    OutputWriter,
    completion,
    preference_record,
    record_prompt,
)
from rlaif.pipeline.pricing import PriceTable, load_price_table, stored_spend
from rlaif.pipeline.stages import LocalStages, Models, RunStats, distinct_responses
from rlaif.prompts import Prompt, builtin_prompts_path, file_sha256, load_prompts
from rlaif.rules import is_programmatic
from rlaif.store import STORE_FILE, Store


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
    _check_writable(out)
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


class _Bar:
    """One stage's progress bar: what the stage has done and, once known, how much in all."""

    def __init__(self, progress, task) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        """``n`` more items done."""
        self._progress.advance(self._task, n)

    def set_total(self, total: int) -> None:
        """The number of items in all (a stage that learns it only once it starts)."""
        self._progress.update(self._task, total=total)


class StageTimer:
    """The job's stages as they run: one progress bar and one timing each (``timings_s``)."""

    def __init__(self, show: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from rlaif.progress import make_progress

        self.progress = make_progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not show,
            transient=False,
        )
        #: seconds per stage, by name
        self.timings: dict[str, float] = {}

    def __enter__(self) -> StageTimer:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    @contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[_Bar]:
        """Time the stage ``name`` and show its bar (``total`` items; None: not yet known)."""
        started = time.time()
        yield _Bar(self.progress, self.progress.add_task(name, total=total))
        self.timings[name] = time.time() - started

    def rounded(self) -> dict[str, float]:
        """The timings as run.json keeps them: seconds to the millisecond."""
        return {k: round(v, 3) for k, v in self.timings.items()}


@dataclass
class _Job:
    """The stages' work on their results: the output files and the labels' tally."""

    config: RunConfig
    prompts: list[Prompt]
    constitution: Constitution
    writer: OutputWriter
    stats: RunStats = field(default_factory=RunStats)

    def generate(self, stages, bar: _Bar) -> None:
        """Stage 1: sample every prompt's responses (into the store); count cut-off ones."""
        for sampled in stages.map("sample", self.prompts):
            truncated = [r.truncated for r in distinct_responses(sampled)]
            self.stats.count_truncated("responses", truncated)
            bar.advance()

    def revise(self, stages, bar: _Bar) -> None:
        """Stage 2: every revision round to revisions.jsonl, each changed final to sft.jsonl."""
        for p, revs in zip(self.prompts, stages.map("revise", self.prompts), strict=True):
            for rev in revs:
                self.writer.write("revisions.jsonl", {"prompt_id": p.id, **rev.to_dict()})
                if rev.rounds and rev.final != rev.original:
                    self.stats.count_truncated("revisions", [rev.truncated])
                    self.writer.write("sft.jsonl", self._sft_record(p, rev))
            bar.advance(self.config.revision_rounds)

    def _sft_record(self, p: Prompt, rev) -> dict:
        config = self.config
        return {
            "prompt": record_prompt(p, config.text_format),
            "completion": completion(p, rev.final, config.text_format),
            "truncated": rev.truncated,
            "prompt_id": p.id,
            "principle_id": rev.rounds[-1].critique.principle_id,
            "policy": config.policy,
            "constitution_hash": self.constitution.hash,
        }

    def label(self, stages, bar: _Bar) -> None:
        """Stage 3: label every pair; each record goes to the file its label routes it to."""
        config = self.config
        jobs = [job for per_prompt in stages.map("pairs", self.prompts) for job in per_prompt]
        bar.set_total(len(jobs))
        prefs = stages.map("label", [(p.text, a, b, trunc) for p, a, b, _, trunc in jobs])
        for (p, a, b, pair_type, truncated), pref in zip(jobs, prefs, strict=True):
            name, record = preference_record(
                p,
                a,
                b,
                pref,
                policy=config.policy,
                pair_type=pair_type,
                truncated=truncated,
                text_format=config.text_format,
                min_margin=config.min_margin,
            )
            self.writer.write(name, record)
            self.stats.add(pref, record)
            bar.advance()

    def outcome(self) -> dict:
        """What run.json says of the outputs: counts, labels, their figures and warnings."""
        counts = self.writer.counts
        return {
            "counts": {
                "prompts": len(self.prompts),
                **{name.removesuffix(".jsonl"): counts[name] for name in OUTPUT_FILES},
            },
            "labels": self.stats.labels,
            "stats": self.stats.summary(),
            "truncated": self.stats.truncated,
            "warnings": self.stats.warnings(self.config.min_margin),
        }


@dataclass
class _Models:
    """The run's models (through the store and the budget) and their servers' request policy."""

    models: Models
    requests: RequestPolicy
    #: the backends that talk to servers, and the retries they had made before this run
    servers: tuple
    retries_before: Counter

    def requests_info(self, executor: str, ray_summary: dict) -> dict:
        """What run.json says of the requests: where they ran, and this run's retries by
        reason."""
        return {
            "executor": executor,
            "retries": dict(_retries(*self.servers) - self.retries_before),
            **({"ray": ray_summary} if ray_summary else {}),
        }


def _load_models(
    config: RunConfig, constitution: Constitution, store: Store, budget: Budget | None
) -> _Models:
    """Load the policy and the judge; every call goes through the store, then the budget."""
    requests = config.request_policy()
    policy_model = apply_request_policy(load_backend(config.policy), requests)
    # A programmatic judge has no model: the policy critiques its own responses.
    judge_model = (
        policy_model
        if is_programmatic(config.judge)
        else apply_request_policy(load_backend(config.judge), requests)
    )
    retries_before = _retries(policy_model, judge_model)
    policy = CachedBackend(_budgeted(policy_model, budget), store)
    judge_backend = CachedBackend(_budgeted(judge_model, budget), store)
    judge = (
        RuleJudge(config.judge, constitution, seed=config.seed)
        if is_programmatic(config.judge)
        else Judge(judge_backend, constitution, seed=config.seed, mode=config.mode, cot=config.cot)
    )
    models = Models(policy, judge_backend, judge, constitution, config)
    return _Models(models, requests, (policy_model, judge_model), retries_before)


def run(config: RunConfig, *, show_progress: bool = True) -> RunResult:
    """Run the main job; returns the run directory and what ``run.json`` says."""
    started = time.time()
    prompts_path, prompts, constitution, prices = _inputs(config)
    if config.dry_run:
        estimate = estimate_run(config, prompts, constitution, prices)
        return RunResult(config.out, {"dry_run": True, "estimate": estimate.to_dict()})
    try:
        store = open_run_dir(config, prompts_path)
    except sqlite3.Error as e:
        raise RunError(_write_failure(config.out, e)) from e
    try:
        writer = OutputWriter(config.out)
    except OSError as e:
        store.close()
        raise RunError(_write_failure(config.out, e)) from e
    try:
        budget = _budget(config, prices)
        if budget is not None and config.batch_size > 1:
            # a budget is checked call by call: one sequence at a time stops at the last call
            # that fits, and the outputs are the same either way
            config = replace(config, batch_size=1)
        models = _load_models(config, constitution, store, budget)
        timer = StageTimer(show_progress)
        job = _Job(config, prompts, constitution, writer)
        with timer, _stages(config, models.models, models.requests) as stages:
            with timer.stage("generate", len(prompts)) as bar:
                job.generate(stages, bar)
            with timer.stage("revise", len(prompts) * config.revision_rounds) as bar:
                job.revise(stages, bar)
            with timer.stage("label", None) as bar:
                job.label(stages, bar)
            ray_summary = stages.summary()
        timer.timings["total"] = time.time() - started
        m = models.models
        info = _run_info(
            config, prompts, prompts_path, constitution, m.policy, m.critic, prices, budget
        )
        info.update(
            job.outcome(),
            timings_s=timer.rounded(),
            requests=models.requests_info(config.executor, ray_summary),
        )
        finish_cost_per_label(info)
        writer.publish(info)
    except (OSError, sqlite3.Error) as e:
        _discard(writer)
        raise RunError(_write_failure(config.out, e)) from e
    except BackendError as e:
        _discard(writer)
        raise BackendError(
            f"{e} (every finished model call is kept in {config.out / STORE_FILE}: "
            "rerun the same command to continue)"
        ) from e
    except BaseException:
        _discard(writer)
        raise
    finally:
        store.close()
    return RunResult(config.out, info)


def _stages(config: RunConfig, models: Models, requests):
    """Where the stages run: in this process (``local``) or on Ray workers (``ray``)."""
    if config.executor != "ray":
        return LocalStages(models)
    from rlaif.pipeline.ray_executor import RayStages  # Ray is an optional extra

    # a programmatic judge is refused with --executor ray (RunConfig): the critic is the judge
    specs: dict[str, str | None] = {"policy": config.policy, "critic": config.judge}
    return RayStages(models, specs, workers=config.concurrency, requests=requests)


def estimate(config: RunConfig) -> RunEstimate:
    """Upper bounds of a run's calls, tokens and dollars; loads no model, writes nothing."""
    _, prompts, constitution, prices = _inputs(config)
    return estimate_run(config, prompts, constitution, prices)


def _inputs(config: RunConfig) -> tuple[Path, list, Constitution, PriceTable]:
    """The run's prompts file, prompts, constitution and prices, every model string checked:
    all that can be wrong with the input is found before any model is loaded."""
    prompts_path = Path(config.prompts) if config.prompts else builtin_prompts_path()
    prompts = load_prompts(prompts_path, limit=config.limit)
    constitution = load_constitution(config.constitution)
    parse_model_spec(config.policy)
    check_judge_spec(config.judge)
    prices = load_price_table(config.price_file, config.price_in, config.price_out)
    return prompts_path, prompts, constitution, prices


def _budget(config: RunConfig, prices: PriceTable) -> Budget | None:
    """The run's budget, counting what the calls already in its store cost; None if unlimited."""
    if config.max_cost is None:
        return None
    store_path = config.out / STORE_FILE
    _, spent = stored_spend(store_path, prices)
    return Budget(config.max_cost, prices, spent=spent, where=str(store_path))


def _budgeted(backend, budget: Budget | None):
    return backend if budget is None else BudgetedBackend(backend, budget)


def _discard(writer: OutputWriter) -> None:
    """Delete the unfinished output files; on a full or read-only disk leave what cannot go."""
    try:
        writer.discard()
    except OSError:
        pass  # a stray *.tmp is never read: the next run truncates it, run.json is absent


def _check_writable(out: Path) -> None:
    """RunError if files cannot be created in ``out`` (read-only file system or permissions)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise RunError(_write_failure(out, e)) from e


def _write_failure(out: Path, error: Exception) -> str:
    """One line for a run that could not write its directory: the cause and what to do."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return (
        f"{out}: cannot write the run directory ({reason}); free disk space or make it "
        "writable, then rerun the same command: every finished model call is kept in "
        f"{STORE_FILE}"
    )


def _retries(*backends) -> Counter:
    """Retried requests so far of the distinct server backends among ``backends``."""
    total: Counter = Counter()
    for b in {id(b): b for b in backends}.values():
        total.update(getattr(b, "retries", {}))
    return total


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"rlaif": __version__, "python": platform.python_version()}
    for pkg in ("llama-cpp-python", "openai"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _run_info(
    config, prompts, prompts_path, constitution, policy, judge, prices, budget=None
) -> dict:
    config_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    tokens = {
        role: {"prompt": b.prompt_tokens_total, "completion": b.completion_tokens_total}
        for role, b in (("policy", policy), ("judge", judge))
    }
    prompt_tokens = sum(t["prompt"] for t in tokens.values())
    completion_tokens = sum(t["completion"] for t in tokens.values())
    role_prices = {"policy": prices.price(config.policy), "judge": prices.price(config.judge)}
    role_cost = {r: role_prices[r].cost(t["prompt"], t["completion"]) for r, t in tokens.items()}
    cost = sum(role_cost.values())
    judge_cost = role_cost["judge"]
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
            "judge_choice_tokens_this_invocation": {
                "evaluated": judge.evaluated_tokens,
                "reused": judge.reused_tokens,
            },
        },
        "price_per_million": {
            role: {"input": p.input, "output": p.output} for role, p in role_prices.items()
        },
        "cost": round(cost, 8),
        "judge_cost": round(judge_cost, 8),
        "budget": None
        if budget is None
        else {
            "max_cost": budget.max_cost,
            "spent_this_invocation": round(budget.spent_now, 8),
            "spent_in_all": round(budget.spent, 8),
        },
    }


def finish_cost_per_label(info: dict) -> None:
    """Add ``cost_per_label`` and ``judge_cost_per_label`` to a run's info (None if no label)."""
    labels = info.get("labels") or 0
    info["cost_per_label"] = round(info["cost"] / labels, 8) if labels else None
    info["judge_cost_per_label"] = round(info["judge_cost"] / labels, 8) if labels else None


__all__ = ["RunConfig", "RunResult", "run", "estimate", "RUN_JSON"]
