"""Read prompt sets: JSONL, JSON, CSV and plain text, including MT-Bench and alpaca-eval as-is.

A record may hold ``prompt``; or ``instruction`` with an optional ``input`` (alpaca style);
or ``turns`` (MT-Bench: the first turn is used); or chat ``messages`` (a conversation ending
with a user turn). Every record is checked before any model is called, and a malformed one is
reported with its file and line (JSONL, text, CSV) or index (JSON list). The JSON-lines
reading, :func:`json_lines`, serves the other JSONL readers too (preferences, review items).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rlaif.errors import InputError

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Prompt:
    """One prompt: plain text, or a chat conversation whose last turn is the user's."""

    id: str
    text: str
    messages: tuple[tuple[str, str], ...] = ()
    category: str = ""

    @property
    def is_chat(self) -> bool:
        """Whether the prompt came as chat messages (its records use TRL's conversational form)."""
        return bool(self.messages)

    def chat(self) -> list[dict]:
        """The messages a policy answers."""
        if self.messages:
            return [{"role": r, "content": c} for r, c in self.messages]
        return [{"role": "user", "content": self.text}]

    def for_record(self) -> str | list[dict]:
        """The ``prompt`` field of output records: text, or the message list for chat prompts."""
        return self.chat() if self.messages else self.text


def builtin_prompts_path() -> Path:
    """The prompt set shipped with rlaif: helpful tasks and harmful requests, written for it."""
    return Path(str(resources.files("rlaif.data").joinpath("prompts.jsonl")))


def file_sha256(path: str | Path) -> str:
    """Content hash of a file (identifies a run's prompt set)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_prompts(path: str | Path | None = None, limit: int | None = None) -> list[Prompt]:
    """All prompts of a file (the built-in set for None), at most ``limit``; InputError if bad."""
    path = Path(path) if path is not None else builtin_prompts_path()
    if not path.is_file():
        raise InputError(f"{path}: no such prompts file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the prompts file ({e})") from e
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        prompts = list(_from_jsonl(path, text))
    elif suffix == ".json":
        prompts = list(_from_json(path, text))
    elif suffix == ".csv":
        prompts = list(_from_csv(path, text))
    elif suffix in (".txt", ".text", ""):
        prompts = [
            Prompt(id=str(n), text=line.strip())
            for n, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
    else:
        raise InputError(
            f"{path}: unknown prompts format {suffix!r}; use .jsonl, .json, .csv, .txt"
        )
    if not prompts:
        raise InputError(f"{path}: holds no prompts")
    ids = set()
    for p in prompts:
        if p.id in ids:
            raise InputError(f"{path}: prompt id {p.id!r} appears twice; ids must be unique")
        ids.add(p.id)
    return prompts[:limit] if limit is not None else prompts


def json_lines(
    path: str | Path, lines: Iterable[str], hint: str = ""
) -> Iterator[tuple[int, object]]:
    """(line number, value) of each non-blank line of a JSON-lines file, numbered from 1.

    A line that is not valid JSON is an InputError naming the file and line, ``hint`` added.
    """
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{n}: not valid JSON ({e.msg}){hint}") from e
        yield n, value


def _from_jsonl(path: Path, text: str):
    for n, obj in json_lines(path, text.splitlines()):
        yield _from_record(obj, f"{path}:{n}", default_id=str(n))


def _from_json(path: Path, text: str):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of prompts or prompt records")
    for i, obj in enumerate(data):
        yield _from_record(obj, f"{path}: item {i}", default_id=str(i))


def _from_csv(path: Path, text: str):
    reader = csv.DictReader(text.splitlines())
    fields = reader.fieldnames or []
    if not ({"prompt", "instruction"} & set(fields)) and len(fields) != 1:
        raise InputError(f"{path}:1: a CSV needs a 'prompt' or 'instruction' column")
    for n, row in enumerate(reader, start=2):
        if len(fields) == 1 and not {"prompt", "instruction"} & set(fields):
            row = {"prompt": row[fields[0]]}
        yield _from_record(row, f"{path}:{n}", default_id=str(n - 1))


def _from_record(obj: object, where: str, default_id: str) -> Prompt:
    if isinstance(obj, str):
        obj = {"prompt": obj}
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected an object or a string, got {type(obj).__name__}")
    pid = str(obj.get("id", obj.get("question_id", default_id)))
    category = str(obj.get("category") or "")
    if "messages" in obj:
        return _from_messages(obj["messages"], where, pid, category)
    if "prompt" in obj:
        text = obj["prompt"]
    elif "instruction" in obj:
        text = obj["instruction"]
        extra = obj.get("input")
        if isinstance(text, str) and isinstance(extra, str) and extra.strip():
            text = f"{text.strip()}\n\n{extra.strip()}"
    elif "turns" in obj:
        turns = obj["turns"]
        text = turns[0] if isinstance(turns, list) and turns else None
    else:
        raise InputError(
            f"{where}: no prompt field; expected 'prompt', 'instruction', 'turns' or 'messages'"
        )
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: the prompt is empty or not text")
    return Prompt(id=pid, text=text.strip(), category=category)


def _from_messages(messages: object, where: str, pid: str, category: str) -> Prompt:
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{where}: 'messages' must be a non-empty list")
    pairs = []
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or m.get("role") not in ROLES
            or not isinstance(m.get("content"), str)
        ):
            raise InputError(
                f"{where}: messages[{i}] needs 'role' (system, user or assistant) and 'content'"
            )
        pairs.append((m["role"], m["content"]))
    if pairs[-1][0] != "user":
        raise InputError(f"{where}: the last message must be the user's")
    text = "\n\n".join(f"{role.capitalize()}: {content}" for role, content in pairs)
    return Prompt(id=pid, text=text, messages=tuple(pairs), category=category)
