"""Prices, the --max-cost budget and the dry run.

The price table and the budget's arithmetic are unit-tested; then the real CLI runs the real
embedded model, priced through a price file: run.json's cost must follow the token counts,
the dry run must bound what the run really used without calling any model, and a run stopped
by its budget must keep every paid call and, with the budget raised, end with the records of
an unbudgeted run.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from rlaif.errors import InputError
from rlaif.pipeline.budget import Budget, BudgetExceeded
from rlaif.pipeline.pricing import Price, PriceTable, load_price_table, stored_spend

RLAIF = [sys.executable, "-m", "rlaif"]
ARGS = ["--limit", "1", "--n-responses", "2", "--revisions", "0", "--max-tokens", "16", "--quiet"]
DATA_FILES = ("preferences.jsonl", "low_margin.jsonl", "unreadable.jsonl", "sft.jsonl")
#: dollars per million tokens for the embedded model, so that a local run costs something
PRICE_IN, PRICE_OUT = 1000.0, 3000.0


def rlaif(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*RLAIF, *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"rlaif {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _one_error_line(proc: subprocess.CompletedProcess, pattern: str) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert pattern in lines[0], lines[0]
    return lines[0]


def _data(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in (*DATA_FILES, "revisions.jsonl")}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


# -- the price table --------------------------------------------------------------------------


def test_price_lookup_exact_then_bare_openai_name_then_default(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(
        "openai:big@https://a.example/v1: {input: 5, output: 15}\n"
        "big: {input: 1, output: 2}\n"
        "llamacpp:/m.gguf: {input: 0.5}\n"
    )
    table = load_price_table(path, default_in=0.25, default_out=0.75)
    assert table.price("openai:big@https://a.example/v1") == Price(5, 15)
    assert table.price("openai:big@http://127.0.0.1:8000/v1") == Price(1, 2)
    assert table.price("llamacpp:/m.gguf") == Price(0.5, 0.0)
    assert table.price("smollm2") == Price(0.25, 0.75)  # --price-in/--price-out still count
    assert load_price_table(None).price("openai:big@x") == Price()  # local default: free
    assert Price(2, 4).cost(1_000_000, 500_000) == pytest.approx(4.0)
    json_path = tmp_path / "prices.json"
    json_path.write_text(json.dumps({"big": {"input": 3, "output": 6}}))
    assert load_price_table(json_path).price("openai:big@x") == Price(3, 6)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("big: {input: 1, ouput: 2}\n", "big: unknown field 'ouput'"),
        ("big: {input: -1}\n", "big: input must be a number >= 0"),
        ("big: {input: cheap}\n", "big: input must be a number >= 0"),
        ("big: 3\n", "big: write {input: N, output: N}"),
        ("- big\n", "maps model strings"),
        ("big: {input: 1\nother: [\n", "prices.yaml:"),
    ],
)
def test_bad_price_file_names_file_and_field(tmp_path, text, pattern):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match="prices.yaml") as info:
        load_price_table(path)
    assert pattern in str(info.value)


def test_bad_price_file_through_the_cli(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text("smollm2: {input: -3}\n")
    out = tmp_path / "run"
    proc = rlaif("run", *ARGS, "--price-file", str(path), "--out", str(out), check=False)
    _one_error_line(proc, "smollm2: input must be a number >= 0")
    assert not out.exists()
    missing = rlaif("run", *ARGS, "--price-file", str(tmp_path / "nope.yaml"), check=False)
    _one_error_line(missing, "no such price file")


# -- the budget's arithmetic ------------------------------------------------------------------


def test_budget_refuses_a_call_that_could_cross_it_and_counts_what_calls_cost():
    prices = PriceTable(entries={"m": Price(1_000_000, 1_000_000)})  # a dollar a token
    messages = [{"role": "user", "content": "x" * 30}]  # counted as 10 tokens + 16 of markers
    budget = Budget(100.0, prices, spent=10.0, where="RUN/store.sqlite")
    reserved = budget.reserve("m", messages, max_output=4)
    assert reserved == pytest.approx(30.0)
    budget.settle(reserved, "m", 12, 3)  # the call used fewer tokens than bounded
    assert budget.spent == pytest.approx(25.0) and budget.spent_now == pytest.approx(15.0)
    budget.reserve("m", messages, max_output=4)  # 25 + 30 <= 100
    budget.reserve("m", messages, max_output=4)  # 25 + 60 <= 100: calls in flight count
    with pytest.raises(BudgetExceeded, match="higher --max-cost") as info:
        budget.reserve("m", messages, max_output=4)  # 25 + 90 > 100
    assert "RUN/store.sqlite" in str(info.value)
    assert Budget(None, prices).reserve("m", messages, 10**6) > 0  # no limit: never refuses
    free = Budget(0.0, PriceTable())
    free.settle(free.reserve("smollm2", messages, 100), "smollm2", 10, 100)
    assert free.spent == 0.0


# -- the dry run ------------------------------------------------------------------------------


def test_dry_run_calls_no_model_and_writes_nothing(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("remote: {input: 2, output: 8}\n")
    out = tmp_path / "run"
    # Nothing listens at this server: a model call would fail the command.
    judge = f"openai:remote@http://127.0.0.1:{_closed_port()}/v1"
    proc = rlaif(
        "run",
        "--limit",
        "2",
        "--judge",
        judge,
        "--price-file",
        str(prices),
        "--out",
        str(out),
        "--dry-run",
    )
    assert not out.exists()
    assert "upper bounds; no model called" in proc.stdout
    assert "a proxy" in proc.stdout and "the model's own tokenizer" in proc.stdout
    from rlaif.pipeline.job import RunConfig, estimate

    est = estimate(
        RunConfig(out=out, limit=2, judge=judge, price_file=str(prices), dry_run=True)
    ).to_dict()
    assert f"at most {est['calls']} calls" in proc.stdout
    by_stage = {s["stage"]: s for s in est["stages"]}
    # 2 prompts x 2 responses; 1 critique + 1 revision each; 1 pair + 2 revision pairs, 2 orders
    assert [by_stage[s]["calls"] for s in ("generate", "critique", "revise", "label")] == [
        4,
        4,
        4,
        12,
    ]
    judge_tokens = [by_stage[s] for s in ("critique", "label")]
    expected = sum(2 * s["input_tokens"] + 8 * s["output_tokens"] for s in judge_tokens) / 1e6
    assert est["cost"] == pytest.approx(expected)  # the policy (smollm2) is free
    assert by_stage["generate"]["cost"] == 0.0


# -- real runs --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def price_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prices") / "prices.yaml"
    path.write_text(f"smollm2: {{input: {PRICE_IN}, output: {PRICE_OUT}}}\n")
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, price_file) -> Path:
    out = tmp_path_factory.mktemp("runs") / "reference"
    rlaif("run", *ARGS, "--price-file", str(price_file), "--out", str(out))
    return out


def test_run_json_cost_follows_tokens_and_prices(reference, price_file, tmp_path):
    info = json.loads((reference / "run.json").read_text())
    tokens = info["tokens"]
    expected = (tokens["prompt"] * PRICE_IN + tokens["completion"] * PRICE_OUT) / 1e6
    assert info["cost"] == pytest.approx(expected, abs=1e-8) and info["cost"] > 0
    judge = tokens["by_role"]["judge"]
    assert info["judge_cost"] == pytest.approx(
        (judge["prompt"] * PRICE_IN + judge["completion"] * PRICE_OUT) / 1e6, abs=1e-8
    )
    assert info["price_per_million"]["judge"] == {"input": PRICE_IN, "output": PRICE_OUT}
    assert info["cost_per_label"] == pytest.approx(info["cost"] / info["labels"], abs=1e-8)
    # every call of the run is in the store, and the store's spend is the run's cost
    calls, spent = stored_spend(reference / "store.sqlite", load_price_table(price_file))
    assert calls == info["model_calls"] and spent == pytest.approx(info["cost"], abs=1e-8)

    # The dry run bounds what the run used, from the same command.
    proc = rlaif(
        "run", *ARGS, "--price-file", str(price_file), "--out", str(tmp_path / "x"), "--dry-run"
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("estimate:"))
    words = line.replace(",", "").split()
    calls_max, input_max, output_max = int(words[3]), int(words[5]), int(words[8])
    assert info["model_calls"] <= calls_max
    assert tokens["prompt"] <= input_max and tokens["completion"] <= output_max
    assert info["cost"] <= float(words[11].lstrip("$"))


def test_max_cost_stops_cleanly_and_a_raised_budget_finishes_the_same_run(
    reference, price_file, tmp_path
):
    info = json.loads((reference / "run.json").read_text())
    total_calls, cost = info["model_calls"], info["cost"]
    out = tmp_path / "budgeted"
    cap = cost / 2
    priced = [*ARGS, "--price-file", str(price_file), "--out", str(out)]
    line = _one_error_line(rlaif("run", *priced, "--max-cost", f"{cap}", check=False), "budget")
    assert "higher --max-cost" in line and "store.sqlite" in line
    assert not (out / "run.json").exists() and not list(out.glob("*.tmp"))
    prices = load_price_table(price_file)
    stopped_at, spent = stored_spend(out / "store.sqlite", prices)
    assert 0 < stopped_at < total_calls
    assert spent <= cap  # the budget is never passed
    with sqlite3.connect(out / "store.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # The same budget again: nothing more is spent, the run stops at the same place.
    _one_error_line(rlaif("run", *priced, "--max-cost", f"{cap}", check=False), "budget")
    assert stored_spend(out / "store.sqlite", prices) == (stopped_at, spent)

    # Raised: the run continues from the store and ends as the unbudgeted one did.
    rlaif("run", *priced, "--max-cost", f"{10 * cost}")
    finished = json.loads((out / "run.json").read_text())
    assert finished["model_calls"] == total_calls - stopped_at
    assert finished["cached_calls"] == stopped_at
    assert finished["budget"]["spent_in_all"] == pytest.approx(cost, abs=1e-8)
    assert finished["budget"]["max_cost"] == pytest.approx(10 * cost)
    assert _data(out) == _data(reference)


def test_max_cost_is_refused_where_it_cannot_be_enforced(tmp_path):
    from rlaif.pipeline.job import RunConfig

    with pytest.raises(ValueError, match="--executor local"):
        RunConfig(out=tmp_path / "r", max_cost=1.0, executor="ray")
    with pytest.raises(ValueError, match="max_cost must be >= 0"):
        RunConfig(out=tmp_path / "r", max_cost=-1.0)


def test_a_call_without_usage_is_charged_the_over_count_never_zero():
    from rlaif.backends.base import Backend, ChoiceScores, Generation
    from rlaif.pipeline.budget import BudgetedBackend

    class NoUsage(Backend):  # a server that reports no token usage
        model_id = "m"

        def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0):
            return Generation(text="y" * 30, prompt_tokens=0, completion_tokens=0)

        def choice_logprobs(self, messages, choices):
            return ChoiceScores(method="logprobs", logprobs={"A": -1.0, "B": -2.0})

    budget = Budget(None, PriceTable(entries={"m": Price(1e6, 1e6)}))
    backend = BudgetedBackend(NoUsage(), budget)
    gen = backend.generate([{"role": "user", "content": "x" * 30}], max_tokens=5)
    assert budget.spent == pytest.approx((10 + 16) + (10 + 16))
    # the result (what the store keeps) carries the charged tokens: a resumed run counts them
    assert (gen.prompt_tokens, gen.completion_tokens) == (26, 26)
    scores = backend.choice_logprobs([{"role": "user", "content": "x" * 30}], ("A", "B"))
    assert budget.spent == pytest.approx(52 + 26)
    assert scores.prompt_tokens == 26 and scores.logprobs == {"A": -1.0, "B": -2.0}
