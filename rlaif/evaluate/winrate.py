"""Win rate of a policy against a baseline, judged by the AI judge in both orders.

Both models answer every held-out prompt (greedy by default, so a rerun gives the same
answers); the judge compares the two answers in both orders (``p = (p_ab + 1 - q_ba) / 2``,
the policy's answer as A), so neither model gains from the judge's position bias. Outcomes:

* **win** when ``p > 0.5 + tie_margin``, **loss** when ``p < 0.5 - tie_margin``;
* **tie** otherwise: a label within ``tie_margin`` of 0.5 (by default exactly 0.5); two
  identical answers are a tie without asking the judge;
* **unreadable** when a judge reply could not be read: left out of ``n``, counted apart.

``win_rate = (wins + ties / 2) / n`` with a 95% percentile bootstrap interval over prompts;
``soft_win_rate`` is the mean of ``p`` (the judge's probability that the policy is better).

Each answer's end is recorded (``policy_truncated`` / ``baseline_truncated`` in ``pairs.jsonl``:
cut at ``max_tokens``) and reaches the judge, so a length rule never passes a cut-off answer;
the guards in ``metrics.json`` carry each side's truncated share.

By default (:mod:`rlaif.train.heldout`) the prompts are the shipped held-out set minus any
the models were trained on, and the baseline is the model the policy was trained from through
the same backend; named prompts that overlap the training data are refused unless
``allow_overlap``.

Every model call goes through the directory's run store, so a killed evaluation started again
continues where it stopped. ``pairs.jsonl`` and ``metrics.json`` are written when it is done,
``metrics.json`` last. A policy given as ``hf:DIR`` is cached under a fingerprint of its
weights, so a checkpoint retrained into the same directory is never answered from the store.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rlaif import templates
from rlaif._version import __version__
from rlaif.backends import Backend, check_judge_spec, load_backend, parse_model_spec
from rlaif.backends.cached import CachedBackend
from rlaif.compare import Judge, RuleJudge
from rlaif.constitution import load_constitution
from rlaif.errors import RunError
from rlaif.evaluate.agreement import open_eval_dir
from rlaif.fileio import write_json_atomic, write_jsonl_atomic
from rlaif.prompts import file_sha256
from rlaif.rules import is_programmatic
from rlaif.stats import bootstrap_mean_ci
from rlaif.store import STORE_FILE, Store
from rlaif.synth import Response, sample_responses
from rlaif.train.drift import answer_health
from rlaif.train.heldout import default_baseline, eval_prompts
from rlaif.train.provenance import checkpoint_dir

METRICS_FILE = "metrics.json"
PAIRS_FILE = "pairs.jsonl"

#: called with (stage, done, total) as the work advances
ProgressFn = Callable[[str, int, int], None]


@dataclass
class WinrateConfig:
    """One win-rate evaluation: who plays whom, on which prompts, judged how."""

    policy: str
    out: Path
    #: the model it plays; None: the model the policy was trained from (same backend)
    baseline: str | None = None
    #: held-out prompts file; None for the shipped held-out set (minus training prompts)
    prompts: str | None = None
    #: evaluate on named prompts even when some are in the models' training data
    allow_overlap: bool = False
    judge: str = "smollm2"
    constitution: str = "default"
    limit: int | None = None
    seed: int = 0
    #: 0: greedy answers (the default: a rerun gives the same answers)
    temperature: float = 0.0
    max_tokens: int = 128
    #: labels within this distance of 0.5 are ties (0: only exactly 0.5)
    tie_margin: float = 0.0
    resamples: int = 1000

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, not {self.limit}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, not {self.temperature}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, not {self.max_tokens}")
        if not 0.0 <= self.tie_margin < 0.5:
            raise ValueError(f"tie_margin must be in [0, 0.5), not {self.tie_margin}")
        if self.resamples < 1:
            raise ValueError(f"resamples must be >= 1, not {self.resamples}")


def outcome(p: float | None, tie_margin: float = 0.0) -> str:
    """win, loss, tie or unreadable for the judge's probability that the policy is better."""
    if p is None:
        return "unreadable"
    if p > 0.5 + tie_margin:
        return "win"
    if p < 0.5 - tie_margin:
        return "loss"
    return "tie"


CREDIT = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def summarize(records: list[dict], *, resamples: int = 1000, seed: int = 0) -> dict:
    """Counts, win rate (ties count half) and soft win rate, each with a 95% bootstrap CI."""
    counts = {k: sum(r["outcome"] == k for r in records) for k in (*CREDIT, "unreadable")}
    readable = [r for r in records if r["outcome"] in CREDIT]
    credit = [CREDIT[r["outcome"]] for r in readable]
    soft = [r["p_policy"] for r in readable]
    n = len(readable)
    consistent = [
        r["position_consistent"] for r in readable if r["position_consistent"] is not None
    ]

    def mean(xs: list[float]) -> float | None:
        return round(sum(xs) / len(xs), 6) if xs else None

    def ci(xs: list[float]) -> list[float] | None:
        if not xs:
            return None
        return [round(v, 6) for v in bootstrap_mean_ci(xs, resamples=resamples, seed=seed)]

    return {
        "n": n,
        "wins": counts["win"],
        "losses": counts["loss"],
        "ties": counts["tie"],
        "unreadable": counts["unreadable"],
        "identical": sum(bool(r["identical"]) for r in records),
        "win_rate": mean(credit),
        "win_rate_ci": ci(credit),
        "soft_win_rate": mean(soft),
        "soft_win_rate_ci": ci(soft),
        "position_consistency": mean([float(c) for c in consistent]),
        "mean_chars_policy": mean([len(r["policy_response"]) for r in records]),
        "mean_chars_baseline": mean([len(r["baseline_response"]) for r in records]),
        # what catches a win bought by degenerate answers (rlaif.train.drift)
        "guards": {
            role: answer_health(
                [r[f"{role}_response"] for r in records],
                [r.get(f"{role}_truncated") for r in records],
            )
            for role in ("policy", "baseline")
        },
        "samples": [
            {k: r.get(k) for k in ("prompt", "policy_response", "baseline_response")}
            for r in records[:3]
        ],
    }


def checkpoint_fingerprint(spec: str) -> str | None:
    """sha256 (16 hex digits) of an ``hf:DIR`` or ``gguf:DIR`` checkpoint's config and
    weights (the GGUF is exported from them); None otherwise."""
    path = checkpoint_dir(spec)
    if path is None:
        return None
    digest = hashlib.sha256()
    files = sorted([path / "config.json", *path.glob("*.safetensors"), *path.glob("*.bin")])
    for f in files:
        digest.update(f.name.encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _cached(spec: str, store: Store) -> CachedBackend:
    backend = CachedBackend(load_backend(spec), store)
    fingerprint = checkpoint_fingerprint(spec)
    if fingerprint:
        # The cache key names the weights, not just the directory they lie in.
        backend.model_id = f"{spec}#{fingerprint}"
    return backend


def _open_out(out: Path) -> Store:
    if out.is_dir() and not (out / STORE_FILE).exists():
        stray = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        if stray:
            raise RunError(
                f"{out}: not empty and not an rlaif evaluation directory "
                f"({', '.join(stray[:3])}); choose a new --out"
            )
    open_eval_dir(out)
    return Store(out / STORE_FILE)


def run_winrate(config: WinrateConfig, on_progress: ProgressFn | None = None) -> dict:
    """Answer, judge and count; write ``pairs.jsonl`` and ``metrics.json``; return the metrics."""
    started = time.time()
    # Everything that can be wrong with the input is found before any model is loaded.
    parse_model_spec(config.policy)
    baseline = config.baseline or default_baseline(config.policy)
    chosen = eval_prompts(
        config.prompts,
        [config.policy, baseline],
        limit=config.limit,
        allow_overlap=config.allow_overlap,
    )
    prompts, prompts_path = chosen.prompts, chosen.path
    constitution = load_constitution(config.constitution)
    parse_model_spec(baseline)
    check_judge_spec(config.judge)
    store = _open_out(config.out)
    # metrics.json marks a finished evaluation: none while this one is under way.
    (config.out / METRICS_FILE).unlink(missing_ok=True)
    progress = on_progress or (lambda stage, done, total: None)
    try:
        players = {"policy": _cached(config.policy, store)}
        players["baseline"] = _cached(baseline, store)
        if is_programmatic(config.judge):  # a scoring function: no judge model to call
            judge_backends, judge = [], RuleJudge(config.judge, constitution, seed=config.seed)
        else:
            judge_backends = [CachedBackend(load_backend(config.judge), store)]
            judge = Judge(judge_backends[0], constitution, seed=config.seed)
        answers = {
            role: _answers(b, prompts, config, role, progress) for role, b in players.items()
        }
        records = []
        for i, p in enumerate(prompts):
            progress("judge", i, len(prompts))
            mine, theirs = answers["policy"][i], answers["baseline"][i]
            records.append(_judge_pair(judge, p, mine, theirs, config.tie_margin))
        progress("judge", len(prompts), len(prompts))
        backends = [*players.values(), *judge_backends]
        model_calls = sum(b.model_calls for b in backends)
        cached_calls = sum(b.cached_calls for b in backends)
    finally:
        store.close()
    metrics = summarize(records, resamples=config.resamples, seed=config.seed)
    metrics.update(
        {
            "policy": config.policy,
            "baseline": baseline,
            "baseline_default": config.baseline is None,
            "judge": config.judge,
            "policy_fingerprint": checkpoint_fingerprint(config.policy),
            "baseline_fingerprint": checkpoint_fingerprint(baseline),
            "prompts_file": str(prompts_path),
            "prompts_sha256": file_sha256(prompts_path),
            "prompts": len(prompts),
            "prompt_selection": chosen.to_dict(),
            "constitution": {"name": constitution.name, "hash": constitution.hash},
            "config": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
            },
            "win_rate_definition": "(wins + ties / 2) / n; tie: |p - 0.5| <= tie_margin",
            "bootstrap": {"resamples": config.resamples, "seed": config.seed, "level": 0.95},
            "model_calls": model_calls,
            "cached_calls": cached_calls,
            "time_s": round(time.time() - started, 3),
            "template_version": templates.TEMPLATE_VERSION,
            "rlaif": __version__,
        }
    )
    write_jsonl_atomic(config.out / PAIRS_FILE, records)
    write_json_atomic(config.out / METRICS_FILE, metrics)
    return metrics


def _answers(
    backend: Backend, prompts: list, config: WinrateConfig, role: str, progress
) -> list[Response]:
    """One sampled answer per prompt from ``backend`` (the ``role`` stage of the progress)."""
    answers: list[Response] = []
    for i, p in enumerate(prompts):
        progress(role, i, len(prompts))
        answers += sample_responses(
            backend,
            p.chat(),
            1,
            seed=config.seed,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
        )
    progress(role, len(prompts), len(prompts))
    return answers


def _judge_pair(judge: Judge, p, policy: Response, baseline: Response, tie_margin: float) -> dict:
    """One prompt's record: both answers, the judge's label (policy as A) and the outcome.

    The judge sees whether each answer was cut at the token limit (a length rule fails it).
    """
    mine, theirs = policy.text, baseline.text
    record = {
        "prompt_id": p.id,
        "prompt": p.for_record(),
        "policy_response": mine,
        "baseline_response": theirs,
        "policy_truncated": policy.truncated,
        "baseline_truncated": baseline.truncated,
        "identical": mine == theirs,
    }
    if mine == theirs:
        # Both orders would give exactly 0.5 up to rounding: a tie, no judge call needed.
        return {
            **record,
            "p_policy": 0.5,
            "p_policy_shown_first": None,
            "p_policy_shown_second": None,
            "position_consistent": None,
            "principle_id": None,
            "outcome": "tie",
        }
    pref = judge.compare(p.text, mine, theirs, truncated=(policy.truncated, baseline.truncated))
    return {
        **record,
        "p_policy": pref.p_a,
        "p_policy_shown_first": pref.p_a_order_ab,
        "p_policy_shown_second": pref.p_a_order_ba,
        "position_consistent": pref.position_consistent,
        "principle_id": pref.principle_id,
        "label_source": pref.label_source,
        "outcome": outcome(pref.p_a, tie_margin),
    }


def run_winrate_with_progress(config: WinrateConfig, *, show_progress: bool = True) -> dict:
    """:func:`run_winrate` with a rich progress bar per stage (answers, answers, judge)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from rlaif.progress import make_progress

    progress = make_progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show_progress,
    )
    tasks: dict[str, int] = {}

    def on_progress(stage: str, done: int, total: int) -> None:
        if not tasks:
            progress.start()  # only once models run: an input error prints one line
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done)

    try:
        return run_winrate(config, on_progress=on_progress)
    finally:
        if tasks:
            progress.stop()


def load_metrics(out: str | Path) -> dict | None:
    """A finished evaluation's metrics, or None when ``out`` holds no finished evaluation."""
    path = Path(out) / METRICS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
