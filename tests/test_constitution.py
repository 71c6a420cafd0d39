"""Constitutions: the default, llm-swarm's file, every malformed file, and seeded sampling."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlaif.constitution import Constitution, load_constitution, parse_constitution
from rlaif.errors import ConstitutionError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LLM_SWARM = SHARED / "data" / "constitutions" / "constitution_anthropic.json"


def _principle(pid: str, **overrides) -> dict:
    item = {
        "id": pid,
        "critique": f"Critique {pid}.",
        "revision": f"Revise {pid}.",
        "comparison": f"Which is more {pid}?",
    }
    item.update(overrides)
    return item


def _write(tmp_path: Path, data: object, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if name.endswith(".yaml") else json.dumps(data))
    return path


# -- the default ------------------------------------------------------------------------------
def test_default_loads():
    c = load_constitution("default")
    assert c == load_constitution(None)
    assert 8 <= len(c.principles) <= 16
    ids = [p.id for p in c.principles]
    assert len(set(ids)) == len(ids)
    for p in c.principles:
        assert p.id and p.critique and p.revision and p.comparison and p.pointwise_question


def test_hash_is_stable_and_follows_content():
    c = load_constitution("default")
    assert len(c.hash) == 16 and int(c.hash, 16) >= 0
    assert c.hash == load_constitution("default").hash
    # names and sources are not content
    assert dataclasses.replace(c, name="other", source="elsewhere").hash == c.hash
    changed = dataclasses.replace(
        c,
        principles=(dataclasses.replace(c.principles[0], comparison="Which?"),) + c.principles[1:],
    )
    assert changed.hash != c.hash
    reordered = dataclasses.replace(c, principles=c.principles[::-1])
    assert reordered.hash != c.hash


def test_hash_is_the_same_in_another_process():
    code = "from rlaif.constitution import load_constitution; print(load_constitution(None).hash)"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == load_constitution("default").hash


def test_get():
    c = load_constitution("default")
    assert c.get("helpful").id == "helpful"
    with pytest.raises(ConstitutionError, match="no principle 'nope'.*helpful"):
        c.get("nope")


# -- other formats ----------------------------------------------------------------------------
def test_llm_swarm_file_loads():
    if not LLM_SWARM.is_file():
        pytest.skip(f"llm-swarm constitution not found at {LLM_SWARM} (../shared is absent)")
    c = load_constitution(LLM_SWARM)
    raw = json.loads(LLM_SWARM.read_text())["constitutions"]
    assert len(c.principles) == 16
    assert [p.id for p in c.principles] == [f"cai-{i:02d}" for i in range(1, 17)]
    for p, item in zip(c.principles, raw, strict=True):
        assert p.critique == item["critic"].strip()
        assert p.revision == item["revision"].strip()
        assert item["critic"].strip() in p.comparison
        assert item["critic"].strip() in p.pointwise_question
    assert c.source == str(LLM_SWARM)


def test_rlaif_format_as_json(tmp_path):
    path = _write(tmp_path, {"name": "j", "principles": [_principle("a")]}, "c.json")
    c = load_constitution(path)
    assert c.name == "j"
    assert [p.id for p in c.principles] == ["a"]
    # without an explicit pointwise question one is derived from the comparison
    assert "Which is more a?" in c.principles[0].pointwise_question


# -- malformed files --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("principles", "names"),
    [
        (
            [_principle("a"), {k: v for k, v in _principle("b").items() if k != "comparison"}],
            ["principle 2", "'b'", "'comparison'", "missing"],
        ),
        ([_principle("a", revision="   ")], ["principle 1", "'a'", "'revision'", "empty"]),
        ([_principle("a"), _principle("a")], ["principle 2", "'a'", "'id'", "duplicate"]),
        ([_principle("a", colour="red")], ["principle 1", "'a'", "colour", "unknown"]),
        ([{k: v for k, v in _principle("x").items() if k != "id"}], ["principle 1", "'id'"]),
        ([_principle("a"), "just text"], ["principle 2", "not a mapping"]),
    ],
    ids=["missing-field", "empty-field", "duplicate-id", "unknown-field", "no-id", "not-mapping"],
)
def test_malformed_principle_names_file_principle_and_field(tmp_path, principles, names):
    path = _write(tmp_path, {"name": "bad", "principles": principles})
    with pytest.raises(ConstitutionError) as info:
        load_constitution(path)
    message = str(info.value)
    assert str(path) in message
    for name in names:
        assert name in message


@pytest.mark.parametrize(
    "data", [{"principles": {"a": 1}}, {"principles": []}, {"principles": "a"}, ["a"], None]
)
def test_principles_not_a_list(tmp_path, data):
    path = _write(tmp_path, data)
    with pytest.raises(ConstitutionError, match="principles") as info:
        load_constitution(path)
    assert str(path) in str(info.value)


def test_bad_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nprinciples: [\n  - id: a\n")
    with pytest.raises(ConstitutionError, match="not valid") as info:
        load_constitution(path)
    assert str(path) in str(info.value)


def test_bad_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"principles": [')
    with pytest.raises(ConstitutionError, match="not valid JSON") as info:
        load_constitution(path)
    assert str(path) in str(info.value)


def test_bad_yaml_message_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nprinciples: [\n  - id: a\n")
    with pytest.raises(ConstitutionError) as info:
        load_constitution(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_path(tmp_path, kind):
    path = tmp_path / "nope.yaml" if kind == "missing" else tmp_path
    with pytest.raises(ConstitutionError, match="cannot read") as info:
        load_constitution(path)
    assert str(path) in str(info.value)


def test_llm_swarm_missing_field_names_principle(tmp_path):
    data = {"constitutions": [{"critic": "c1", "revision": "r1"}, {"critic": "c2"}]}
    path = _write(tmp_path, data, "swarm.json")
    with pytest.raises(ConstitutionError) as info:
        load_constitution(path)
    for name in (str(path), "principle 2", "cai-02", "'revision'"):
        assert name in str(info.value)


def test_ids_equal_after_stripping_are_duplicates(tmp_path):
    path = _write(tmp_path, {"principles": [_principle("a"), _principle(" a")]})
    with pytest.raises(ConstitutionError, match="duplicate"):
        load_constitution(path)


# -- sampling ---------------------------------------------------------------------------------
KEYS = [(f"prompt {i}", f"response {i}", f"other {i % 7}") for i in range(200)]


def test_sampling_is_deterministic():
    c = load_constitution("default")
    again = parse_constitution(
        {"principles": [dataclasses.asdict(p) for p in c.principles]}, source="copy"
    )
    for keys in KEYS[:50]:
        assert c.sample(3, *keys) == c.sample(3, *keys) == again.sample(3, *keys)


def test_sampling_is_symmetric_in_its_keys():
    c = load_constitution("default")
    for a, b, d in KEYS[:50]:
        draws = {c.sample(0, "compare", a, b, d), c.sample(0, d, b, "compare", a)}
        draws.add(c.sample(0, b, a, d, "compare"))
        assert len(draws) == 1


def test_sampling_spreads_and_depends_on_the_seed():
    c: Constitution = load_constitution("default")
    seed0 = [c.sample(0, *keys).id for keys in KEYS]
    seed1 = [c.sample(1, *keys).id for keys in KEYS]
    assert set(seed0) == {p.id for p in c.principles}  # 200 draws reach all principles
    differ = sum(x != y for x, y in zip(seed0, seed1, strict=True))
    assert differ > len(KEYS) // 2  # about 11/12 of the draws should differ
