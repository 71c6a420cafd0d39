"""What a win rate is measured on: prompts the models have not been trained on, against the
model the policy started from.

* **Prompts.** By default the held-out set shipped with rlaif (``rlaif/data/
  heldout_prompts.jsonl``, 24 prompts written apart from the 32 built-in ones that
  ``rlaif run`` labels by default). A checkpoint rlaif trained lists the prompts it (and the
  checkpoint it started from) was trained on in its ``train.json``
  (:mod:`rlaif.train.provenance`); default prompts among them are left out, and a prompts
  file the user names that overlaps them is refused, naming the overlap, unless
  ``allow_overlap``.
* **Baseline.** By default the model the policy was trained from, through the same backend:
  a policy ``hf:DIR`` trained from ``smollm2`` plays the embedded model's converted checkpoint
  (``hf:...``, the same weights in float32 through transformers), not the Q4_1 GGUF through
  llama.cpp, so only training differs between the two sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rlaif.errors import InputError
from rlaif.prompts import Prompt, load_prompts
from rlaif.train.data import prompt_key
from rlaif.train.provenance import (
    checkpoint_dir,
    read_train_json,
    starting_model,
    trained_prompt_keys,
)


def heldout_prompts_path() -> Path:
    """The held-out prompt set shipped with rlaif (disjoint from the built-in prompts)."""
    return Path(str(resources.files("rlaif.data").joinpath("heldout_prompts.jsonl")))


def default_baseline(policy: str) -> str:
    """The baseline to compare ``policy`` with when none is named: like with like.

    ``hf:DIR`` trained by rlaif: the model it started from (``smollm2`` as its converted
    checkpoint, through the same transformers backend; for ``gguf:DIR`` the same checkpoint
    through its GGUF export). Any other model string: ``smollm2``.
    InputError for an ``hf:DIR`` whose starting model cannot be told.
    """
    path = checkpoint_dir(policy)
    if path is None:
        return "smollm2"
    start = starting_model(policy)
    if start is None:
        raise InputError(
            f"--policy {policy}: no train.json in {path} says which model it was trained from, "
            "so there is no like-for-like baseline; name one with --baseline"
        )
    # the same backend as the policy: transformers for hf:, llama.cpp on an export for gguf:
    prefix = "gguf:" if policy.strip().startswith("gguf:") else "hf:"
    if start == "smollm2":
        from rlaif.backends.checkpoints import resolve_checkpoint

        return f"{prefix}{resolve_checkpoint('smollm2')}"
    return f"{prefix}{start.removeprefix('hf:')}"


@dataclass
class EvalPrompts:
    """The prompts of one evaluation and how they were chosen."""

    prompts: list[Prompt]
    path: Path
    #: True when no prompts file was named (the shipped held-out set)
    default: bool
    #: whether the training prompts of the models were known (an overlap could be checked)
    checked: bool
    #: ids of evaluation prompts that are training prompts (left out, or allowed)
    overlap: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The ``metrics.json`` entry."""
        return {
            "default_heldout_set": self.default,
            "training_prompts_known": self.checked,
            "overlap_ids": self.overlap,
        }


def _trained_keys(models: list[str]) -> tuple[set[str], list[str], bool]:
    """(union of their training-prompt keys, the models that have some, all known?)."""
    keys: set[str] = set()
    named, known = [], True
    for spec in dict.fromkeys(models):
        found = trained_prompt_keys(spec)
        if found is None:
            # trained by rlaif, but its training prompts are gone (no record, no data file)
            known = known and read_train_json(spec) is None
            continue
        keys |= found
        if found:
            named.append(spec)
    return keys, named, known


def eval_prompts(
    path: str | None, models: list[str], *, limit: int | None = None, allow_overlap: bool = False
) -> EvalPrompts:
    """The evaluation prompts; InputError when named prompts overlap the models' training data."""
    default = path is None
    source = heldout_prompts_path() if default else Path(path)
    prompts = load_prompts(source)
    trained, named, known = _trained_keys(models)

    def seen(p: Prompt) -> bool:
        return prompt_key(p.chat()) in trained

    if default:
        overlap = [p.id for p in prompts if seen(p)]
        prompts = [p for p in prompts if not seen(p)][:limit]
        if not prompts:
            raise InputError(
                f"{source}: every held-out prompt is in the training data of {', '.join(named)}; "
                "name unseen prompts with --prompts"
            )
        return EvalPrompts(prompts, source, True, known, overlap)
    prompts = prompts[:limit]
    overlap = [p.id for p in prompts if seen(p)]
    if overlap and not allow_overlap:
        shown = ", ".join(overlap[:5]) + (", ..." if len(overlap) > 5 else "")
        raise InputError(
            f"{source}: {len(overlap)} of {len(prompts)} prompts are in the training data of "
            f"{', '.join(named)} (ids {shown}); a win rate on them measures memory, not "
            "generalization. Use held-out prompts, or pass --allow-overlap"
        )
    return EvalPrompts(prompts, source, False, known, overlap)
