"""The reward model's held-out accuracy interval resamples prompts, not pairs (a real tiny
transformers model scores the pairs)."""

from __future__ import annotations

import pytest
from tiny_model import tiny_checkpoint

from rlaif.stats import bootstrap_mean_ci
from rlaif.train.data import PreferencePair
from rlaif.train.reward import RewardModel, evaluate_pairs

GOOD = "Sure, here is a clear and helpful answer about tea, step by step."
BAD = "No. I will not talk about tea. Go away."


def test_held_out_accuracy_interval_is_a_cluster_bootstrap_by_prompt(tmp_path):
    pytest.importorskip("torch")
    rm = RewardModel.load(f"hf:{tiny_checkpoint(tmp_path / 'tiny')}", num_labels_new=True)
    rm.model.eval()
    # Ten prompts (groups), two identical pairs each; odd prompts swap chosen and rejected.
    # Whatever the untrained model prefers, the two pairs of a prompt are both right or both
    # wrong, and exactly half of the prompts are right: 10 independent observations, not 20.
    pairs = []
    for g in range(10):
        chosen, rejected = (GOOD, BAD) if g % 2 == 0 else (BAD, GOOD)
        for k in range(2):
            pairs.append(PreferencePair("Tell me about tea.", chosen, rejected, 0.9, f"p{g}", k))
    result = evaluate_pairs(rm, pairs)
    assert result["accuracy"] == 0.5
    good, bad = rm.score(["Tell me about tea."] * 2, [GOOD, BAD])
    per_prompt = [1.0, 0.0] * 5 if good > bad else [0.0, 1.0] * 5  # even prompts: GOOD chosen
    correct = [v for v in per_prompt for _ in range(2)]
    # equal clusters of identical values: the interval is the bootstrap of the 10 prompts
    assert result["accuracy_ci"] == pytest.approx(bootstrap_mean_ci(per_prompt))
    low_pairs, high_pairs = bootstrap_mean_ci(correct)  # what resampling pairs would give
    low, high = result["accuracy_ci"]
    assert high - low > 1.2 * (high_pairs - low_pairs)
