"""Models for training: load a checkpoint with its tokenizer, add LoRA adapters, save a policy.

A trainer saves its result with :func:`save_trained`: the policy, ``train.json`` and the
training curves, written by the main process alone under a launcher.

Where checkpoints come from (the embedded model converted once, or a local directory) is
:mod:`rlaif.backends.checkpoints`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rlaif.backends.checkpoints import load_tokenizer, resolve_checkpoint, train_imports
from rlaif.errors import ModelSpecError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def load_model_and_tokenizer(
    spec: str, *, lora: bool = False, dtype: torch.dtype | None = None
) -> tuple:
    """(causal LM, tokenizer) for a model string, ready for training; pad token set.

    With ``lora=True`` the model is wrapped in a peft LoRA adapter (r=16 on the attention and
    MLP projections); save it with :func:`save_policy`, which merges the adapter.
    """
    torch, transformers = train_imports()
    path = resolve_checkpoint(spec)
    tokenizer = load_tokenizer(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype or torch.float32
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if lora:
        model = add_lora(model)
    return model, tokenizer


def add_lora(model, r: int = 16, task_type: str = "CAUSAL_LM"):
    """Wrap a model in a LoRA adapter on its attention and MLP projections.

    For a reward model (``task_type="SEQ_CLS"``) the new score head is trained in full.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:  # pragma: no cover - the 'train' extra
        raise ModelSpecError("--lora needs peft: pip install -c constraints.txt peft") from e
    config = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        lora_dropout=0.0,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        task_type=task_type,
        modules_to_save=["score"] if task_type == "SEQ_CLS" else None,
    )
    return get_peft_model(model, config)


def check_out_dir(out: Path) -> Path:
    """``out`` if a checkpoint may be written there (absent or empty); ModelSpecError otherwise.

    Called before training, so a run is not wasted on a directory that would be refused.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelSpecError(
            f"--out {str(out)!r} already exists and is not empty; choose a new directory "
            "or delete it"
        )
    return out


def save_policy(model, tokenizer, out: Path, extra: dict[str, str | bytes] | None = None) -> Path:
    """Save a model (LoRA merged into the weights), its tokenizer and ``extra`` files to ``out``.

    Everything is written to a temporary directory next to ``out`` and renamed at the end, so
    ``out`` only ever holds a complete checkpoint (``extra`` maps file names to text, e.g. a
    ``metrics.json``, written as UTF-8, or to bytes, e.g. a PNG, written as they are).
    """
    out = check_out_dir(out)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, content in (extra or {}).items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                (tmp / name).write_text(content, encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def save_trained(model, tokenizer, out: Path, info: dict, *, ensure_ascii: bool = True) -> None:
    """Save a trained model with ``train.json`` (``info``) and its training-curve PNG.

    Under a launcher only the main process writes (:mod:`rlaif.train.distributed`) and every
    process waits for it, so none returns before the checkpoint is complete.
    ``ensure_ascii=False`` writes non-ASCII text in ``train.json`` as it is, not escaped.
    """
    from rlaif.train import distributed
    from rlaif.train.curves import training_curves_png
    from rlaif.train.provenance import TRAIN_JSON

    if distributed.is_main_process():
        extra = {
            TRAIN_JSON: json.dumps(info, indent=2, ensure_ascii=ensure_ascii) + "\n",
            "training_curves.png": training_curves_png(info),
        }
        save_policy(model, tokenizer, out, extra=extra)
    distributed.wait_for_everyone()
