"""Scoring functions for the served-judge tests (``--judge python:serve_support:NAME``): slow
or failing on purpose, for the deadline and failed-item cases."""

from __future__ import annotations

import time

from rlaif.rules import completion_text


def words_or_fail(prompts, completions, **_):
    """The number of words, after 3 s for a completion holding SLOW; raises on FAIL."""
    scores = []
    for completion in completions:
        text = completion_text(completion)
        if "FAIL" in text:
            raise RuntimeError("judge broke on purpose")
        if "SLOW" in text:
            time.sleep(3)
        scores.append(float(len(text.split())))
    return scores
