"""The loop benchmark's noisy judge flips the share of decisive pairs it says, and only those.

benchmarks/loop_effect.py's ``noisy-*`` rows train on the yardstick's labels with a known share
of the decisive pairs turned around; what those rows mean rests on that share being real. It is
measured here on the pairs of the effect fixture, through rlaif's own rule judge.
"""

from __future__ import annotations

import math
import sys
from itertools import combinations
from pathlib import Path

from effect_support import RULE, fixture_rows

from rlaif.compare import RuleJudge

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import loop_effect  # noqa: E402


def test_noisy_judge_flips_a_known_share_of_decisive_pairs_only(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(loop_effect.__file__).parent))
    honest, noisy = RuleJudge(RULE), RuleJudge("python:loop_effect:words_noisy")
    decisive = flipped = ties_moved = 0
    for row in fixture_rows("train"):
        for a, b in combinations(row["samples"], 2):
            cut = (a["truncated"], b["truncated"])
            p = honest.compare("q", a["text"], b["text"], truncated=cut).p_a
            q = noisy.compare("q", a["text"], b["text"], truncated=cut).p_a
            q_swapped = noisy.compare("q", b["text"], a["text"], truncated=cut[::-1]).p_a
            assert math.isclose(q, 1 - q_swapped)  # the same pair, whatever its order
            if p == 0.5:
                ties_moved += q != 0.5
                continue
            decisive += 1
            assert math.isclose(abs(q - 0.5), loop_effect.NOISY_P - 0.5)
            flipped += (p > 0.5) != (q > 0.5)
    assert ties_moved == 0
    assert decisive >= 300, decisive
    share = flipped / decisive
    # a binomial share of NOISY_FLIP within about three standard deviations
    spread = 3 * math.sqrt(loop_effect.NOISY_FLIP * (1 - loop_effect.NOISY_FLIP) / decisive)
    assert abs(share - loop_effect.NOISY_FLIP) < spread, (flipped, decisive)
