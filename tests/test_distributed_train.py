"""``rlaif train dpo|reward|grpo`` under ``accelerate launch`` with 2 processes on the CPU.

Every run here is a real launch: ``accelerate launch --multi_gpu --num_processes 2`` on a tiny
model (:mod:`tiny_model`), with CUDA hidden so that torchrun's two processes train on the CPU
over gloo. (``accelerate launch --cpu --num_processes 2`` starts one process unless it is
given an MPI hostfile: accelerate 1.15's simple launcher; see docs/guides/scale-and-cost.md.)
The command run in each process is ``tests/launch_rlaif.py``, rlaif's command line with two
test switches: a log of the pairs each process trained on per step, and a bug on demand (every
rank a writer).

What is checked: 2 processes x 2 pairs end with the parameters of 1 process x 4 pairs from the
same seed (and each step's two shards together are the single process's batch); only one
process writes (one checkpoint, one summary, no stray temporary directory) and the check that
says so catches a run where every rank writes; ``train.json`` records the world size and the
global batch; the reward model's own loop (which shards each batch itself) also ends as on
one process; GRPO runs to the end; ``rlaif loop --train-launcher`` trains through a launch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from test_train_dpo import write_pairs
from tiny_model import tiny_checkpoint

pytest.importorskip("accelerate")

REPO = Path(__file__).resolve().parents[1]
LAUNCH_SCRIPT = REPO / "tests" / "launch_rlaif.py"
#: no launch here is expected to take more than a minute on 2 busy cores; this only stops a hang
LAUNCH_TIMEOUT_S = 600
#: each test pair has its own p_chosen, so a logged target names the pair
P_VALUES = [0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
#: max |difference| allowed between a parameter after 2 x 2 and after 1 x 4 (float32). The two
#: runs do the same arithmetic in a different order: the single process averages the loss of 4
#: pairs, the two average 2 each and gloo's all-reduce averages the two gradients, so they part
#: only by float32 rounding (unit roundoff 6e-8, relative). Adam turns a gradient into a step
#: of about lr whatever its size, so a relative gradient error e moves a parameter by about
#: lr x e per step: with lr 1e-3, 4 steps and e up to 1e-3 (a gradient that is a sum of
#: cancelling terms), 4e-6. Measured: 1.05e-6 (one thread a process; 2.6e-7 with more). 1e-5
#: allows that with room; it is 400x smaller than the 4e-3 that training moves the parameters,
#: and the control below (the same run with another data order) lands 6e-3 off.
TOLERANCE = 1e-5
DPO_ARGS = ["--max-steps", "4", "--learning-rate", "1e-3", "--drift-prompts", "0", "--quiet"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
        "RLAIF_N_THREADS": "1",
        # the CPU even on a machine with GPUs: gloo, float32, what the tolerance is about
        "CUDA_VISIBLE_DEVICES": "",
        "RLAIF_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    # this tree's rlaif in every process, before any installed copy
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def launch(
    args: list[str], processes: int = 2, switches: tuple = ()
) -> subprocess.CompletedProcess:
    """Run ``rlaif ARGS`` in ``processes`` processes (1: no launcher); wait; return the result."""
    script = [str(LAUNCH_SCRIPT), *switches, *args]
    if processes == 1:
        cmd = [sys.executable, *script]
    else:
        cmd = [
            *(sys.executable, "-m", "accelerate.commands.launch"),
            *("--multi_gpu", "--num_processes", str(processes), "--num_machines", "1"),
            *("--mixed_precision", "no", "--dynamo_backend", "no"),
            *("--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port())),
            *script,
        ]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=_env(), timeout=LAUNCH_TIMEOUT_S, cwd=REPO
    )


def writer_problems(proc: subprocess.CompletedProcess, out: Path, summary: str) -> list[str]:
    """What shows that more than one process wrote, or that the run failed; [] if nothing.

    ``out`` must be the only entry of its parent directory when the run started: a process
    that saves leaves one checkpoint there, a second one either fails on the now used
    directory or leaves its temporary directory; each that reports prints ``summary``.
    """
    from rlaif.backends.checkpoints import is_checkpoint

    problems = []
    if proc.returncode != 0:
        problems.append(f"exit status {proc.returncode}: {proc.stderr[-3000:]}")
    printed = proc.stdout.count(summary)
    if printed != 1:
        problems.append(f"the summary {summary!r} printed {printed} times")
    others = sorted(p.name for p in out.parent.iterdir() if p != out)
    if others:
        problems.append(f"beside the checkpoint: {others}")
    if not is_checkpoint(out):
        found = sorted(p.name for p in out.iterdir()) if out.is_dir() else "nothing"
        problems.append(f"{out} is no complete checkpoint: {found}")
    return problems


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def prefs(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("data") / "prefs.jsonl", P_VALUES)


def _dpo(tmp_path: Path, name: str, tiny: Path, prefs: Path, processes: int, batch: int, seed=0):
    """One DPO run into ``tmp_path/name/policy``, logging its batches: (process, out, logs)."""
    out, logs = tmp_path / name / "policy", tmp_path / f"{name}-batches"
    logs.mkdir(parents=True)
    out.parent.mkdir()
    args = ["train", "dpo", "--data", str(prefs), "--model", f"hf:{tiny}", "--out", str(out)]
    args += ["--batch-size", str(batch), "--seed", str(seed), *DPO_ARGS]
    proc = launch(args, processes, switches=("--batch-log", str(logs)))
    batches = {
        int(f.stem.split("-")[1]): [json.loads(line) for line in f.read_text().splitlines()]
        for f in logs.glob("rank-*.jsonl")
    }
    return proc, out, batches


def _max_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def test_who_is_main_before_the_process_group_starts(monkeypatch):
    """Before the trainer starts torch.distributed, the launcher's RANK and WORLD_SIZE tell."""
    from rlaif.train import distributed

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.is_main_process() and distributed.world_size() == 1
    assert distributed.batch_record(4)["global_batch_size"] == 4
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert not distributed.is_main_process() and distributed.rank() == 1
    assert distributed.batch_record(4, grad_accum=2) == {
        "world_size": 3,
        "per_device_batch_size": 4,
        "gradient_accumulation_steps": 2,
        "global_batch_size": 24,
    }


def test_tiny_model_has_no_dropout(tiny):
    """The equality below needs deterministic steps: nothing random in the forward pass."""
    import torch

    from rlaif.train.models import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(f"hf:{tiny}")
    assert model.config.attention_dropout == 0.0
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))


def test_dpo_on_two_processes_matches_one_process_of_the_global_batch(tmp_path, tiny, prefs):
    from rlaif.train.models import load_model_and_tokenizer

    one, one_out, one_batches = _dpo(tmp_path, "one", tiny, prefs, processes=1, batch=4)
    assert one.returncode == 0, one.stderr
    two, two_out, two_batches = _dpo(tmp_path, "two", tiny, prefs, processes=2, batch=2)
    assert writer_problems(two, two_out, "policy: hf:") == []

    # the data: each step, the two processes' shards are disjoint and together are the
    # single process's batch of 4 (same seed, same sampler order)
    assert sorted(two_batches) == [0, 1] and len(one_batches[0]) == 4
    for step, batch in enumerate(one_batches[0]):
        shard0, shard1 = two_batches[0][step], two_batches[1][step]
        assert len(shard0) == len(shard1) == 2
        assert sorted(shard0 + shard1) == sorted(batch), f"step {step + 1}"
    assert len(two_batches[0]) == len(two_batches[1]) == 4

    # the weights: float32 rounding apart, the same; and training did move them
    moved = _max_diff(tiny, one_out)
    diff = _max_diff(one_out, two_out)
    print(f"max |2x2 - 1x4| = {diff:.3g}; max movement from the start = {moved:.3g}")
    assert diff <= TOLERANCE < moved / 100

    # train.json: the world size and the global batch; the checkpoint loads
    info = json.loads((two_out / "train.json").read_text())
    assert info["world_size"] == 2 and info["per_device_batch_size"] == 2
    assert info["global_batch_size"] == 4 and info["gradient_accumulation_steps"] == 1
    assert info["steps"] == 4
    single = json.loads((one_out / "train.json").read_text())
    assert single["world_size"] == 1 and single["global_batch_size"] == 4
    # the summary says how the global batch was made (a launch of fewer processes shows)
    assert "4 (2 x 2 processes)" in two.stdout and "4 (4 x 1 process)" in one.stdout
    model, tokenizer = load_model_and_tokenizer(f"hf:{two_out}")
    assert model.num_parameters() > 0 and tokenizer.chat_template

    # the control: another seed (another data order) on one process lands outside the
    # tolerance, so the tolerance tells a different training apart
    other, other_out, _ = _dpo(tmp_path, "seed1", tiny, prefs, processes=1, batch=4, seed=1)
    assert other.returncode == 0, other.stderr
    control = _max_diff(one_out, other_out)
    print(f"max |1x4 seed 0 - 1x4 seed 1| = {control:.3g}")
    assert control > TOLERANCE


def test_every_rank_writing_is_caught(tmp_path, tiny, prefs):
    """With every process taking itself for the main one, :func:`writer_problems` objects.

    Depending on timing the second writer fails on the used ``--out`` (non-zero exit) or
    both print their summary; either is a problem found.
    """
    out = tmp_path / "run" / "policy"
    out.parent.mkdir()
    args = ["train", "dpo", "--data", str(prefs), "--model", f"hf:{tiny}", "--out", str(out)]
    proc = launch([*args, "--batch-size", "2", *DPO_ARGS], switches=("--every-rank-writes",))
    problems = writer_problems(proc, out, "policy: hf:")
    print("\n".join(problems))
    assert problems


def test_reward_model_on_two_processes_matches_one_process(tmp_path, tiny, prefs):
    """rlaif's own reward loop shards each seeded global batch by rank; 2 x 2 equals 1 x 4."""
    from rlaif.train.reward import RewardModel

    runs = {}
    for processes, batch in ((1, 4), (2, 2)):
        out = tmp_path / f"run-{processes}" / "rm"
        out.parent.mkdir()
        args = ["train", "reward", "--data", str(prefs), "--model", f"hf:{tiny}"]
        args += ["--out", str(out), "--batch-size", str(batch), "--epochs", "2"]
        args += ["--held-out", "0.25", "--learning-rate", "1e-3", "--quiet"]
        proc = launch(args, processes)
        assert writer_problems(proc, out, "reward model: ") == []
        runs[processes] = out, json.loads((out / "train.json").read_text())
    (one_out, one), (two_out, two) = runs[1], runs[2]
    assert two["world_size"] == 2 and two["global_batch_size"] == 4
    # 6 training pairs (2 of 8 prompts held out) in global batches of 4: 2 steps an epoch
    assert two["pairs"]["train"] == 6 and two["steps"] == one["steps"] == 4
    assert two["held_out"]["n"] == 2
    # the logged loss and accuracy are the global batch's, so they are the single process's
    assert two["losses"] == pytest.approx(one["losses"], abs=1e-6)
    assert two["accuracies"] == one["accuracies"]
    diff = _max_diff(one_out, two_out)
    print(f"reward model: max |2x2 - 1x4| = {diff:.3g}")
    assert diff <= TOLERANCE
    assert RewardModel.load(str(two_out)).score(["Hi"], ["Hello."])


def test_grpo_with_a_rule_judge_on_two_processes(tmp_path, tiny):
    out = tmp_path / "run" / "grpo"
    out.parent.mkdir()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Name a fruit.\nName a colour.\nName a city.\nName a river.\n")
    args = ["train", "grpo", "--data", str(prompts), "--model", f"hf:{tiny}", "--out", str(out)]
    args += ["--judge", "rule:max_words=20", "--max-steps", "2", "--prompts-per-step", "1"]
    args += ["--num-generations", "2", "--max-completion-length", "8", "--learning-rate", "1e-2"]
    proc = launch([*args, "--drift-prompts", "0", "--quiet"])
    assert writer_problems(proc, out, "grpo: 2 step(s)") == []
    info = json.loads((out / "train.json").read_text())
    assert info["world_size"] == 2 and info["per_device_batch_size"] == 2
    assert info["global_batch_size"] == 4
    assert len(info["steps"]) == 2 and info["losses_finite"]


def test_loop_hands_its_dpo_to_a_launcher(tmp_path, tiny, prefs, monkeypatch):
    """``rlaif loop --train-launcher``: the round's DPO runs as ``LAUNCHER -m rlaif train dpo``."""
    import dataclasses
    import shlex
    import shutil

    from rlaif.backends.checkpoints import is_checkpoint
    from rlaif.errors import RunError
    from rlaif.loop import LAUNCH_LOG, LoopConfig, _stage_dpo

    for name, value in _env().items():
        monkeypatch.setenv(name, value)
    rd = tmp_path / "loop" / "round-1"
    (rd / "run").mkdir(parents=True)
    shutil.copy(prefs, rd / "run" / "preferences.jsonl")
    launcher = shlex.join(
        [
            *(sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"),
            *("--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"),
            *("--dynamo_backend", "no", "--main_process_ip", "127.0.0.1"),
            *("--main_process_port", str(_free_port())),
        ]
    )
    config = LoopConfig(
        out=tmp_path / "loop",
        policy=f"hf:{tiny}",
        dpo_steps=2,
        dpo_batch_size=2,
        train_launcher=launcher,
    )
    assert config.identity()["train_launcher"] == launcher
    assert "train_launcher" not in dataclasses.replace(config, train_launcher=None).identity()
    info = _stage_dpo(config, rd, f"hf:{tiny}", 1, False)
    assert info["world_size"] == 2 and info["global_batch_size"] == 4 and info["steps"] == 2
    assert is_checkpoint(rd / "policy")
    log = (rd / LAUNCH_LOG).read_text()
    assert log.startswith(launcher + " -m rlaif train dpo --data ")
    assert log.count("policy: hf:") == 1

    # a launch that fails is one RunError that names the log and quotes the child's error
    # (here: the round's policy directory is already used)
    one_process = dataclasses.replace(config, train_launcher=sys.executable)
    with pytest.raises(RunError, match=r"(?s)exit status 1.*dpo-launch\.log.*already exists"):
        _stage_dpo(one_process, rd, f"hf:{tiny}", 1, False)
