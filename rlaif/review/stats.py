"""The live numbers of a review: how many reviewed, how often the AI judge agrees with the
reviewer (with a Wilson 95% interval), and how many dataset labels would flip.

The queue shows the least certain pairs first, so the reviewed pairs are not a random sample
of the dataset: the share of flips among them overstates the share in the whole dataset. The
estimate therefore works by margin band: an unreviewed dataset pair is expected to flip as often
as the reviewed pairs of its band (``|p - 0.5|``); a band nobody reviewed yet borrows the rate of
the nearest less certain band that was reviewed (an upper bound, as less certain labels flip
more), or of the nearest more certain one when there is none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rlaif.review.decisions import Decision
from rlaif.review.queue import ReviewItem
from rlaif.stats import wilson_interval

#: upper edges of the |p - 0.5| bands of the flip estimate
MARGIN_BANDS = (0.05, 0.1, 0.2, 0.3, 0.5)


def _band(margin: float) -> int:
    for i, edge in enumerate(MARGIN_BANDS):
        if margin < edge:
            return i
    return len(MARGIN_BANDS) - 1


@dataclass
class ReviewStats:
    """Where a review stands."""

    items: int
    reviewed: int
    skipped: int
    ties: int
    #: reviewed pairs with an AI label where the reviewer chose a side
    compared: int
    agree: int
    agreement: float | None
    agreement_ci: tuple[float, float] | None
    #: AI-labelled pairs of the exported dataset (preferences.jsonl)
    dataset: int
    flips_observed: int
    #: estimated share of dataset labels a full review would flip (None before any comparison)
    flip_share_estimate: float | None
    #: pairs outside the dataset (low margin, unreadable) a reviewer has labelled
    added_by_humans: int

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def _flipped(item: ReviewItem, decision: Decision) -> bool | None:
    """Whether the reviewer chose the other side (None: no AI label, or no side chosen)."""
    if item.ai_winner is None or decision.winner not in ("first", "second"):
        return None
    return decision.winner != item.ai_winner


def review_stats(items: list[ReviewItem], latest: dict[str, Decision]) -> ReviewStats:
    """The numbers of the live panel, from the items and their current decisions."""
    reviewed = [(i, latest[i.item_id]) for i in items if i.item_id in latest]
    compared = [(i, d) for i, d in reviewed if _flipped(i, d) is not None]
    agree = sum(not _flipped(i, d) for i, d in compared)
    dataset = [i for i in items if i.source == "preferences"]

    flips_band = [0] * len(MARGIN_BANDS)
    seen_band = [0] * len(MARGIN_BANDS)
    for i, d in compared:
        band = _band(i.margin)
        seen_band[band] += 1
        flips_band[band] += int(_flipped(i, d))
    flips_observed = sum(
        1 for i in dataset if i.item_id in latest and _flipped(i, latest[i.item_id])
    )

    estimate = None
    if compared and dataset:
        expected = 0.0
        for i in dataset:
            d = latest.get(i.item_id)
            if d is not None and d.winner is not None:
                expected += float(bool(_flipped(i, d)))
                continue
            expected += _band_rate(_band(i.margin), flips_band, seen_band)
        estimate = expected / len(dataset)

    return ReviewStats(
        items=len(items),
        reviewed=len(reviewed),
        skipped=sum(d.choice == "skip" for _, d in reviewed),
        ties=sum(d.choice == "tie" for _, d in reviewed),
        compared=len(compared),
        agree=agree,
        agreement=agree / len(compared) if compared else None,
        agreement_ci=wilson_interval(agree, len(compared)),
        dataset=len(dataset),
        flips_observed=flips_observed,
        flip_share_estimate=estimate,
        added_by_humans=sum(
            i.source != "preferences" and d.winner in ("first", "second") for i, d in reviewed
        ),
    )


def _band_rate(band: int, flips: list[int], seen: list[int]) -> float:
    """Flip rate of a band, or of the nearest reviewed band (less certain ones first)."""
    order = [band, *range(band - 1, -1, -1), *range(band + 1, len(seen))]
    for b in order:
        if seen[b]:
            return flips[b] / seen[b]
    return 0.0
