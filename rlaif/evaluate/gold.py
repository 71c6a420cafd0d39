"""Human-labelled preference pairs ("gold" data) in the common formats, detected automatically.

==========  ========================================================================================
``trl``     ``{prompt, chosen, rejected}`` (TRL's preference format; text or chat messages)
``llmbar``  ``{input, output_1, output_2, label}``; label 1 or 2 names the better output
``pandalm`` ``{instruction, input, response1, response2, annotator1..3}``; each annotator says 1, 2
            or 0 for a tie; the human label is the strict majority (a tie when there is none)
``hh-rlhf`` ``{chosen, rejected}`` whole transcripts ``\\n\\nHuman: ...\\n\\nAssistant: ...``, split
            at the last Assistant turn into the shared conversation and the two final replies
==========  ========================================================================================

Files may be a JSON list, JSONL, or either gzipped (``.gz``). In formats whose better response
always comes first (``trl``, ``hh-rlhf``), which of the two is shown as A is decided by a seeded
coin per pair, so a judge that always picks the first slot cannot score above chance.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from rlaif.errors import InputError

Label = Literal["a", "b", "tie"]
FORMATS = ("trl", "llmbar", "pandalm", "hh-rlhf")
ASSISTANT_TURN = "\n\nAssistant:"


@dataclass(frozen=True)
class GoldPair:
    """One prompt, two responses and what the humans said about them."""

    #: position of the record in its file (0-based), to find it again
    index: int
    prompt: str
    a: str
    b: str
    #: the human label: ``a``, ``b`` or ``tie`` (majority of the annotators where several)
    human: Label
    #: each annotator's label, where the file has several annotators
    annotators: tuple[Label, ...] = ()
    #: a category the data set gives (PandaLM: the application), or None
    category: str | None = None
    #: True when the file's first response is shown as B (seeded coin for chosen-first formats)
    swapped: bool = False


@dataclass
class GoldSet:
    """The pairs read from one gold file, and what was left out and why."""

    path: str
    format: str
    pairs: list[GoldPair]
    #: reason -> number of records not used (never silently: the caller reports these)
    skipped: dict[str, int] = field(default_factory=dict)


def load_gold(
    path: str | Path, format: str | None = None, *, limit: int | None = None, seed: int = 0
) -> GoldSet:
    """Read a gold file; ``format`` is detected from the first record when None or ``auto``."""
    path = Path(path)
    records = list(_records(path))
    if not records:
        raise InputError(f"{path}: no records")
    if format in (None, "auto"):
        format = detect_format(records[0], path)
    if format not in FORMATS:
        raise InputError(f"{path}: unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    reader = _READERS[format]
    gold = GoldSet(str(path), format, [])
    for i, rec in enumerate(records):
        if limit is not None and len(gold.pairs) >= limit:
            break
        if not isinstance(rec, dict):
            raise InputError(f"{path}: record {i + 1} is not a JSON object")
        pair = reader(path, i, rec, seed)
        if isinstance(pair, str):
            gold.skipped[pair] = gold.skipped.get(pair, 0) + 1
        else:
            gold.pairs.append(pair)
    if not gold.pairs:
        raise InputError(f"{path}: no usable pairs ({gold.skipped or 'empty'})")
    return gold


def detect_format(record: object, path: Path | str = "<data>") -> str:
    """The gold format of a record, from its keys; InputError naming the keys otherwise."""
    keys = set(record) if isinstance(record, dict) else set()
    if {"input", "output_1", "output_2", "label"} <= keys:
        return "llmbar"
    if {"response1", "response2", "annotator1"} <= keys:
        return "pandalm"
    if {"prompt", "chosen", "rejected"} <= keys:
        return "trl"
    if {"chosen", "rejected"} <= keys and isinstance(record["chosen"], str):
        if ASSISTANT_TURN in record["chosen"]:
            return "hh-rlhf"
    raise InputError(
        f"{path}: cannot tell the format from the first record's keys ({', '.join(sorted(keys))}); "
        f"expected one of: trl {{prompt, chosen, rejected}}, llmbar {{input, output_1, output_2, "
        f"label}}, pandalm {{instruction, response1, response2, annotator1..3}}, hh-rlhf "
        f"{{chosen, rejected}} transcripts; or name it with --format"
    )


# -- reading files ------------------------------------------------------------------------------
def _records(path: Path) -> Iterator[object]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the gold file ({e.strerror})") from e
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except OSError as e:
            raise InputError(f"{path}: not a valid gzip file ({e})") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e})") from e
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from e
        yield from data
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from e


def _field(path: Path, i: int, rec: dict, name: str, types: type | tuple = str):
    value = rec.get(name)
    if value is None or not isinstance(value, types):
        raise InputError(f"{path}: record {i + 1}: field {name!r} is missing or of the wrong type")
    return value


def _response(path: Path, i: int, rec: dict, name: str) -> str:
    """A response as text; a bare JSON scalar is its text (PandaLM has ``true`` for "True")."""
    value = _field(path, i, rec, name, (str, bool, int, float))
    return value if isinstance(value, str) else json.dumps(value).capitalize()


def coin(seed: int, index: int) -> bool:
    """A seeded, reproducible coin per record: True means show the file's first response as B."""
    digest = hashlib.sha256(f"rlaif-gold:{seed}:{index}".encode()).digest()
    return bool(digest[0] & 1)


def _ordered(index: int, prompt: str, better: str, worse: str, seed: int) -> GoldPair:
    swapped = coin(seed, index)
    a, b = (worse, better) if swapped else (better, worse)
    return GoldPair(index, prompt, a, b, "b" if swapped else "a", swapped=swapped)


# -- the formats --------------------------------------------------------------------------------
def _text(value: str | list) -> str:
    """Plain text from a string or a list of chat messages (a transcript for several)."""
    if isinstance(value, str):
        return value
    if len(value) == 1 and isinstance(value[0], dict):
        return str(value[0].get("content", ""))
    return "\n\n".join(
        f"{str(m.get('role', '')).capitalize()}: {m.get('content', '')}"
        for m in value
        if isinstance(m, dict)
    )


def _read_trl(path: Path, i: int, rec: dict, seed: int) -> GoldPair:
    prompt = _text(_field(path, i, rec, "prompt", (str, list)))
    chosen = _text(_field(path, i, rec, "chosen", (str, list)))
    rejected = _text(_field(path, i, rec, "rejected", (str, list)))
    pair = _ordered(i, prompt, chosen, rejected, seed)
    category = rec.get("category")
    if category is not None:
        pair = replace(pair, category=str(category))
    return pair


def _read_llmbar(path: Path, i: int, rec: dict, seed: int) -> GoldPair:
    label = rec.get("label")
    if label not in (1, 2):
        raise InputError(f"{path}: record {i + 1}: 'label' must be 1 or 2, not {label!r}")
    return GoldPair(
        i,
        _field(path, i, rec, "input"),
        _response(path, i, rec, "output_1"),
        _response(path, i, rec, "output_2"),
        "a" if label == 1 else "b",
    )


_ANNOTATOR_LABELS: dict[int, Label] = {0: "tie", 1: "a", 2: "b"}


def majority(labels: tuple[Label, ...]) -> Label:
    """The label more than half of the annotators gave; ``tie`` when none has a majority."""
    for label in ("a", "b", "tie"):
        if 2 * labels.count(label) > len(labels):
            return label
    return "tie"


def _read_pandalm(path: Path, i: int, rec: dict, seed: int) -> GoldPair:
    names = sorted(
        (k for k in rec if k.startswith("annotator") and k[len("annotator") :].isdigit()),
        key=lambda k: int(k[len("annotator") :]),
    )
    annotators = []
    for name in names:
        value = rec[name]
        if value not in _ANNOTATOR_LABELS:
            raise InputError(
                f"{path}: record {i + 1}: {name!r} must be 0 (tie), 1 or 2, not {value!r}"
            )
        annotators.append(_ANNOTATOR_LABELS[value])
    instruction = _field(path, i, rec, "instruction")
    extra = rec.get("input") or ""
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    category = rec.get("motivation_app")
    return GoldPair(
        i,
        prompt,
        _response(path, i, rec, "response1"),
        _response(path, i, rec, "response2"),
        majority(tuple(annotators)),
        annotators=tuple(annotators),
        category=None if category is None else str(category),
    )


def split_transcript(text: str) -> tuple[str, str]:
    """(conversation up to the last Assistant turn, that turn's reply), both stripped."""
    cut = text.rfind(ASSISTANT_TURN)
    if cut < 0:
        raise ValueError("no Assistant turn")
    return text[:cut].strip(), text[cut + len(ASSISTANT_TURN) :].strip()


def _read_hh(path: Path, i: int, rec: dict, seed: int) -> GoldPair | str:
    chosen = _field(path, i, rec, "chosen")
    rejected = _field(path, i, rec, "rejected")
    try:
        prompt, better = split_transcript(chosen)
        prompt_r, worse = split_transcript(rejected)
    except ValueError:
        return "no Assistant turn"
    if prompt != prompt_r:
        return "chosen and rejected differ before the last Assistant turn"
    if better == worse:
        return "identical replies"
    return _ordered(i, prompt, better, worse, seed)


_READERS = {
    "trl": _read_trl,
    "llmbar": _read_llmbar,
    "pandalm": _read_pandalm,
    "hh-rlhf": _read_hh,
}
