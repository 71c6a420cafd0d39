"""A rich progress bar for training loops and for transformers/TRL trainers, with the loss."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rlaif.progress import make_progress


def training_progress(show: bool = True):
    """A progress bar on stderr (plain lines when stderr is no terminal): description, bar,
    steps done / total, times, and ``info``."""
    return make_progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        disable=not show,
    )


def trainer_progress_callback(description: str, total: int, show: bool = True):
    """A transformers ``TrainerCallback`` drawing :func:`training_progress` with the last loss
    (and the last reward, where the trainer logs one: GRPO)."""
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        def __init__(self) -> None:
            self.progress = training_progress(show)
            self.task = None
            #: every logged loss, in order
            self.losses: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.progress.start()
            self.task = self.progress.add_task(description, total=total, info="")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and self.task is not None:
                self.losses.append(float(logs["loss"]))
                info = f"loss {logs['loss']:.4f}"
                if logs.get("reward") is not None:  # GRPO's mean reward of the step
                    info += f"  reward {logs['reward']:+.3f}"
                self.progress.update(self.task, info=info)

        def on_step_end(self, args, state, control, **kwargs):
            if self.task is not None:
                self.progress.update(self.task, completed=state.global_step)

        def on_train_end(self, args, state, control, **kwargs):
            self.progress.stop()

    return RichProgress()
