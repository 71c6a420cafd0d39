"""DPO on 1 process and on N under ``accelerate launch``: the same global batch, timed.

Each run is ``rlaif train dpo`` on the same synthetic preference pairs, the same number of
steps and the same global batch (``--global-batch``): one process with all of it, then N
processes with ``global / N`` each (``accelerate launch --multi_gpu --num_processes N``;
on the CPU, with CUDA hidden, that is torchrun's processes over gloo). It prints, per run,
the wall time of the whole command (start-up, model load, reference pass, training, save) and
of the training loop alone (``train_loop_seconds`` of ``train.json``), and the ratio of each
to the single process's. It measures; it asserts nothing. On a shared 2-core machine expect
no speed-up: the processes split the same cores, and each adds its own start-up.

    .venv/bin/python benchmarks/train_scaling.py                       # tiny model, 1 vs 2
    .venv/bin/python benchmarks/train_scaling.py --model smollm2 --steps 3 --global-batch 4

``--model tiny`` (the default) is the tests' one-layer random llama with the real tokenizer.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_pairs(path: Path, n: int) -> Path:
    """``n`` synthetic preference pairs with labels spread over (0.5, 1)."""
    with path.open("w") as f:
        for i in range(n):
            rec = {
                "prompt": f"Question {i}: how do I boil an egg?",
                "chosen": f"Put egg {i} in boiling water for nine minutes, then cool it.",
                "rejected": f"Eggs {i} cannot be boiled.",
                "p_chosen": 0.55 + 0.4 * (i % 10) / 10,
            }
            f.write(json.dumps(rec) + "\n")
    return path


def model_spec(name: str, work: Path) -> str:
    """The ``--model`` string: the tests' tiny checkpoint, or what the user named."""
    if name != "tiny":
        return name
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_model import tiny_checkpoint

    return f"hf:{tiny_checkpoint(work / 'tiny')}"


def run(processes: int, args, model: str, data: Path, out: Path, gpu: bool) -> dict:
    """One timed ``rlaif train dpo``: wall seconds and what ``train.json`` says."""
    per_process = args.global_batch // processes
    train = ["-m", "rlaif", "train", "dpo", "--data", str(data), "--model", model]
    train += ["--out", str(out), "--batch-size", str(per_process), "--max-steps", str(args.steps)]
    train += ["--drift-prompts", "0", "--quiet"]
    if processes == 1:
        cmd = [sys.executable, *train]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
        cmd += ["--num_processes", str(processes), "--num_machines", "1"]
        cmd += ["--mixed_precision", "no", "--dynamo_backend", "no"]
        cmd += ["--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port())]
        cmd += train
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if not gpu:
        env.update(CUDA_VISIBLE_DEVICES="", RLAIF_DEVICE="cpu")
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    info = json.loads((out / "train.json").read_text())
    return {
        "processes": processes,
        "per_process": per_process,
        "global": info["global_batch_size"],
        "world_size": info["world_size"],
        "wall": wall,
        "loop": info["train_loop_seconds"],
    }


def main() -> None:
    """Parse the options, run 1 and N processes ``--rounds`` times, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny, smollm2 or hf:DIR")
    parser.add_argument("--processes", type=int, default=2, help="N to compare with 1")
    parser.add_argument("--global-batch", type=int, default=8, help="pairs per step, in all")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="repeat 1 and N this often")
    parser.add_argument("--gpu", action="store_true", help="let the processes see GPUs")
    args = parser.parse_args()
    if args.global_batch % args.processes:
        parser.error("--global-batch must be a multiple of --processes")
    with tempfile.TemporaryDirectory(prefix="rlaif-scaling-") as tmp:
        work = Path(tmp)
        data = write_pairs(work / "pairs.jsonl", args.pairs)
        model = model_spec(args.model, work)
        rows = []
        for r in range(args.rounds):
            for n in (1, args.processes):
                rows.append(run(n, args, model, data, work / f"out-{r}-{n}", args.gpu))
    threads = os.environ.get("RLAIF_N_THREADS", "default")
    print(f"model {args.model}, {args.steps} steps, {os.cpu_count()} cores, threads {threads}")
    print(
        "| processes | per process | global batch | wall s | x 1 process | loop s | x 1 process |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for i, row in enumerate(rows):
        base = rows[i - i % 2]  # the single-process run of the same round
        print(
            f"| {row['world_size']} | {row['per_process']} | {row['global']} | {row['wall']:.1f} "
            f"| {row['wall'] / base['wall']:.2f} | {row['loop']:.1f} "
            f"| {row['loop'] / base['loop']:.2f} |"
        )


if __name__ == "__main__":
    main()
