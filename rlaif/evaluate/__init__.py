"""Label quality: measure a judge against human preferences, expose its biases, report them.

``gold`` reads human-labelled pairs, ``strategies`` asks the judge in different ways,
``summary`` scores the answers with bootstrap intervals by prompt (the statistics themselves
live in :mod:`rlaif.stats`), ``significance`` compares strategies pair by pair
(Holm-adjusted), ``agreement`` runs it all into an evaluation directory, ``winrate`` plays a
policy against a baseline, and ``report`` draws any output folder as one HTML file.

The names below are imported on first use, so that the command line stays quick to start.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AgreementConfig": "rlaif.evaluate.agreement",
    "run_agreement": "rlaif.evaluate.agreement",
    "GoldPair": "rlaif.evaluate.gold",
    "GoldSet": "rlaif.evaluate.gold",
    "load_gold": "rlaif.evaluate.gold",
    "write_report": "rlaif.evaluate.report",
    "DEFAULT_STRATEGIES": "rlaif.evaluate.strategies",
    "STRATEGIES": "rlaif.evaluate.strategies",
    "StrategyOptions": "rlaif.evaluate.strategies",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rlaif.evaluate' has no attribute {name!r}")
