"""Label quality: measure a judge against human preferences, expose its biases, report them.

``gold`` reads human-labelled pairs, ``strategies`` asks the judge in different ways,
``summary`` scores the answers with bootstrap intervals by prompt (the statistics themselves
live in :mod:`rlaif.stats`), ``significance`` compares strategies pair by pair
(Holm-adjusted), ``agreement`` runs it all into an evaluation directory, ``winrate`` plays a
policy against a baseline, and ``report`` draws any output folder as one HTML file.

The names below are imported on first use, so that the command line stays quick to start.
"""

from __future__ import annotations

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "agreement": ["AgreementConfig", "run_agreement"],
        "gold": ["GoldPair", "GoldSet", "load_gold"],
        "report": ["write_report"],
        "strategies": ["DEFAULT_STRATEGIES", "STRATEGIES", "StrategyOptions"],
    },
)
