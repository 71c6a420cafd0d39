"""The report of a training checkpoint (``train.json``) and of an ``rlaif loop`` directory.

Only the JSON files are read (``train.json``, ``drift.json``, ``loop.json``), never the
weights, so the report of a checkpoint is quick and works on a copy without its model files.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlaif.errors import InputError
from rlaif.evaluate.htmlparts import esc, figure, meta, pct, table

TRAIN_FILE = "train.json"
DRIFT_FILE = "drift.json"

#: the record of a loop's rounds in its output folder
LOOP_FILE = "loop.json"


def _read(path: Path) -> dict:
    """A JSON object from ``path``; InputError if it cannot be read or is not an object."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e})") from e
    if not isinstance(obj, dict):
        raise InputError(f"{path}: not a JSON object")
    return obj


def _num(x: object, digits: int = 4) -> str:
    """A number with ``digits`` significant digits ("-" for None), anything else as text."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _seconds(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f} s" if x < 120 else f"{x:.0f} s ({x / 60:.1f} min)"


def _losses(info: dict) -> list[float]:
    """The per-step losses of any trainer's ``train.json`` (GRPO keeps them in ``steps``)."""
    steps = info.get("steps")
    if isinstance(steps, list):
        return [s.get("loss") for s in steps if s.get("loss") is not None]
    return [x for x in info.get("losses") or [] if x is not None]


def _pairs_text(info: dict) -> str:
    pairs = info.get("pairs")
    if not isinstance(pairs, dict):
        return "-"
    if "kept" in pairs:  # DPO
        text = f"{pairs['kept']} kept of {pairs.get('read', '?')} read"
        dropped = pairs.get("dropped_low_margin")
        if dropped:
            text += f" ({dropped} below --min-margin)"
        if pairs.get("ties"):
            text += f", {pairs['ties']} ties kept"
        return text
    if "train" in pairs:  # reward model
        return (
            f"{pairs['train']} trained on, {pairs.get('held_out', 0)} held out, of "
            f"{pairs.get('total', '?')}"
        )
    return ", ".join(f"{k} {v}" for k, v in pairs.items())


def summary_items(info: dict) -> list[tuple[str, object]]:
    """The summary numbers of a ``train.json``: method, data, pairs kept, steps, first and
    final loss, time and tokens (rows that do not apply to the trainer are left out)."""
    settings = info.get("settings") or {}
    losses = _losses(info)
    steps = info.get("steps")
    items: list[tuple[str, object]] = [
        ("method", info.get("method", "?")),
        ("started from", settings.get("model", "?")),
    ]
    if settings.get("data"):
        items.append(("data", settings["data"]))
    if "pairs" in info:
        items.append(("pairs", _pairs_text(info)))
    if "prompts" in info:
        items.append(("prompts", _num(info["prompts"])))
    items += [
        ("steps", _num(len(steps) if isinstance(steps, list) else steps)),
        ("first loss", _num(losses[0]) if losses else "-"),
        ("final loss", _num(info.get("final_loss", losses[-1] if losses else None))),
    ]
    if info.get("method") == "grpo":
        items += [
            ("first mean reward", _num(info.get("first_reward"))),
            ("last mean reward", _num(info.get("last_reward"))),
        ]
    if "train_seconds" in info or "time_s" in info:
        items.append(("time", _seconds(info.get("train_seconds", info.get("time_s")))))
    if info.get("train_loop_seconds") is not None:
        items.append(("of which the training loop", _seconds(info["train_loop_seconds"])))
    if info.get("train_tokens") is not None:
        items.append(("tokens read in training", _num(info["train_tokens"])))
    if info.get("format"):
        items.append(("record form", info["format"]))
    return items


def _cell(value: object) -> str:
    """A value of a JSON object as one table cell (a nested object as ``key value; ...``)."""
    if isinstance(value, dict):
        return "; ".join(f"{k} {_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return "[" + ", ".join(_num(v) for v in value) + "]"
        return f"{len(value)} entries"
    return _num(value)


def drift_section(drift: dict) -> str:
    """``drift.json`` as tables: its top-level keys and values (nested objects in one cell),
    then each list of records (such as sample answers) as a table of its own."""
    rows = [[str(k), _cell(v)] for k, v in drift.items()]
    parts = ["<h2>Drift from the starting model</h2>", table(["", "value"], rows, text_cols=(1,))]
    for key, value in drift.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            header = list(dict.fromkeys(k for v in value for k in v))
            cells = [[_cell(v.get(h)) for h in header] for v in value]
            parts.append(f"<h3>{esc(key)}</h3>")
            parts.append(table(header, cells, text_cols=tuple(range(len(header)))))
    return "\n".join(parts)


def _held_out(info: dict) -> str:
    """The reward model's held-out metrics before and after training, side by side."""
    before, after = info.get("held_out_before") or {}, info.get("held_out") or {}
    if not after:
        return ""
    rows = []
    for key, label, percent in (
        ("n", "pairs", False),
        ("accuracy", "pairwise accuracy", True),
        ("brier", "Brier", False),
        ("brier_constant_half", "Brier of always 0.5", False),
        ("ece", "ECE", False),
        ("cross_entropy", "cross-entropy against p_chosen", False),
    ):
        values = []
        for d in (before, after):
            v = d.get(key)
            text = pct(v) if percent else _num(v)
            ci = d.get(f"{key}_ci")
            if percent and v is not None and ci:
                text += f" [{pct(ci[0])}, {pct(ci[1])}]"
            values.append(text)
        rows.append([label, *values])
    return "<h2>Held-out pairs</h2>\n" + table(["", "before training", "after training"], rows)


def train_body(d: Path) -> str:
    """The body of the report of a checkpoint directory holding ``train.json``."""
    from rlaif.backends.checkpoints import is_checkpoint
    from rlaif.train.curves import curve_panels, training_curves_png

    info = _read(d / TRAIN_FILE)
    items = summary_items(info)
    if is_checkpoint(d):
        items.append(("use it as", f"hf:{d}"))
    panels = [p.title for p in curve_panels(info)]
    parts = [meta(items), "<h2>Training curves</h2>"]
    parts.append(
        figure(
            training_curves_png(info),
            "Per step: " + ("; ".join(panels) if panels else "nothing was logged") + ".",
        )
    )
    last = info.get("last_step") or {}
    if last:
        parts.append("<h2>TRL's metrics at the last step</h2>")
        parts.append(table(["metric", "value"], [[k, _num(v)] for k, v in last.items()]))
    parts.append(_held_out(info))
    if (d / DRIFT_FILE).exists():
        parts.append(drift_section(_read(d / DRIFT_FILE)))
    settings = info.get("settings") or {}
    if settings:
        parts.append("<h2>Settings</h2>")
        parts.append(table(["setting", "value"], [[k, _cell(v)] for k, v in settings.items()]))
    return "\n".join(p for p in parts if p)


def _ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"{pct(ci[0])} - {pct(ci[1])}"


def loop_body(d: Path, loop_file: str = "loop.json") -> str:
    """The body of the report of an ``rlaif loop`` directory: the win rate per round (figure
    and table), the loop's settings, and each round's DPO training curves."""
    from rlaif.train.curves import rounds_png, training_curves_png

    data = _read(d / loop_file)
    rounds = data.get("rounds") or []
    identity = data.get("identity") or {}
    parts = [
        meta([("rounds finished", len(rounds)), *((k, _cell(v)) for k, v in identity.items())]),
        "<h2>Win rate per round</h2>",
        figure(
            rounds_png(rounds),
            "Each round's policy against the one before it on the held-out prompts, judged by "
            f"{identity.get('eval_judge') or identity.get('judge', 'the loop judge')} in both "
            "orders; ties count half. Bars: 95% bootstrap interval over prompts.",
        ),
    ]
    rows = [
        [
            str(r.get("round", i + 1)),
            _num(r.get("pairs")),
            _num(r.get("dpo_steps")),
            _num(r.get("dpo_final_loss")),
            pct(r.get("win_rate")),
            _ci(r.get("win_rate_ci")),
            f"{r.get('wins', '-')} / {r.get('losses', '-')} / {r.get('ties', '-')}",
            _num(r.get("unreadable")),
            _num(r.get("n")),
            pct(r.get("soft_win_rate")),
            str(r.get("policy", "-")),
        ]
        for i, r in enumerate(rounds)
    ]
    header = [
        "round",
        "pairs",
        "DPO steps",
        "DPO final loss",
        "win rate",
        "95% CI",
        "W / L / T",
        "unreadable",
        "n",
        "soft win rate",
        "policy",
    ]
    parts.append(table(header, rows, text_cols=(10,)))
    curves = []
    for i, r in enumerate(rounds):
        train = d / f"round-{r.get('round', i + 1)}" / "policy" / TRAIN_FILE
        if train.is_file():
            caption = f"round {r.get('round', i + 1)}: DPO per step ({train.parent})"
            curves.append(figure(training_curves_png(_read(train)), caption))
    if curves:
        parts.append("<h2>DPO training curves per round</h2>")
        parts.append("\n".join(curves))
    return "\n".join(parts)
