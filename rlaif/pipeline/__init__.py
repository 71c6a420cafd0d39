"""The main job, ``rlaif run``: prompts in, AI-labelled preference and revision data out.

``config`` says what a run is asked to do; ``job`` runs it top to bottom, handing each
prompt to the ``stages`` (sample, revise, pair, label) and model calls to ``executor`` (threads
or Ray); ``outputs`` writes the run directory's files;
``pricing`` holds the price table and the recorded spend, ``dry_run`` the estimate before a run, and
``budget`` stops a run at ``--max-cost``; ``agent`` is the same work for one prompt, in Python.

``RunConfig``, ``run``, ``estimate`` and the rest of the main job's API are imported on first
use, so that reading a run's files stays quick.
"""

from __future__ import annotations

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["RunConfig"],
        "job": ["RunResult", "estimate", "finish_cost_per_label", "open_run_dir", "run"],
    },
)
