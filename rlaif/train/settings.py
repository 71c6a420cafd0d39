"""What every training run on preference pairs is told: the settings ``train reward`` and
``train dpo`` share, checked when they are made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class PairTrainingSettings:
    """The common part of :class:`~rlaif.train.reward.RewardSettings` and
    :class:`~rlaif.train.dpo.DPOSettings`; each sets its own defaults where they differ."""

    #: preferences JSONL (``rlaif run`` writes ``preferences.jsonl``)
    data: str
    #: checkpoint directory to write (usable as ``hf:DIR``)
    out: Path
    #: the model to start from: smollm2 or hf:DIR
    model: str = "smollm2"
    epochs: int = 1
    #: stop after this many optimizer steps (overrides ``epochs``)
    max_steps: int | None = None
    #: pairs per optimizer step
    batch_size: int = 4
    learning_rate: float = 2e-5
    #: tokens of prompt + response; longer sequences are cut
    max_length: int = 384
    lora: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for name in ("epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, not {self.max_steps}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, not {self.learning_rate}")
