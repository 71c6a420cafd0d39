"""The constitution: an ordered list of principles the judge and the reviser follow.

Two file formats are read:

* rlaif's own (YAML or JSON): ``{name, principles: [{id, critique, revision, comparison,
  pointwise?, check?}]}``; see ``rlaif/data/constitution.yaml`` for the documented default.
* llm-swarm's: ``{"constitutions": [{"critic": ..., "revision": ...}], "system_chat": ...}``, the
  critique/revision pairs of the Constitutional AI paper. Ids become ``cai-01``, ``cai-02``, ...
  and the comparison and pointwise questions are derived from the critique request.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import yaml

from rlaif.errors import ConstitutionError

REQUIRED_FIELDS = ("id", "critique", "revision", "comparison")


@dataclass(frozen=True)
class Principle:
    """One principle: what to critique, how to revise, what to ask when comparing."""

    id: str
    critique: str
    revision: str
    comparison: str
    pointwise: str = ""
    #: a ``rule:`` or ``python:`` scoring function that decides a comparison when the two
    #: responses score differently on it (see rlaif.compare); "" for none
    check: str = ""

    @property
    def pointwise_question(self) -> str:
        """The yes/no question asked about a single response in pointwise mode."""
        if self.pointwise:
            return self.pointwise
        return f"Judged by this question: {self.comparison!r}, is this a good response?"


@dataclass(frozen=True)
class Constitution:
    """An ordered, non-empty list of principles with unique ids, plus where it came from."""

    name: str
    principles: tuple[Principle, ...]
    source: str = "<memory>"

    @property
    def hash(self) -> str:
        """Content hash (sha256, 16 hex digits) of the principles; names and paths excluded."""
        # A principle without a check hashes as it did before checks existed.
        fields = [
            {k: v for k, v in asdict(p).items() if k != "check" or v} for p in self.principles
        ]
        canonical = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def get(self, principle_id: str) -> Principle:
        """The principle with this id; ConstitutionError naming the valid ids otherwise."""
        for p in self.principles:
            if p.id == principle_id:
                return p
        ids = ", ".join(p.id for p in self.principles)
        raise ConstitutionError(f"{self.source}: no principle {principle_id!r} (ids: {ids})")

    def sample(self, seed: int, *keys: str) -> Principle:
        """One principle drawn deterministically from the seed and the keys (e.g. prompt, texts).

        Keys are sorted first, so compare(a, b) and compare(b, a) draw the same principle.
        """
        digest = hashlib.sha256(json.dumps([seed, sorted(keys)]).encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        return rng.choice(self.principles)


def default_constitution() -> Constitution:
    """The constitution shipped with rlaif (helpful, honest, harmless)."""
    text = resources.files("rlaif.data").joinpath("constitution.yaml").read_text()
    return parse_constitution(yaml.safe_load(text), source="default")


def load_constitution(path: str | Path | None) -> Constitution:
    """Load a constitution file, or the default for ``None`` / ``"default"``."""
    if path is None or str(path) == "default":
        return default_constitution()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConstitutionError(
            f"{path}: cannot read constitution ({e.strerror}); pass a YAML or JSON file "
            "or 'default'"
        ) from e
    return parse_constitution(_parse_file(path, text), source=str(path))


def _parse_file(path: Path, text: str) -> object:
    """A constitution file's data: JSON for a ``.json`` file, YAML otherwise; a syntax error
    becomes a ConstitutionError that says where it is."""
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise ConstitutionError(
            f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ConstitutionError(f"{path}: not valid YAML{where}: {problem}") from e


def parse_constitution(data: object, source: str = "<memory>") -> Constitution:
    """Build a Constitution from parsed YAML/JSON in either supported format."""
    if isinstance(data, dict) and "constitutions" in data:
        return _from_llm_swarm(data, source)
    if not isinstance(data, dict) or "principles" not in data:
        raise ConstitutionError(
            f"{source}: expected a mapping with 'principles' (rlaif format) or "
            "'constitutions' (llm-swarm format)"
        )
    raw = data["principles"]
    if not isinstance(raw, list) or not raw:
        raise ConstitutionError(f"{source}: 'principles' must be a non-empty list")
    principles = []
    seen: set[str] = set()
    for i, item in enumerate(raw, start=1):
        label = f"principle {i}"
        if not isinstance(item, dict):
            raise ConstitutionError(f"{source}: {label} is not a mapping")
        if isinstance(item.get("id"), str) and item["id"].strip():
            label = f"principle {i} ({item['id']!r})"
        for field in REQUIRED_FIELDS:
            value = item.get(field)
            if not isinstance(value, str) or not value.strip():
                raise ConstitutionError(f"{source}: {label}: field {field!r} is missing or empty")
        unknown = set(item) - set(REQUIRED_FIELDS) - {"pointwise", "check"}
        if unknown:
            raise ConstitutionError(
                f"{source}: {label}: unknown field(s) {', '.join(sorted(unknown))}"
            )
        pid = item["id"].strip()
        if pid in seen:
            raise ConstitutionError(
                f"{source}: {label}: field 'id' duplicates an earlier principle"
            )
        seen.add(pid)
        principles.append(
            Principle(
                id=pid,
                critique=item["critique"].strip(),
                revision=item["revision"].strip(),
                comparison=item["comparison"].strip(),
                pointwise=str(item.get("pointwise") or "").strip(),
                check=_check(item.get("check"), source, label),
            )
        )
    return Constitution(str(data.get("name") or Path(source).stem), tuple(principles), source)


def _check(value: object, source: str, label: str) -> str:
    """A principle's optional check string, validated (not imported); "" when absent."""
    from rlaif.rules import RuleError, check_spec

    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise ConstitutionError(f"{source}: {label}: field 'check' must be a string")
    try:
        check_spec(value)
    except RuleError as e:
        raise ConstitutionError(f"{source}: {label}: field 'check': {e}") from None
    return value.strip()


def _from_llm_swarm(data: dict, source: str) -> Constitution:
    raw = data["constitutions"]
    if not isinstance(raw, list) or not raw:
        raise ConstitutionError(f"{source}: 'constitutions' must be a non-empty list")
    principles = []
    for i, item in enumerate(raw, start=1):
        label = f"principle {i} ('cai-{i:02d}')"
        if not isinstance(item, dict):
            raise ConstitutionError(f"{source}: {label} is not a mapping")
        for field in ("critic", "revision"):
            if not isinstance(item.get(field), str) or not item[field].strip():
                raise ConstitutionError(f"{source}: {label}: field {field!r} is missing or empty")
        critic = item["critic"].strip()
        principles.append(
            Principle(
                id=f"cai-{i:02d}",
                critique=critic,
                revision=item["revision"].strip(),
                comparison=f"With this critique request in mind: {critic!r} "
                "Which response is better?",
                pointwise=f"With this critique request in mind: {critic!r} "
                "Is this response acceptable?",
            )
        )
    return Constitution(Path(source).stem, tuple(principles), source)
