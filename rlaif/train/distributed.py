"""Training with several processes (``accelerate launch``, ``torchrun``): who this process is,
and the rule that only the main process writes.

``accelerate launch --num_processes N -m rlaif train dpo|reward|grpo ...`` starts N copies of
the command. Each reads the whole data set and selects the same pairs (same file, same seed),
so every process builds the same data set and the same order; the trainer (TRL's, through
accelerate) hands each process its share of every global batch and averages the gradients, so
the processes hold the same weights after each step. Everything that leaves the run - the
checkpoint, ``train.json``, the curves, the printed summary and the drift check - is done by
the main process alone (rank 0); the others train, then wait for it at :func:`wait_for_everyone`
and write nothing. Temporary work directories are per process (``tempfile``), so they never
collide.

Who is who comes from ``torch.distributed`` once the trainer has started it, and before that
from the ``RANK`` and ``WORLD_SIZE`` variables every launcher (accelerate, torchrun) sets for
each process; a plain ``rlaif train`` is process 0 of 1. Callers ask through this module's
attributes (``distributed.is_main_process()``), so a test can make every rank a writer and
check that its detection of duplicate writes works.
"""

from __future__ import annotations

import os


def _started():
    """``torch.distributed`` when a process group is running, else None."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is in the train extra
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def rank() -> int:
    """This process's rank among all processes of the launch (0 without a launcher)."""
    dist = _started()
    return dist.get_rank() if dist else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train together (1 without a launcher)."""
    dist = _started()
    return dist.get_world_size() if dist else int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process writes the run's files and prints its summary (rank 0)."""
    return rank() == 0


def wait_for_everyone() -> None:
    """Block until every process gets here (nothing to wait for in a single process).

    Called after the main process has saved, so that no process reports the run finished
    before its checkpoint exists.
    """
    dist = _started()
    if dist is not None:
        dist.barrier()


def batch_record(per_device: int, grad_accum: int = 1) -> dict:
    """What ``train.json`` records of the batch: processes, per-process and global size.

    The global batch (what one optimizer step averages over) is ``per_device_batch_size x
    world_size x gradient_accumulation_steps``.
    """
    n = world_size()
    return {
        "world_size": n,
        "per_device_batch_size": per_device,
        "gradient_accumulation_steps": grad_accum,
        "global_batch_size": per_device * n * grad_accum,
    }
