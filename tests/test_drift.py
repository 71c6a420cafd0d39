"""DPO's held-out yardstick scores each distinct answer once and gives the pair-by-pair result."""

from __future__ import annotations

from tiny_model import tiny_checkpoint

from rlaif.train import drift
from rlaif.train.models import load_model_and_tokenizer


def test_implicit_reward_accuracy_scores_each_answer_once_and_matches_pair_by_pair(
    tmp_path, monkeypatch
):
    policy, tokenizer = load_model_and_tokenizer(f"hf:{tiny_checkpoint(tmp_path / 'p', seed=1)}")
    reference, _ = load_model_and_tokenizer(f"hf:{tiny_checkpoint(tmp_path / 'r', seed=2)}")
    chat = [{"role": "user", "content": "Name a colour."}]
    answers = ["Blue.", "Red, mostly.", "Green is a colour of leaves."]
    # every answer against every other, as the effect tests' held-out pairs are built
    pairs = [("Say hi.", a, b) for a in answers for b in answers if a != b]
    pairs += [(chat, answers[0], answers[2])]

    expected = []
    for prompt, chosen, rejected in pairs:
        ratio = {
            answer: drift.answer_logprob(policy, tokenizer, prompt, answer)
            - drift.answer_logprob(reference, tokenizer, prompt, answer)
            for answer in (chosen, rejected)
        }
        n = {a: drift.answer_tokens(tokenizer, prompt, a) for a in (chosen, rejected)}
        expected.append(
            (
                ratio[chosen] - ratio[rejected],
                ratio[chosen] / n[chosen] - ratio[rejected] / n[rejected],
            )
        )

    scored = []
    real = drift.answer_logprob
    monkeypatch.setattr(
        drift,
        "answer_logprob",
        lambda model, tok, prompt, answer: (
            scored.append((id(model), str(prompt), answer)) or real(model, tok, prompt, answer)
        ),
    )
    cache: dict = {}
    result = drift.implicit_reward_accuracy(
        policy, reference, tokenizer, pairs, reference_logprobs=cache
    )
    # 3 answers to one prompt and 2 to the other, once for each model
    assert len(scored) == 2 * 5 and len(set(scored)) == len(scored)
    assert len(cache) == 5
    right = [1.0 if m > 1e-6 else 0.5 if abs(m) <= 1e-6 else 0.0 for m, _ in expected]
    right_per_token = [1.0 if m > 1e-6 else 0.5 if abs(m) <= 1e-6 else 0.0 for _, m in expected]
    assert result["right"] == right and result["right_per_token"] == right_per_token
    assert result["mean_margin"] == sum(m for m, _ in expected) / len(expected)
    # a second policy against the same reference reuses the reference's scores
    scored.clear()
    again = drift.implicit_reward_accuracy(
        policy, reference, tokenizer, pairs, reference_logprobs=cache
    )
    assert len(scored) == 5 and {s[0] for s in scored} == {id(policy)}
    assert again["right"] == result["right"]
