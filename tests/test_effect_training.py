"""Training on AI feedback makes the policy better, and a broken variant shows it does not.

Every test here trains the real embedded model (SmolLM2-135M through transformers) on answers
it wrote itself to the prompts as they stand (tests/data/effect_responses.jsonl), labelled by a
rule that is right by construction (``rule:words=8-40``, see effect_support), and measures on
held-out prompts:

- DPO alone (the soft DPO loss, no NLL term) raises the held-out implicit-reward accuracy and
  the rule's pass rate of greedy answers; with chosen and rejected swapped the same test fails
  (marked xfail, strict: if the swapped variant ever passes, the suite fails), and with
  shuffled labels neither the pass rate nor the implicit-reward accuracy rises;
- a reward model trained on the rule's labels ranks held-out pairs above chance;
- every trained policy still answers: no rise in empty or near-empty answers or in answers
  stuck in a loop, and its KL to the starting model on held-out prompts under a stated bound.

The primary DPO tests train with ``nll_weight`` 0: every chosen answer passes the rule, so an
NLL term alone would fine-tune on passing answers and raise the figures with the DPO term
broken. :data:`PAIRS_PER_PROMPT` and the recipe in :data:`DPO` are what lets the soft DPO loss
move the policy on its own (see docs/results/effect-tests.md).

GRPO's effect tests are in test_effect_grpo.py.

``pytest -k effect`` runs these alone (about 22 minutes on 2 cores: three DPO trainings and a
reward model).
"""

from __future__ import annotations

import math

import pytest
from effect_support import (
    fixture_rows,
    heldout_pairs,
    measure,
    rule_pairs,
    variant,
    write_jsonl,
)

from rlaif.stats import bootstrap_mean_ci
from rlaif.train import drift
from rlaif.train.dpo import DPOSettings, train_dpo
from rlaif.train.models import load_model_and_tokenizer

#: DPO settings of the effect tests: the soft loss with beta 0.1 as rlaif train dpo's defaults,
#: no NLL term, 8 pairs a step at learning rate 3e-5 and answers cut at 160 tokens to fit 2 cores
DPO = {
    "epochs": 2,
    "learning_rate": 3e-5,
    "beta": 0.1,
    "batch_size": 8,
    "max_length": 160,
    "nll_weight": 0.0,
}
#: pairs of a passing and a failing answer taken per training prompt (effect_support.rule_pairs):
#: at 2 (48 pairs) DPO alone left 3 more held-out answers looping; at 4 (59 pairs: more distinct
#: rejected answers for the prompts with several passing ones) none (docs/results/effect-tests.md)
PAIRS_PER_PROMPT = 4
#: the pass rate must rise by at least this much (absolute) on the held-out prompts
MIN_PASS_GAIN = 0.15
#: the held-out implicit-reward accuracy (the per-token log-ratio margin) must reach this (0.5 is
#: an untrained policy), with the lower end of its 95% interval (a bootstrap over prompts) above
#: 0.5
MIN_ACCURACY = 0.7
#: near-empty and looping answers may rise by at most one held-out prompt
MAX_DEGENERATE_RISE = 1
#: KL(policy || start) along the policy's held-out answers, nats per token
MAX_KL_PER_TOKEN = 0.5


@pytest.fixture(scope="module")
def heldout_prompts() -> list[str]:
    return [r["prompt"] for r in fixture_rows("heldout")]


@pytest.fixture(scope="module")
def base(heldout_prompts):
    model, tokenizer = load_model_and_tokenizer("smollm2")
    model.eval()
    return model, tokenizer, measure(model, tokenizer, heldout_prompts)


@pytest.fixture(scope="module")
def heldout() -> tuple[list[tuple], list[int]]:
    """Every held-out (prompt, passing, failing) pair and its prompt's index."""
    return heldout_pairs()


def accuracy_interval(right: list[float], clusters: list[int]) -> list[float]:
    """95% interval of a held-out accuracy, resampling prompts (their pairs share answers)."""
    return bootstrap_mean_ci(right, clusters=clusters, resamples=2000)


_TRAINED: dict[str, object] = {}
#: the starting model's log-probabilities of the held-out answers, scored once for every policy
_REFERENCE_LOGPROBS: dict = {}


def trained_dpo(tmp_path_factory, kind: str):
    """DPO on the training split's rule pairs (as labelled, swapped or shuffled), once a kind."""
    if kind not in _TRAINED:
        work = tmp_path_factory.mktemp(f"dpo-{kind}")
        pairs = rule_pairs("train", per_prompt=PAIRS_PER_PROMPT)
        data = write_jsonl(variant(pairs, kind), work / "prefs.jsonl")
        train_dpo(DPOSettings(data=str(data), out=work / "policy", **DPO), show_progress=False)
        model, _ = load_model_and_tokenizer(f"hf:{work / 'policy'}")
        model.eval()
        _TRAINED[kind] = model
    return _TRAINED[kind]


def effect(base, policy, heldout_prompts, heldout=None) -> dict:
    """The held-out figures of a trained policy against the starting model."""
    model, tokenizer, before = base
    after = measure(policy, tokenizer, heldout_prompts)
    if heldout:
        pairs, clusters = heldout
        measured = drift.implicit_reward_accuracy(
            policy, model, tokenizer, pairs, reference_logprobs=_REFERENCE_LOGPROBS
        )
        # the per-token margin: the held-out rejected answers are mostly cut at the token
        # limit and longer than the chosen ones, and the summed margin reads a policy that
        # lowered every token alike as preferring the shorter side (shuffled labels gave
        # 0.71 [0.55, 0.83] summed, 0.59 [0.44, 0.70] per token)
        accuracy = {
            "n": measured["n"],
            "accuracy": measured["accuracy_per_token"],
            "ci": accuracy_interval(measured["right_per_token"], clusters),
            "summed": measured["accuracy"],
            "prompts": len(set(clusters)),
        }
    else:
        nan = math.nan
        accuracy = {"n": 0, "accuracy": nan, "ci": [nan, nan], "summed": nan, "prompts": 0}
    kl = drift.kl_to_reference(policy, model, tokenizer, heldout_prompts, after.answers)
    n = len(heldout_prompts)
    return {
        "before": before,
        "after": after,
        "accuracy": accuracy,
        "kl": kl,
        "n": n,
        "summary": (
            f"pass rate {before.pass_rate:.2f} -> {after.pass_rate:.2f}; implicit-reward "
            f"accuracy {accuracy['accuracy']:.2f} [{accuracy['ci'][0]:.2f}, "
            f"{accuracy['ci'][1]:.2f}] per token (summed: {accuracy['summed']:.2f}) on "
            f"{accuracy['n']} pairs of {accuracy['prompts']} prompts; near-empty "
            f"{before.health['near_empty']:.2f} -> {after.health['near_empty']:.2f}; looping "
            f"{before.health['looping']:.2f} -> {after.health['looping']:.2f}; mean words "
            f"{before.health['mean_words']:.1f} -> {after.health['mean_words']:.1f}; KL "
            f"{kl['per_token']:.3f} nats/token"
        ),
    }


def assert_answers_stay_answers(result: dict) -> None:
    """Near-empty and looping answers rise by at most one prompt; KL to the start is bounded."""
    before, after, n = result["before"].health, result["after"].health, result["n"]
    for kind in ("near_empty", "looping"):
        rise = round((after[kind] - before[kind]) * n)
        assert rise <= MAX_DEGENERATE_RISE, f"{kind} rose by {rise}: {result['summary']}"
    assert result["kl"]["per_token"] < MAX_KL_PER_TOKEN, result["summary"]


def assert_dpo_effect(result: dict) -> None:
    """The policy learned the rule: held-out accuracy and pass rate up, answers still answers."""
    acc = result["accuracy"]
    assert acc["accuracy"] >= MIN_ACCURACY, result["summary"]
    assert acc["ci"][0] > 0.5, result["summary"]
    gain = result["after"].pass_rate - result["before"].pass_rate
    assert gain >= MIN_PASS_GAIN, result["summary"]
    assert_answers_stay_answers(result)


def test_dpo_effect_on_rule_labels(tmp_path_factory, base, heldout_prompts, heldout):
    policy = trained_dpo(tmp_path_factory, "correct")
    result = effect(base, policy, heldout_prompts, heldout)
    print(result["summary"])
    assert_dpo_effect(result)


@pytest.mark.xfail(
    raises=AssertionError, strict=True, reason="chosen and rejected swapped: must not learn"
)
def test_dpo_effect_swapped_labels_fails(tmp_path_factory, base, heldout_prompts, heldout):
    policy = trained_dpo(tmp_path_factory, "swapped")
    result = effect(base, policy, heldout_prompts, heldout)
    print(result["summary"])
    assert_dpo_effect(result)


def test_dpo_effect_control_shuffled_labels_gains_nothing(
    tmp_path_factory, base, heldout_prompts, heldout
):
    """With labels shuffled, neither the pass rate nor the implicit-reward accuracy rises."""
    policy = trained_dpo(tmp_path_factory, "shuffled")
    result = effect(base, policy, heldout_prompts, heldout)
    print(result["summary"])
    gain = result["after"].pass_rate - result["before"].pass_rate
    assert gain < MIN_PASS_GAIN, result["summary"]
    assert result["accuracy"]["ci"][0] <= 0.5, result["summary"]


def test_effect_fixture_is_what_the_rule_needs(base):
    """The base model rarely passes the rule, and the training split has enough rule pairs."""
    _, _, before = base
    assert before.pass_rate <= 0.35, f"the base model already passes {before.pass_rate:.0%}"
    assert len(rule_pairs("train", per_prompt=PAIRS_PER_PROMPT)) >= 40


def test_reward_model_effect_ranks_heldout_pairs(tmp_path, heldout):
    from rlaif.train.reward import RewardModel, RewardSettings, train_reward

    data = write_jsonl(rule_pairs("train"), tmp_path / "prefs.jsonl")
    out = tmp_path / "rm"
    train_reward(
        RewardSettings(data=str(data), out=out, epochs=2, held_out=0.0, max_length=192),
        show_progress=False,
    )
    rm = RewardModel.load(str(out))
    pairs, clusters = heldout
    prompts = [p for p, _, _ in pairs]
    chosen = rm.score(prompts, [c for _, c, _ in pairs])
    rejected = rm.score(prompts, [r for _, _, r in pairs])
    right = [float(c > r) for c, r in zip(chosen, rejected, strict=True)]
    ci = accuracy_interval(right, clusters)
    summary = (
        f"reward model ranks {sum(right):.0f}/{len(right)} held-out pairs right, "
        f"95% CI by prompt [{ci[0]:.2f}, {ci[1]:.2f}]"
    )
    print(summary)
    assert ci[0] > 0.5, summary
