"""What a checkpoint was trained from: its starting model and the prompts it has seen.

Every ``rlaif train`` command writes ``train.json`` into its checkpoint with ``settings.model``
(the starting model) and ``train_prompts``: the :func:`~rlaif.train.data.prompt_key` of every
prompt it trained on, together with those its starting checkpoint had seen (so a policy of
round 3 of ``rlaif loop`` carries the prompts of rounds 1-3). ``rlaif eval winrate`` reads
them to evaluate on prompts the policy has not seen and to compare it with the model it
started from. Nothing here needs torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rlaif.train.data import prompt_key

TRAIN_JSON = "train.json"


def checkpoint_dir(spec: str) -> Path | None:
    """The checkpoint directory of an ``hf:DIR`` or ``gguf:DIR`` model string; None otherwise."""
    spec = (spec or "").strip()
    for prefix in ("hf:", "gguf:"):
        if spec.startswith(prefix):
            return Path(spec[len(prefix) :]).expanduser()
    return None


def read_train_json(spec: str) -> dict | None:
    """The ``train.json`` of an ``hf:DIR`` checkpoint rlaif trained; None when there is none."""
    path = checkpoint_dir(spec)
    if path is None or not (path / TRAIN_JSON).is_file():
        return None
    try:
        info = json.loads((path / TRAIN_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None


def starting_model(spec: str) -> str | None:
    """The model string an rlaif-trained checkpoint started from, or None when unknown."""
    info = read_train_json(spec)
    model = ((info or {}).get("settings") or {}).get("model")
    return model if isinstance(model, str) and model else None


def _keys_from_data(info: dict) -> set[str] | None:
    """Prompt keys read back from the training data file (checkpoints older than the record)."""
    from rlaif.errors import InputError

    data = (info.get("settings") or {}).get("data")
    if not isinstance(data, str) or not Path(data).is_file():
        return None
    try:
        if info.get("method") == "grpo":
            from rlaif.prompts import load_prompts

            return {prompt_key(p.chat()) for p in load_prompts(data)}
        from rlaif.train.data import read_preferences

        return {p.group for p in read_preferences(data)}
    except InputError:
        return None


def trained_prompt_keys(spec: str, _depth: int = 0) -> set[str] | None:
    """Keys of every prompt an ``hf:DIR`` checkpoint (or its ancestors) was trained on.

    None when the model is not a checkpoint rlaif trained, or its training prompts cannot be
    told (no ``train_prompts`` in ``train.json`` and the data file gone).
    """
    info = read_train_json(spec)
    if info is None:
        return None
    keys = info.get("train_prompts")
    if isinstance(keys, list):
        return set(keys)
    found = _keys_from_data(info)
    parent = starting_model(spec)
    if found is not None and parent and _depth < 32:
        found |= trained_prompt_keys(parent, _depth + 1) or set()
    return found


def training_record(prompts: list, start_model: str) -> list[str]:
    """``train_prompts`` for a new ``train.json``: these prompts' keys and the start model's."""
    keys = {prompt_key(p) for p in prompts}
    keys |= trained_prompt_keys(start_model) or set()
    return sorted(keys)


def settings_record(settings: object) -> dict:
    """A trainer's settings (a dataclass) as ``train.json`` records them: paths as strings."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()}
