"""Whether a run's labels carry any signal, said in one line with what to do about it.

A judge at chance still produces a label for every pair: a probability a hair from 0.5, or one
that follows whichever response is shown first. Such labels train nothing, and nothing else in
a run's output says so. Two signs, either enough:

- **position consistency under 50%**: over the pairs labelled in both orders (pairwise mode),
  fewer than half keep their winner when the order is swapped. Pointwise labels have no
  positions, so this sign is never read from them;
- **most pairs under the margin**: more than half the readable pairs have
  ``|p - 0.5| < max(--min-margin, 0.05)``.
"""

from __future__ import annotations

from collections.abc import Iterable

#: a pair whose label is closer than this to 0.5 counts as "under the margin" (at least)
NO_SIGNAL_MARGIN = 0.05
#: position consistency below this is a judge that follows positions, not content
MIN_POSITION_CONSISTENCY = 0.5
REMEDIES = (
    "a stronger judge (--judge openai:MODEL@URL or a larger GGUF), pointwise mode "
    "(--mode pointwise), or principles with concrete checks (--constitution FILE)"
)


def no_signal_warning(records: Iterable[dict], min_margin: float = 0.0) -> str | None:
    """One line saying the labels carry no signal and naming the remedies, or None if they do.

    ``records`` are a run's labelled pairs (``preferences.jsonl`` and ``low_margin.jsonl``
    records: ``p_chosen``, ``mode``, ``position_consistent``); ``min_margin`` is the run's
    ``--min-margin``. No records: None (there is nothing to judge).
    """
    margin = max(min_margin, NO_SIGNAL_MARGIN)
    labelled = [r for r in records if r.get("p_chosen") is not None]
    if not labelled:
        return None
    under = sum(1 for r in labelled if abs(r["p_chosen"] - 0.5) < margin)
    ordered = [
        r["position_consistent"]
        for r in labelled
        if r.get("mode", "pairwise") == "pairwise" and r.get("position_consistent") is not None
    ]
    consistency = sum(ordered) / len(ordered) if ordered else None
    signs = []
    if consistency is not None and consistency < MIN_POSITION_CONSISTENCY:
        signs.append(
            f"position consistency {100 * consistency:.0f}% over {len(ordered)} pairs "
            "labelled in both orders (under 50%: the judge follows positions)"
        )
    if under > len(labelled) / 2:
        signs.append(f"{under} of {len(labelled)} pairs within {margin:g} of a coin flip")
    if not signs:
        return None
    return f"labels carry no signal: {'; '.join(signs)}. Remedies: {REMEDIES}."
