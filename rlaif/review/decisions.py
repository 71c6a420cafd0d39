"""Human review decisions, kept in the run's SQLite store (table ``reviews``).

Every decision is one appended row, committed at once: who decided, when, what they chose, and
what they were shown (which response was on the left, whether the judge's probability was
visible). Nothing is overwritten; an item's latest row is its current decision, so a reviewer
who changes their mind leaves a trail.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlaif.store import STORE_FILE, Store

#: what a reviewer can answer
CHOICES = ("left", "right", "tie", "skip")
#: which canonical response (see ``ReviewItem``) is shown on the left
SIDES = ("first", "second")


@dataclass(frozen=True)
class Decision:
    """One reviewer's answer about one item."""

    item_id: str
    reviewer: str
    created: float
    #: "left", "right", "tie" or "skip", as the reviewer saw it
    choice: str
    #: the same in canonical terms: "first", "second", "tie", or None for a skip
    winner: str | None
    comment: str = ""
    #: what was on the screen: {"left": "first"|"second", "ai_visible": bool, ...}
    shown: dict = field(default_factory=dict)


def winner_of(choice: str, left: str) -> str | None:
    """The canonical winner of a choice made with ``left`` shown on the left."""
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {', '.join(CHOICES)}, not {choice!r}")
    if left not in SIDES:
        raise ValueError(f"left must be one of {', '.join(SIDES)}, not {left!r}")
    if choice == "skip":
        return None
    if choice == "tie":
        return "tie"
    right = "second" if left == "first" else "first"
    return left if choice == "left" else right


class DecisionLog:
    """Reads and appends review decisions in a run's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def open(cls, run_dir: str | Path) -> DecisionLog:
        """The decision log of a run directory (migrates its store if needed)."""
        return cls(Store(Path(run_dir) / STORE_FILE))

    def record(
        self,
        item_id: str,
        reviewer: str,
        choice: str,
        left: str,
        *,
        comment: str = "",
        shown: dict | None = None,
    ) -> Decision:
        """Append a decision (committed at once) and return it."""
        winner = winner_of(choice, left)
        shown = {"left": left, **(shown or {})}
        decision = Decision(item_id, reviewer, time.time(), choice, winner, comment, shown)
        with self.store.lock:
            self.store.db.execute(
                "INSERT INTO reviews (item_id, reviewer, created, choice, winner, comment, shown)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    item_id,
                    reviewer,
                    decision.created,
                    choice,
                    winner,
                    comment,
                    json.dumps(shown, ensure_ascii=False),
                ),
            )
        return decision

    def all(self) -> list[Decision]:
        """Every decision, oldest first."""
        with self.store.lock:
            rows = self.store.db.execute(
                "SELECT item_id, reviewer, created, choice, winner, comment, shown"
                " FROM reviews ORDER BY id"
            ).fetchall()
        return [Decision(*row[:6], shown=json.loads(row[6])) for row in rows]

    def latest(self) -> dict[str, Decision]:
        """The current decision of every reviewed item (its latest row)."""
        return {d.item_id: d for d in self.all()}

    def close(self) -> None:
        """Close the store."""
        self.store.close()
