"""Which device and precision rlaif's torch work (training, ``hf:`` generation) uses.

A CUDA GPU that torch can see is used, in bf16 where the GPU supports it; otherwise everything
runs on the CPU in float32, the default the tests run. ``RLAIF_DEVICE=cpu`` keeps a visible GPU
out of it; ``RLAIF_DEVICE=cuda`` insists on one. The GPU path has never been run on a GPU in
this project's CI: its tests run on CPUs, with the GPU checks faked.

Under ``accelerate launch`` the launcher's choices win, so rlaif does not fight them: ``--cpu``
(``ACCELERATE_USE_CPU``) means the CPU, and ``--mixed_precision`` (``ACCELERATE_MIXED_PRECISION``)
decides bf16 instead of the GPU's support for it.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from rlaif.errors import RlaifError

if TYPE_CHECKING:
    import torch

#: the environment variable that picks the device; unset: a GPU if torch sees one
ENV = "RLAIF_DEVICE"
DEVICES = ("cpu", "cuda")
#: what ``accelerate launch --cpu`` and ``--mixed_precision`` set in every process they start
LAUNCHER_CPU = "ACCELERATE_USE_CPU"
LAUNCHER_PRECISION = "ACCELERATE_MIXED_PRECISION"


def _launcher_cpu() -> bool:
    return os.environ.get(LAUNCHER_CPU, "").strip().lower() in ("1", "true", "yes")


def launcher_precision() -> str | None:
    """The mixed precision ``accelerate launch`` asked for (``no``, ``bf16``, ...), or None."""
    value = os.environ.get(LAUNCHER_PRECISION, "").strip().lower()
    return value or None


def device() -> str:
    """``"cuda"`` when torch sees a CUDA GPU and ``RLAIF_DEVICE`` is not ``cpu``; else ``"cpu"``."""
    import torch

    value = os.environ.get(ENV, "").strip().lower()
    if value and value not in DEVICES:
        raise RlaifError(
            f"{ENV} must be 'cpu' or 'cuda' (or unset to use a GPU when there is one), "
            f"not {os.environ[ENV]!r}"
        )
    if value == "cpu":
        return "cpu"
    if _launcher_cpu():
        if value == "cuda":
            raise RlaifError(
                f"{ENV}=cuda but the launcher asked for the CPU ({LAUNCHER_CPU}, from "
                f"'accelerate launch --cpu'); drop one of the two"
            )
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if value == "cuda":
        raise RlaifError(
            f"{ENV}=cuda but torch sees no CUDA GPU (torch {torch.__version__}); unset {ENV} "
            "to run on the CPU"
        )
    return "cpu"


def use_bf16() -> bool:
    """Whether torch work runs in bf16: on a CUDA device that supports it, never on the CPU.

    Under ``accelerate launch`` bf16 is what its ``--mixed_precision`` says, on the device
    :func:`device` gives.
    """
    import torch

    launched = launcher_precision()
    if launched is not None:
        return launched == "bf16"
    return device() == "cuda" and torch.cuda.is_bf16_supported()


def inference_dtype() -> torch.dtype:
    """The dtype to load a model in for inference: bf16 where :func:`use_bf16`, else float32."""
    import torch

    return torch.bfloat16 if use_bf16() else torch.float32


def autocast() -> contextlib.AbstractContextManager:
    """bf16 autocast where :func:`use_bf16` (weights stay float32); else nothing.

    On :func:`device`: the GPU, or the CPU when a launcher asked for bf16 there.
    """
    import torch

    if use_bf16():
        return torch.autocast(device(), dtype=torch.bfloat16)
    return contextlib.nullcontext()
