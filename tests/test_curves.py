"""Training curves and loop win-rate figures (:mod:`rlaif.train.curves`), ``save_policy``'s
binary extra files, and ``rlaif report`` on a checkpoint and a loop directory, run as the real
console script on hand-written ``train.json`` / ``loop.json`` files shaped like the trainers'."""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
from pathlib import Path

from rlaif.train.curves import (
    curve_panels,
    rounds_figure,
    rounds_png,
    training_curves_figure,
    training_curves_png,
)
from rlaif.train.models import save_policy

RLAIF = Path(sys.executable).with_name("rlaif")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DATA_URI = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def dpo_info(steps: int = 6) -> dict:
    """A ``train.json`` as ``train_dpo`` writes it (numbers from a real 6-step run's shape)."""
    losses = [0.6931 - 0.004 * i for i in range(steps)]
    return {
        "method": "dpo",
        "settings": {
            "data": "runs/demo/preferences.jsonl",
            "out": "ckpt/dpo",
            "model": "smollm2",
            "epochs": 1,
            "max_steps": steps,
            "batch_size": 2,
            "learning_rate": 5e-06,
            "beta": 0.1,
            "max_length": 384,
            "min_margin": 0.0,
            "loss": "soft",
            "lora": False,
            "seed": 0,
        },
        "pairs": {
            "read": 16,
            "kept": 14,
            "dropped_low_margin": 2,
            "ties": 0,
            "mean_target": 0.5071,
        },
        "steps": steps,
        "losses": losses,
        "final_loss": losses[-1],
        "last_step": {
            "rewards/chosen": 0.0121,
            "rewards/rejected": -0.0034,
            "rewards/accuracies": 0.5,
            "rewards/margins": 0.0155,
            "logps/chosen": -112.4,
            "logps/rejected": -98.7,
        },
        "step_metrics": [
            {
                "step": i + 1,
                "rewards/accuracies": [0.0, 0.5, 0.5, 1.0][i % 4],
                "rewards/margins": 0.003 * i,
            }
            for i in range(steps)
        ],
        "train_seconds": 41.37,
        "train_loop_seconds": 30.2,
        "train_loop_cpu_seconds": 58.9,
        "train_tokens": 9876,
        "format": "conversational",
        "train_prompts": ["a1b2c3", "d4e5f6"],
    }


def grpo_info(kl: bool = True) -> dict:
    """A ``train.json`` as ``train_grpo`` writes it (``kl`` is None when beta is 0)."""
    steps = [
        {
            "step": i + 1,
            "loss": 0.01 * (-1) ** i,
            "reward": -0.2 + 0.05 * i,
            "reward_std": 0.3,
            "kl": 0.001 * i if kl else None,
            "completions/mean_length": 40.0,
        }
        for i in range(4)
    ]
    return {
        "method": "grpo",
        "settings": {"model": "smollm2", "out": "ckpt/grpo", "max_steps": 4, "beta": 0.04},
        "steps": steps,
        "final_loss": steps[-1]["loss"],
        "losses_finite": True,
        "first_reward": steps[0]["reward"],
        "last_reward": steps[-1]["reward"],
        "prompts": 8,
        "time_s": 95.3,
        "train_prompts": [],
    }


def reward_info(accuracies: bool = True) -> dict:
    """A ``train.json`` as ``train_reward`` writes it (``accuracies``: the per-step batch
    accuracy, absent from checkpoints written before it was logged)."""
    losses = [0.69, 0.67, 0.66, 0.61, 0.6]
    held = {
        "n": 4,
        "accuracy": 0.5,
        "accuracy_ci": [0.0, 1.0],
        "brier": 0.01,
        "brier_constant_half": 0.012,
        "ece": 0.05,
        "cross_entropy": 0.69,
        "mean_p_model": 0.5,
        "mean_p_label": 0.52,
    }
    info = {
        "method": "reward",
        "settings": {"data": "prefs.jsonl", "out": "ckpt/rm", "model": "smollm2"},
        "pairs": {"total": 20, "train": 16, "held_out": 4},
        "steps": len(losses),
        "losses": losses,
        "final_loss": losses[-1],
        "held_out_before": held,
        "held_out": {**held, "accuracy": 0.75, "accuracy_ci": [0.5, 1.0]},
        "train_seconds": 12.5,
        "train_loop_seconds": 10.0,
        "train_loop_cpu_seconds": 19.0,
        "train_tokens": 4000,
        "train_prompts": [],
    }
    if accuracies:
        info["accuracies"] = [0.5, 0.25, None, 0.75, 1.0]
    return info


def loop_json() -> dict:
    """A ``loop.json`` as ``run_loop`` writes it: two rounds, the second with no CI."""
    rows = []
    for i, (wr, ci) in enumerate(((0.5625, [0.375, 0.75]), (0.4375, None)), start=1):
        rows.append(
            {
                "round": i,
                "policy": f"hf:loop/round-{i}/policy",
                "baseline": "hf:base" if i == 1 else f"hf:loop/round-{i - 1}/policy",
                "pairs": 16,
                "low_margin": 0,
                "mean_margin": 0.007,
                "dpo_steps": 8,
                "dpo_final_loss": 0.6902,
                "n": 8,
                "wins": 4,
                "losses": 3,
                "ties": 1,
                "unreadable": 0,
                "win_rate": wr,
                "win_rate_ci": ci,
                "soft_win_rate": 0.503,
            }
        )
    identity = {
        "policy": "smollm2",
        "judge": "smollm2",
        "eval_judge": "rule:words=8-40",
        "prompts_per_round": 8,
        "dpo_steps": 8,
    }
    return {"identity": identity, "rounds": rows}


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


# -- figures -------------------------------------------------------------------------------------
def test_dpo_curves_have_loss_accuracy_and_margin_panels():
    info = dpo_info()
    assert [p.key for p in curve_panels(info)] == ["loss", "rewards/accuracies", "rewards/margins"]
    fig = training_curves_figure(info)
    assert len(fig.axes) == 3
    assert titles(fig)[0] == "DPO loss" and "accuracy" in titles(fig)[1]
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_ydata()) == info["losses"]
    assert training_curves_png(info).startswith(PNG_MAGIC)


def test_dpo_info_without_step_metrics_draws_the_loss_alone():
    info = dpo_info()
    del info["step_metrics"]  # a checkpoint written before they were kept
    assert [p.key for p in curve_panels(info)] == ["loss"]
    assert training_curves_png(info).startswith(PNG_MAGIC)


def test_long_run_gets_a_moving_average():
    info = dpo_info(steps=40)
    fig = training_curves_figure(info)
    assert len(fig.axes[0].get_lines()) == 2  # per step and the running mean


def test_grpo_curves_have_loss_reward_and_kl_panels():
    fig = training_curves_figure(grpo_info())
    assert [p.key for p in curve_panels(grpo_info())] == ["loss", "reward", "kl"]
    assert len(fig.axes) == 3 and titles(fig)[0] == "GRPO loss"
    assert fig.axes[1].collections, "the reward spread band is drawn"
    assert training_curves_png(grpo_info()).startswith(PNG_MAGIC)
    # beta = 0: TRL logs no KL, so there is no KL panel
    assert [p.key for p in curve_panels(grpo_info(kl=False))] == ["loss", "reward"]


def test_reward_curves_loss_and_accuracy():
    assert [p.key for p in curve_panels(reward_info())] == ["loss", "accuracy"]
    acc = curve_panels(reward_info())[1]
    assert acc.steps == [1, 2, 4, 5]  # a batch of ties only has no accuracy
    assert [p.key for p in curve_panels(reward_info(accuracies=False))] == ["loss"]
    assert len(training_curves_figure(reward_info()).axes) == 2


def test_non_finite_losses_are_left_out_and_counted():
    info = dpo_info()
    info["losses"][2] = math.nan
    info["losses"][3] = math.inf
    loss = curve_panels(info)[0]
    assert loss.missing == 2 and len(loss.values) == 4
    fig = training_curves_figure(info)
    assert "2 non-finite steps not drawn" in titles(fig)[0]
    assert training_curves_png(info).startswith(PNG_MAGIC)


def test_nothing_logged_still_draws():
    info = {"method": "dpo", "losses": [], "steps": 0}
    assert curve_panels(info) == []
    assert training_curves_png(info).startswith(PNG_MAGIC)


def test_rounds_figure_win_rate_with_interval():
    rows = loop_json()["rounds"]
    fig = rounds_figure(rows)
    (ax,) = fig.axes
    bars = ax.containers[0]  # the errorbar container
    data_line = bars.lines[0]
    assert list(data_line.get_ydata()) == [0.5625, 0.4375]
    assert list(data_line.get_xdata()) == [1, 2]
    assert rounds_png(rows).startswith(PNG_MAGIC)
    assert rounds_png([]).startswith(PNG_MAGIC)


# -- save_policy ---------------------------------------------------------------------------------
class _Saves:
    """Stands in for a model and a tokenizer: save_pretrained writes one file."""

    def __init__(self, name: str) -> None:
        self.name = name

    def save_pretrained(self, path) -> None:
        (Path(path) / self.name).write_text("{}")


def test_save_policy_writes_bytes_and_text_extras(tmp_path):
    png = training_curves_png(dpo_info())
    out = save_policy(
        _Saves("config.json"),
        _Saves("tokenizer.json"),
        tmp_path / "ckpt",
        extra={"train.json": '{"é": 1}\n', "training_curves.png": png},
    )
    assert (out / "training_curves.png").read_bytes() == png
    assert (out / "train.json").read_text(encoding="utf-8") == '{"é": 1}\n'


# -- rlaif report, as the console script ---------------------------------------------------------
def report(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(RLAIF), "report", str(directory)], capture_output=True, text=True, timeout=300
    )


def images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in DATA_URI.findall(html)]


def test_report_on_a_checkpoint_directory(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "train.json").write_text(json.dumps(dpo_info(), indent=2))
    drift = {
        "prompts": 8,
        "max_new_tokens": 64,
        "base": {"n": 8, "mean_words": 41.5, "near_empty": 0.0, "looping": 0.125},
        "policy": {"n": 8, "mean_words": 39.0, "near_empty": 0.0, "looping": 0.25},
        "changed": 0.375,
        "kl": {"per_token": 0.0123, "per_answer": 0.51},
        "samples": [{"prompt": "Boil an egg?", "base": "Nine minutes.", "policy": "Ten <b>"}],
    }
    (ckpt / "drift.json").write_text(json.dumps(drift))
    proc = report(ckpt)
    assert proc.returncode == 0, proc.stderr
    path = ckpt / "report.html"
    assert proc.stdout.strip() == str(path) and path.is_file()
    html = path.read_text(encoding="utf-8")
    (png,) = images(html)
    assert png.startswith(PNG_MAGIC)
    assert "rlaif training report" in html
    assert "14 kept of 16 read (2 below --min-margin)" in html
    assert "0.6931" in html and "0.6731" in html  # first and final loss
    assert "41.4 s" in html and "9,876" in html  # time and tokens
    assert "learning_rate" in html and "5e-06" in html  # the settings
    assert "rewards/margins" in html  # TRL's last-step metrics
    assert "Drift from the starting model" in html and "per_token 0.0123" in html
    assert "Ten &lt;b&gt;" in html  # sample text escaped
    assert "use it as" not in html  # no weights here, so no hf: line


def test_report_on_grpo_and_reward_checkpoints(tmp_path):
    for name, info, expect in (
        ("grpo", grpo_info(), "last mean reward"),
        ("rm", reward_info(), "Held-out pairs"),
    ):
        ckpt = tmp_path / name
        ckpt.mkdir()
        (ckpt / "train.json").write_text(json.dumps(info))
        proc = report(ckpt)
        assert proc.returncode == 0, proc.stderr
        html = (ckpt / "report.html").read_text(encoding="utf-8")
        assert len(images(html)) == 1 and expect in html
        assert "Drift" not in html  # no drift.json


def test_report_on_a_loop_directory(tmp_path):
    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / "loop.json").write_text(json.dumps(loop_json(), indent=2))
    policy = loop / "round-1" / "policy"
    policy.mkdir(parents=True)
    (policy / "train.json").write_text(json.dumps(dpo_info()))
    proc = report(loop)
    assert proc.returncode == 0, proc.stderr
    html = (loop / "report.html").read_text(encoding="utf-8")
    pngs = images(html)
    assert len(pngs) == 2 and all(p.startswith(PNG_MAGIC) for p in pngs)  # rounds, round 1's DPO
    assert "rlaif loop report" in html
    assert "56%" in html and "38% - 75%" in html  # round 1's win rate and its interval
    assert "44%" in html and "4 / 3 / 1" in html
    assert "hf:loop/round-2/policy" in html
    assert "judged by rule:words=8-40 in both orders" in html  # the win rates' judge, named


def test_report_on_an_unknown_directory_says_what_it_takes(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing to report")
    proc = report(tmp_path)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    for kind in ("metrics.json", "run.json", "loop.json", "train.json"):
        assert kind in err
    assert not (tmp_path / "report.html").exists()


def test_report_on_a_broken_train_json_is_one_line(tmp_path):
    (tmp_path / "train.json").write_text("{not json")
    proc = report(tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "train.json" in proc.stderr
