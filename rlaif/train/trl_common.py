"""What rlaif's TRL trainers (DPO and GRPO) share: their common arguments and silenced noise."""

from __future__ import annotations

import contextlib
import os
import warnings


def common_args(seed: int) -> dict:
    """The TRL config arguments every rlaif trainer sets: quiet, nothing saved, one device.

    Logs every step (the progress bar and ``train.json`` read them), saves nothing itself
    (rlaif saves the checkpoint), prints no bar of its own and reports to no tracker.
    """
    from rlaif.backends.accelerator import device, use_bf16

    return dict(
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=seed,
        # bf16 mixed precision on a GPU that has it (float32 master weights), else float32;
        # no recomputation: a 135M model fits in memory as it is
        bf16=use_bf16(),
        use_cpu=device() == "cpu",
        gradient_checkpointing=False,
    )


@contextlib.contextmanager
def quiet_checkpointing_warning():
    """Warnings as they were, but transformers' FutureWarning about gradient_checkpointing.

    transformers 5 renames gradient_checkpointing; TRL's configs still set the old name.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*checkpointing")
        yield


@contextlib.contextmanager
def quiet_tqdm():
    """No tqdm bar for TRL's reference pass: rlaif draws its own progress."""
    old = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old
