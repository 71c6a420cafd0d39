"""Measure a judge against human labels: run strategies over gold pairs, write the results.

An evaluation directory holds:

================  ===============================================================================
``pairs.jsonl``   one line per pair and strategy: ``strategy``, the human label ``human`` (``a``,
                  ``b`` or ``tie``), ``p_a``, ``p_a_order_ab``, ``p_a_order_ba`` (null where no
                  order was shown: pointwise, which keeps ``p_yes_a``, ``p_yes_b`` instead),
                  ``prompt_id`` (pairs of one prompt are resampled together) and what the
                  metrics need (lengths, annotators, category, principle, tokens)
``metrics.json``  one entry per strategy (``summary.summarize`` of ``pairs.jsonl``)
``eval.json``     what was measured: gold file, format, judge, constitution, seed, timings
``store.sqlite``  every judge call's result: strategies share calls (one order is half of both
                  orders), and an interrupted or repeated evaluation does not ask twice
================  ===============================================================================
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rlaif import templates
from rlaif._version import __version__
from rlaif.backends import Backend, check_judge_spec, load_backend
from rlaif.backends.cached import CachedBackend
from rlaif.compare import Preference
from rlaif.constitution import load_constitution
from rlaif.errors import BackendError, InputError, RunError
from rlaif.evaluate.gold import FORMATS, GoldPair, load_gold
from rlaif.evaluate.strategies import (
    DEFAULT_STRATEGIES,
    RULE_STRATEGY,
    STRATEGIES,
    StrategyOptions,
    make_strategy,
    rule_strategies,
)
from rlaif.evaluate.summary import read_pairs, summarize
from rlaif.fileio import write_json_atomic, write_jsonl_atomic
from rlaif.rules import is_programmatic
from rlaif.store import STORE_FILE, Store

PAIRS_FILE = "pairs.jsonl"
METRICS_FILE = "metrics.json"
EVAL_FILE = "eval.json"
#: give up after this many judge failures in a row (a dead server, not one long prompt)
MAX_CONSECUTIVE_ERRORS = 5


@dataclass
class AgreementConfig:
    """One evaluation: which gold file, which judge, which strategies."""

    gold: str
    out: Path
    #: a model string, or a backend already opened
    judge: str | Backend = "smollm2"
    #: gold format (see ``rlaif.evaluate.gold``); None detects it from the first record
    format: str | None = None
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    #: use the first N usable pairs of the gold file
    limit: int | None = None
    #: seed of principle draws, of the A/B coin in chosen-first formats, and of the bootstrap
    seed: int = 0
    constitution: str = "default"
    options: StrategyOptions = field(default_factory=StrategyOptions)
    #: bootstrap resamples of every confidence interval
    resamples: int = 1000

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.strategies = tuple(self.strategies)
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(
                f"unknown strategy {', '.join(unknown)}; choose from {', '.join(STRATEGIES)}"
            )
        if not self.strategies:
            raise ValueError("name at least one strategy")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"a strategy is named twice: {', '.join(self.strategies)}")
        if self.format not in (None, "auto", *FORMATS):
            raise ValueError(f"format must be one of auto, {', '.join(FORMATS)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, not {self.limit}")
        if self.resamples < 100:
            raise ValueError(f"resamples must be >= 100, not {self.resamples}")


def prompt_id(prompt: str) -> str:
    """A short content hash of a prompt: pairs with the same one form one bootstrap cluster."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def pair_record(strategy: str, pair: GoldPair, pref: Preference | None, error: str | None) -> dict:
    """The ``pairs.jsonl`` line of one pair labelled by one strategy."""
    return {
        "strategy": strategy,
        "pair_id": pair.index,
        "prompt_id": prompt_id(pair.prompt),
        "human": pair.human,
        "p_a": None if pref is None else pref.p_a,
        "p_a_order_ab": None if pref is None else pref.p_a_order_ab,
        "p_a_order_ba": None if pref is None else pref.p_a_order_ba,
        "position_consistent": None if pref is None else pref.position_consistent,
        "p_yes_a": None if pref is None else pref.p_yes_a,
        "p_yes_b": None if pref is None else pref.p_yes_b,
        "annotators": list(pair.annotators),
        "category": pair.category,
        "swapped": pair.swapped,
        "principle_id": None if pref is None else pref.principle_id,
        "method": None if pref is None else pref.method,
        "len_a": len(pair.a),
        "len_b": len(pair.b),
        "prompt_tokens": 0 if pref is None else pref.prompt_tokens,
        "completion_tokens": 0 if pref is None else pref.completion_tokens,
        "error": error,
    }


def open_eval_dir(out: Path) -> None:
    """Create an evaluation's output directory; RunError if ``out`` is a file or a run's folder."""
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a directory; choose another --out")
    if (out / "run.json").exists():
        raise RunError(f"{out}: holds an `rlaif run`; choose another --out for the evaluation")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{out}: cannot create the directory ({e.strerror})") from e


#: called after each pair with (pairs done, pairs in all)
ProgressFn = Callable[[int, int], None]


def run_agreement(config: AgreementConfig, on_progress: ProgressFn | None = None) -> dict:
    """Label every gold pair with every strategy; write the directory; return metrics.json."""
    # Everything that can be wrong with the input is found before the model is loaded.
    gold = load_gold(config.gold, config.format, limit=config.limit, seed=config.seed)
    constitution = load_constitution(config.constitution)
    if isinstance(config.judge, str):
        check_judge_spec(config.judge)
    open_eval_dir(config.out)
    store = Store(config.out / STORE_FILE)
    try:
        if is_programmatic(config.judge):  # one way to ask a function: its scores
            backend, strategies = rule_strategies(config.judge, constitution, seed=config.seed)
        else:
            backend = CachedBackend(load_backend(config.judge), store)
            strategies = {
                name: make_strategy(
                    name, backend, constitution, seed=config.seed, options=config.options
                )
                for name in config.strategies
            }
        records, timings = _label_all(gold.pairs, strategies, backend, on_progress)
    finally:
        store.close()
    write_jsonl_atomic(config.out / PAIRS_FILE, records)
    metrics = summarize(records, resamples=config.resamples, seed=config.seed)
    price_in, price_out = backend.price_per_million
    for name, entry in metrics.items():
        entry["description"] = STRATEGIES.get(name, RULE_STRATEGY)
        entry["seconds_per_label"] = round(timings[name]["seconds"] / len(gold.pairs), 4)
        entry["cost_per_label"] = round(
            (
                entry["prompt_tokens_per_label"] * price_in
                + entry["completion_tokens_per_label"] * price_out
            )
            / 1e6,
            8,
        )
    info = _eval_info(config, gold, backend.model_id, constitution, list(strategies))
    info["price_per_million"] = {"input": price_in, "output": price_out}
    info["timings"] = timings
    info["template_version"] = templates.TEMPLATE_VERSION
    info["rlaif"] = __version__
    write_json_atomic(config.out / EVAL_FILE, info)
    write_json_atomic(config.out / METRICS_FILE, metrics)
    return metrics


def _label_all(
    pairs: list[GoldPair], strategies: dict, backend, on_progress: ProgressFn | None
) -> tuple[list[dict], dict[str, dict]]:
    """Every pair labelled by every strategy: the ``pairs.jsonl`` records, strategy by
    strategy, and each strategy's seconds and model calls."""
    by_strategy: dict[str, list[dict]] = {name: [] for name in strategies}
    timings = {name: {"seconds": 0.0, "model_calls": 0} for name in strategies}
    failures = dict.fromkeys(strategies, 0)
    # Pair by pair, every strategy in turn: the judge's KV cache keeps the pair's shared
    # prefix between strategies, and a run stopped early has the same pairs for all.
    for done, pair in enumerate(pairs, start=1):
        for name, strategy in strategies.items():
            calls_before, started = backend.model_calls, time.time()
            pref, error = None, None
            try:
                pref = strategy.label(pair.prompt, pair.a, pair.b)
                failures[name] = 0
            except BackendError as e:
                # One pair the judge cannot take (too long for its context) is recorded
                # as unreadable with its reason; a judge that keeps failing stops the run.
                failures[name] += 1
                if failures[name] >= MAX_CONSECUTIVE_ERRORS:
                    raise
                error = str(e)
            timings[name]["seconds"] += time.time() - started
            timings[name]["model_calls"] += backend.model_calls - calls_before
            by_strategy[name].append(pair_record(name, pair, pref, error))
        if on_progress:
            on_progress(done, len(pairs))
    for t in timings.values():
        t["seconds"] = round(t["seconds"], 3)
    return [r for name in strategies for r in by_strategy[name]], timings


def _eval_info(config: AgreementConfig, gold, judge: str, constitution, strategies) -> dict:
    """What eval.json says of the evaluation's input and settings."""
    return {
        "gold": str(config.gold),
        "format": gold.format,
        "pairs": len(gold.pairs),
        "skipped": gold.skipped,
        "judge": judge,
        "constitution": {
            "source": constitution.source,
            "name": constitution.name,
            "hash": constitution.hash,
        },
        "strategies": strategies,
        "options": asdict(config.options),
        "seed": config.seed,
        "limit": config.limit,
        "bootstrap": {"resamples": config.resamples, "seed": config.seed, "level": 0.95},
    }


def load_eval_dir(out: str | Path) -> tuple[dict, dict, list[dict]]:
    """(metrics.json, eval.json, pairs.jsonl records) of an evaluation directory."""
    out = Path(out)
    try:
        metrics = json.loads((out / METRICS_FILE).read_text(encoding="utf-8"))
        info_path = out / EVAL_FILE
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{out}: not a readable evaluation directory ({e})") from e
    pairs_path = out / PAIRS_FILE
    return metrics, info, read_pairs(pairs_path) if pairs_path.exists() else []
