"""run.json as a typed record: read back unchanged, clear errors, the summary both views show."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rlaif.errors import InputError
from rlaif.pipeline.record import BudgetSpent, RunRecord

#: the run.json of a real `rlaif run` (a rule judge, 32 prompts)
REAL = Path(__file__).parent / "data" / "run.json"


def _real() -> dict:
    return json.loads(REAL.read_text(encoding="utf-8"))


def test_a_real_run_json_round_trips_with_its_keys_in_order():
    data = _real()
    record = RunRecord.from_json(data)
    assert record.to_json() == data
    assert json.dumps(record.to_json()) == json.dumps(data)  # the same order, nested too
    assert record.counts.preferences == 99 and record.counts.low_margin == 797
    assert record.stats.position_consistency_rate is None
    assert record.tokens.by_role["policy"]["completion"] > 0
    assert record.setting("judge") == "rule:words=8-40"


def test_load_reads_the_directory_and_names_the_file_it_cannot_read(tmp_path):
    shutil.copy(REAL, tmp_path / "run.json")
    assert RunRecord.load(tmp_path).to_json() == _real()
    with pytest.raises(InputError, match=f"{tmp_path / 'nowhere' / 'run.json'}: cannot read"):
        RunRecord.load(tmp_path / "nowhere")
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(InputError, match="run.json: cannot read"):
        RunRecord.load(tmp_path)


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        (lambda d: d["stats"].update(mean_margin="high"), "stats.mean_margin", "a number or null"),
        (lambda d: d.update(labels=True), "labels", "a number or null"),
        (lambda d: d.update(counts=[1, 2]), "counts", "an object or null"),
        (lambda d: d.update(warnings="none"), "warnings", "a list or null"),
        (lambda d: d.update(budget={"max_cost": "1"}), "budget.max_cost", "a number"),
    ],
)
def test_a_field_of_the_wrong_type_names_the_file_and_the_field(tmp_path, change, field, expected):
    data = _real()
    change(data)
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(InputError) as e:
        RunRecord.load(tmp_path)
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'run.json'}: field '{field}' must be {expected}")


def test_not_an_object_is_refused():
    with pytest.raises(InputError, match="where.json: the file must be a JSON object"):
        RunRecord.from_json([1], "where.json")


def test_an_older_run_json_loads_and_its_missing_figures_read_as_unknown():
    data = _real()
    for key in ("warnings", "requests", "counts", "timings_s"):
        del data[key]
    data["surplus"] = {"kept": True}  # a key of a newer version
    record = RunRecord.from_json(data)
    assert record.warnings is None and record.counts is None
    assert record.to_json() == data
    rows = dict(record.summary_rows())
    assert rows["prompts"] == "?" and rows["time"] == "?"
    assert rows["preferences / low margin / unreadable"] == "? / ? / ?"
    assert rows["retried requests"] == "0"


def test_summary_rows_of_a_real_run():
    rows = dict(RunRecord.from_json(_real()).summary_rows())
    assert rows["prompts"] == "32"
    assert rows["preferences / low margin / unreadable"] == "99 / 797 / 0"
    assert rows["position consistency"] == "n/a"  # a rule judge never asks in both orders
    assert rows["decided by rule / AI"] == "896 / 0"
    assert rows["tokens"] == "27,761"
    assert rows["judge tokens evaluated / reused"] == "?"  # written before the count existed
    assert rows["time"] == "1330.6 s"


def test_summary_rows_give_the_judge_tokens_evaluated_and_reused():
    data = _real()
    data["tokens"]["judge_choice_tokens_this_invocation"] = {"evaluated": 4064, "reused": 4820}
    rows = dict(RunRecord.from_json(data).summary_rows())
    assert rows["judge tokens evaluated / reused"] == "4,064 / 4,820"
    setup = dict(RunRecord.from_json(_real()).setup_rows())
    assert setup["judge"] == "rule:words=8-40" and setup["mode"] == "pairwise"


def test_summary_rows_say_retries_and_the_budget():
    data = _real()
    data["requests"]["retries"] = {"timeout": 2, "429": 1}
    data["budget"] = {"max_cost": 0.5, "spent_this_invocation": 0.1, "spent_in_all": 0.25}
    data["cost"] = 0.1
    record = RunRecord.from_json(data)
    assert record.budget == BudgetSpent(0.5, 0.1, 0.25)
    rows = dict(record.summary_rows())
    assert rows["retried requests"] == "3 (429: 1, timeout: 2)"
    assert rows["cost"] == "$0.100000 (spent in all $0.250000 of --max-cost $0.5)"


def test_the_record_knows_every_field_the_main_job_writes():
    record = RunRecord.from_json(_real())
    nested = [getattr(record, f) for f in ("constitution", "tokens", "counts", "stats")]
    for r in [record, *nested, record.requests]:
        assert r._extra == {}, type(r).__name__  # so the outputs reference lists them all
