"""How far a trained policy moved from its start, and whether its answers are still answers.

The guards that catch reward hacking and collapse, measured on held-out prompts with greedy
answers of both models:

- the share of **empty or near-empty** answers (fewer than :data:`NEAR_EMPTY_WORDS` words);
- the share of answers **stuck in a loop** (:func:`rlaif.rules.is_looping`, the test that
  ``rule:no_loop`` applies too);
- the mean length in words, and the share cut at the token limit;
- the **KL divergence** of the policy from the starting model on the policy's own answers:
  at every answer token the full-vocabulary KL(policy || start) of the next-token
  distributions, averaged over tokens (nats per token) and summed per answer;
- the share of prompts whose answer changed at all.

:func:`implicit_reward_accuracy` is DPO's own yardstick on held-out pairs: how often
``log pi(chosen) - log ref(chosen) > log pi(rejected) - log ref(rejected)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rlaif.rules import is_looping

#: an answer with fewer words than this counts as near-empty
NEAR_EMPTY_WORDS = 3
#: a warning is printed when the share of empty or looping answers rises by more than this
DEGENERATE_RISE = 0.10
#: below this KL (nats per token) and with no answer changed, the policy did not move
STILL_KL = 1e-3


def is_near_empty(text: str) -> bool:
    """True for an answer of fewer than :data:`NEAR_EMPTY_WORDS` words."""
    return len(text.split()) < NEAR_EMPTY_WORDS


def answer_health(texts: Sequence[str], truncated: Sequence[bool] | None = None) -> dict:
    """Mean words and the shares of near-empty, looping (and truncated) answers."""
    n = len(texts)
    if not n:
        return {"n": 0}
    health = {
        "n": n,
        "mean_words": sum(len(t.split()) for t in texts) / n,
        "near_empty": sum(map(is_near_empty, texts)) / n,
        "looping": sum(map(is_looping, texts)) / n,
    }
    if truncated is not None:
        health["truncated"] = sum(map(bool, truncated)) / n
    return health


@dataclass
class Answer:
    """A generated answer, greedy or sampled: its text and whether it was cut at the token limit."""

    text: str
    truncated: bool


def _messages(prompt: str | list[dict]) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def _chat_ids(tokenizer, messages: list[dict], *, generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(
        messages, add_generation_prompt=generation_prompt, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _prompt_ids(tokenizer, prompt: str | list[dict]) -> list[int]:
    return _chat_ids(tokenizer, _messages(prompt), generation_prompt=True)


def _generate(
    model, tokenizer, prompts: Sequence, max_new_tokens: int, batch_size: int, **sampling
) -> list[Answer]:
    """Answers of a transformers causal LM to chat prompts, left-padded batches of prompts.

    ``sampling`` holds ``model.generate``'s decoding arguments; with ``num_return_sequences``
    n, the answers come prompt by prompt, n each.
    """
    import torch

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    answers: list[Answer] = []
    for start in range(0, len(prompts), batch_size):
        rows = [_prompt_ids(tokenizer, p) for p in prompts[start : start + batch_size]]
        width = max(map(len, rows))
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=model.device)
        mask = torch.tensor(
            [[0] * (width - len(r)) + [1] * len(r) for r in rows], device=model.device
        )
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                top_k=None,
                top_p=None,
                eos_token_id=eos,
                pad_token_id=pad,
                **sampling,
            )
        for row in out[:, width:].tolist():
            stop = row.index(eos) if eos in row else None
            text = tokenizer.decode(row[:stop], skip_special_tokens=True).strip()
            answers.append(Answer(text=text, truncated=stop is None))
    return answers


def greedy_answers(
    model, tokenizer, prompts: Sequence, *, max_new_tokens: int = 64, batch_size: int = 8
) -> list[Answer]:
    """Greedy answers of a transformers causal LM to chat prompts, generated in batches.

    Prompts are rendered with the tokenizer's chat template and left-padded, so a batch of
    ``batch_size`` prompts costs about as much time per token as one prompt on a CPU.
    """
    return _generate(
        model, tokenizer, prompts, max_new_tokens, batch_size, do_sample=False, temperature=None
    )


def sampled_answers(
    model,
    tokenizer,
    prompts: Sequence,
    n: int,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 4,
) -> list[Answer]:
    """``n`` sampled answers per prompt (prompt by prompt), reproducible from ``seed``.

    The seed is set once, before the first batch: the same call on the same model gives the
    same answers.
    """
    import torch

    torch.manual_seed(seed)
    return _generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens,
        batch_size,
        do_sample=True,
        temperature=temperature,
        num_return_sequences=n,
    )


def _pair_ids(tokenizer, prompt, answer: str) -> tuple[list[int], int]:
    """Token ids of prompt + answer in the chat template, and where the answer starts."""
    head = _prompt_ids(tokenizer, prompt)
    turn = {"role": "assistant", "content": answer}
    full = _chat_ids(tokenizer, [*_messages(prompt), turn], generation_prompt=False)
    if full[: len(head)] != head:  # a template that renders the prompt differently
        full = (
            head
            + tokenizer(answer, add_special_tokens=False)["input_ids"]
            + [tokenizer.eos_token_id]
        )
    return full, len(head)


def _answer_logits(model, ids: list[int], start: int):
    """Logits predicting each answer token (positions start-1 .. end-2), float64 on the CPU."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0]
    # on the CPU: the policy and the reference it is compared with may sit on different devices
    return logits[start - 1 : len(ids) - 1].cpu().double()


def answer_logprob(model, tokenizer, prompt, answer: str) -> float:
    """log p(answer | prompt) under the model, the chat template applied (end token included)."""
    import torch

    ids, start = _pair_ids(tokenizer, prompt, answer)
    logps = torch.log_softmax(_answer_logits(model, ids, start), dim=-1)
    targets = torch.tensor(ids[start:])
    return float(logps.gather(1, targets[:, None]).sum())


def kl_to_reference(
    policy, reference, tokenizer, prompts: Sequence, answers: Sequence[str]
) -> dict:
    """KL(policy || reference) of the next-token distributions along the policy's answers.

    Exact over the vocabulary at each answer token; ``per_token`` is the mean over all answer
    tokens (nats), ``per_answer`` the mean over answers of each answer's sum.
    """
    import torch

    total, tokens, sums = 0.0, 0, []
    for prompt, answer in zip(prompts, answers, strict=True):
        ids, start = _pair_ids(tokenizer, prompt, answer)
        lp = torch.log_softmax(_answer_logits(policy, ids, start), dim=-1)
        lq = torch.log_softmax(_answer_logits(reference, ids, start), dim=-1)
        per_position = (lp.exp() * (lp - lq)).sum(dim=-1)
        sums.append(float(per_position.sum()))
        total += sums[-1]
        tokens += per_position.numel()
    return {
        "per_token": total / tokens if tokens else 0.0,
        "per_answer": sum(sums) / len(sums) if sums else 0.0,
        "tokens": tokens,
    }


def answer_tokens(tokenizer, prompt, answer: str) -> int:
    """How many tokens :func:`answer_logprob` scores for ``answer`` (its end token included)."""
    ids, start = _pair_ids(tokenizer, prompt, answer)
    return len(ids) - start


def implicit_reward_accuracy(
    policy,
    reference,
    tokenizer,
    pairs: Sequence[tuple],
    *,
    reference_logprobs: dict | None = None,
) -> dict:
    """How often DPO's implicit reward prefers the chosen answer of held-out pairs.

    ``pairs`` holds ``(prompt, chosen, rejected)``. The margin of a pair is
    ``(log pi(c) - log ref(c)) - (log pi(r) - log ref(r))``; a margin within 1e-6 of zero (an
    untrained policy) counts as half right. ``right`` holds each pair's credit.

    ``right_per_token`` compares the two log-ratios per answer token instead. Where chosen and
    rejected answers differ in length (a short answer against one cut at the token limit), a
    policy that moved every token's log-probability alike changes the longer answer's summed
    log-ratio more, which the summed margin reads as a preference for one side; the per-token
    margin does not. ``accuracy_per_token`` is its mean.

    Each distinct (prompt, answer) is scored once per model: held-out pairs are often every
    passing answer of a prompt against every failing one, so an answer sits in several pairs.
    ``reference_logprobs``, a dict kept by the caller, carries the reference's scores from one
    call to the next (several policies measured against one reference); pass it only with that
    same reference model.
    """
    ref_cache = {} if reference_logprobs is None else reference_logprobs
    policy_cache: dict = {}

    def logprob(model, cache: dict, prompt, answer: str) -> tuple[float, int]:
        key = (prompt if isinstance(prompt, str) else json.dumps(prompt), answer)
        if key not in cache:
            cache[key] = (
                answer_logprob(model, tokenizer, prompt, answer),
                answer_tokens(tokenizer, prompt, answer),
            )
        return cache[key]

    raw, per_token = [], []
    for prompt, chosen, rejected in pairs:
        (pol_c, n_c), (pol_r, n_r) = (
            logprob(policy, policy_cache, prompt, chosen),
            logprob(policy, policy_cache, prompt, rejected),
        )
        ratio_c = pol_c - logprob(reference, ref_cache, prompt, chosen)[0]
        ratio_r = pol_r - logprob(reference, ref_cache, prompt, rejected)[0]
        raw.append(ratio_c - ratio_r)
        per_token.append(ratio_c / n_c - ratio_r / n_r)

    def credit(margins: list[float]) -> list[float]:
        return [1.0 if m > 1e-6 else 0.5 if abs(m) <= 1e-6 else 0.0 for m in margins]

    right, right_per_token = credit(raw), credit(per_token)
    n = len(raw)
    return {
        "n": n,
        "accuracy": sum(right) / n if n else None,
        "mean_margin": sum(raw) / n if n else None,
        "right": right,
        "accuracy_per_token": sum(right_per_token) / n if n else None,
        "right_per_token": right_per_token,
    }


def compare_policies(
    base, policy, tokenizer, prompts: Sequence, *, max_new_tokens: int = 64, samples: int = 3
) -> dict:
    """Greedy answers of both models on ``prompts``: health of each, KL, changed share, samples."""
    base_answers = greedy_answers(base, tokenizer, prompts, max_new_tokens=max_new_tokens)
    policy_answers = greedy_answers(policy, tokenizer, prompts, max_new_tokens=max_new_tokens)
    texts = [a.text for a in policy_answers]
    changed = sum(a.text != b.text for a, b in zip(policy_answers, base_answers, strict=True))
    return {
        "prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "base": answer_health([a.text for a in base_answers], [a.truncated for a in base_answers]),
        "policy": answer_health(texts, [a.truncated for a in policy_answers]),
        "changed": changed / len(prompts) if prompts else 0.0,
        "kl": kl_to_reference(policy, base, tokenizer, prompts, texts),
        "samples": [
            {"prompt": _text(p), "base": b.text, "policy": a.text}
            for p, b, a in list(zip(prompts, base_answers, policy_answers, strict=True))[:samples]
        ],
    }


def _text(prompt) -> str:
    return prompt if isinstance(prompt, str) else str(prompt[-1].get("content", ""))


def drift_warning(report: dict) -> str | None:
    """One line when the policy did not move or degenerated; None when it looks healthy."""
    base, policy = report["base"], report["policy"]
    if report["changed"] == 0 and report["kl"]["per_token"] < STILL_KL:
        return (
            f"the policy did not move: all {report['prompts']} held-out answers are the "
            f"starting model's (KL {report['kl']['per_token']:.2g} nats/token); try a higher "
            "learning rate, more epochs, or labels with a larger margin"
        )
    for key, label in (("near_empty", "empty or near-empty"), ("looping", "looping")):
        if policy[key] - base[key] > DEGENERATE_RISE:
            return (
                f"the policy degenerated: {policy[key]:.0%} of held-out answers are {label} "
                f"(starting model {base[key]:.0%}); lower the learning rate or raise beta"
            )
    return None


#: the file a drift check writes into the checkpoint directory
DRIFT_FILE = "drift.json"


def drift_check(
    start: str, checkpoint: Path, *, prompts: int = 6, max_new_tokens: int = 64
) -> dict:
    """Compare a freshly trained checkpoint with the model it started from; write drift.json.

    Uses the first ``prompts`` of rlaif's held-out prompt set that the checkpoint was not
    trained on; the result (see :func:`compare_policies`) gains ``warning`` (a line, or None).
    """
    from rlaif.train.heldout import eval_prompts
    from rlaif.train.models import load_model_and_tokenizer

    spec = f"hf:{checkpoint}"
    chosen = eval_prompts(None, [spec], limit=prompts).prompts
    base, tokenizer = load_model_and_tokenizer(start)
    policy, _ = load_model_and_tokenizer(spec)
    for model in (base, policy):
        model.eval()
    report = compare_policies(
        base, policy, tokenizer, [p.chat() for p in chosen], max_new_tokens=max_new_tokens
    )
    report["start"] = start
    report["warning"] = drift_warning(report)
    path = Path(checkpoint) / DRIFT_FILE
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report
