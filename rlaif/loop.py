"""Iterative RLAIF: generate -> label -> DPO -> evaluate, round after round.

Round i, in ``OUT/round-i/``:

1. ``run/``: the main job (:mod:`rlaif.pipeline`) on this round's prompts, answered by the
   current policy and labelled by the judge (``preferences.jsonl``);
2. ``policy/``: DPO (:mod:`rlaif.train.dpo`) from the current policy on those labels, in
   this process or, with ``train_launcher`` (``accelerate launch --num_processes 2``), as
   ``LAUNCHER -m rlaif train dpo ...`` in the processes the launcher starts;
3. ``winrate/``: the new policy against the current one on held-out prompts
   (:mod:`rlaif.evaluate.winrate`), judged by ``eval_judge`` (default: the loop's judge; a
   rule such as ``rule:words=8-40`` checks the rounds by a yardstick the training labels do
   not come from).

After more than one round, ``final-vs-start/winrate/`` plays the last round's policy against
the starting model on the same held-out prompts: the figure that says whether the loop as a
whole made the policy better. Beside every win rate the table shows the guards against a win
bought by broken answers (:mod:`rlaif.train.drift`): the policy's mean words and its shares of
near-empty and looping answers.

The policy of round i is the baseline of round i+1 (the self-rewarding-style iteration).
Round 1 compares like with like: a start from ``smollm2`` is evaluated against its converted
checkpoint (``hf:...``), the same weights through the same backend, so only DPO differs.

Each round takes a different slice of the training prompts (they wrap around when the pool
is used up); the held-out prompts are never trained on: ``--eval-prompts FILE``, or else the
last ``eval_n`` prompts of the pool are set aside.

Every stage is resumable and skipped once complete (``run.json``, a checkpoint, a
``metrics.json``), so the same command continues a killed loop, and a larger ``--rounds``
extends a finished one. ``loop.json``, ``rounds.md`` (the table of win rates) and
``rounds.png`` (the win rates with their intervals) are rewritten at the end of every invocation.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from rlaif.errors import InputError, RunError
from rlaif.evaluate.train_report import LOOP_FILE
from rlaif.evaluate.winrate import WinrateConfig
from rlaif.fileio import write_atomic, write_json_atomic
from rlaif.pipeline.config import RunConfig
from rlaif.prompts import Prompt, builtin_prompts_path, file_sha256, load_prompts
from rlaif.stats import pct
from rlaif.train.dpo import DPOSettings

TABLE_FILE = "rounds.md"
FIGURE_FILE = "rounds.png"
EVAL_PROMPTS_FILE = "eval_prompts.jsonl"
#: each round's slice of the training prompts, in its ``round-N/``
ROUND_PROMPTS_FILE = "prompts.jsonl"
#: the last round's policy against the starting model, when there is more than one round
FINAL_DIR = "final-vs-start"
#: a stage's settings class
S = TypeVar("S")


#: RunConfig field -> the LoopConfig field that sets it in every round's ``run/``
RUN_FIELDS = {
    name: name
    for name in (
        "judge",
        "constitution",
        "n_responses",
        "revision_rounds",
        "seed",
        "temperature",
        "max_tokens",
    )
}
#: DPOSettings field -> the LoopConfig field that sets it in every round's DPO
DPO_FIELDS = {
    "max_steps": "dpo_steps",
    "batch_size": "dpo_batch_size",
    "learning_rate": "dpo_learning_rate",
    "beta": "dpo_beta",
    "nll_weight": "dpo_nll_weight",
    "degenerate_chosen": "dpo_degenerate_chosen",
    "min_margin": "min_margin",
    "loss": "loss",
    "seed": "seed",
    "lora": "lora",
}
#: WinrateConfig field -> the LoopConfig field (or property) that sets it in every win rate
WINRATE_FIELDS = {
    "judge": "win_rate_judge",
    "constitution": "constitution",
    "seed": "seed",
    "max_tokens": "eval_max_tokens",
    "tie_margin": "tie_margin",
}


@dataclass
class LoopConfig:
    """Sizes and models of an iterative loop; defaults sized for the embedded model on a CPU.

    The loop's own fields (rounds, prompt slices, ...) sit beside the settings of the stages it
    drives, flat (``dpo_steps``, ``eval_max_tokens``): :meth:`run_config`,
    :meth:`dpo_settings` and :meth:`winrate_config` build each round's settings from them, and
    ``__post_init__`` builds all three once, so that a value any stage would refuse fails here,
    before any model loads. Where the loop does not size a setting for the CPU, its default is
    the stage's.
    """

    out: Path
    rounds: int = 2
    #: the starting policy: smollm2 or hf:DIR (DPO needs a transformers checkpoint)
    policy: str = "smollm2"
    judge: str = RunConfig.judge
    #: judge of the win rates (each round's and the final one); None: ``judge``. A rule gives
    #: a check that does not share the biases of the judge the loop trains on.
    eval_judge: str | None = None
    constitution: str = RunConfig.constitution
    #: training prompts (None: the built-in 32)
    prompts: str | None = None
    #: held-out prompts (None: the last ``eval_n`` of ``prompts`` are set aside)
    eval_prompts: str | None = None
    prompts_per_round: int = 8
    eval_n: int = 8
    n_responses: int = RunConfig.n_responses
    revision_rounds: int = 0
    #: longest response when generating training data
    max_tokens: int = 64
    temperature: float = RunConfig.temperature
    dpo_steps: int = 8
    dpo_batch_size: int = 2
    dpo_learning_rate: float = DPOSettings.learning_rate
    dpo_beta: float = DPOSettings.beta
    #: weight of the chosen responses' NLL in the DPO loss (see rlaif.train.dpo)
    dpo_nll_weight: float = DPOSettings.nll_weight
    #: "drop": DPO leaves out pairs whose chosen answer is cut off or looping (see
    #: rlaif.train.dpo.DPOSettings.degenerate_chosen); "keep": every pair as labelled
    dpo_degenerate_chosen: str = DPOSettings.degenerate_chosen
    min_margin: float = DPOSettings.min_margin
    #: DPO's loss: "auto" (hard for rule labels, soft for the judge model's), "soft" (targets
    #: p_chosen) or "hard" (every pair a sure win); see DPOSettings.loss
    loss: str = DPOSettings.loss
    lora: bool = DPOSettings.lora
    #: longest answer in the win-rate evaluation
    eval_max_tokens: int = 64
    tie_margin: float = WinrateConfig.tie_margin
    seed: int = 0
    #: "gguf": trained policies answer through their GGUF export and llama.cpp (about 4x
    #: faster; checkpoints the export refuses stay on transformers); "hf": transformers
    generate_with: str = "gguf"
    #: a command that starts processes (``accelerate launch --num_processes 2``): each
    #: round's DPO runs as ``LAUNCHER -m rlaif train dpo ...``; None: in this process
    train_launcher: str | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.eval_judge is not None and not self.eval_judge.strip():
            raise ValueError("eval_judge is empty; leave it out to judge the win rates by judge")
        for name in ("rounds", "prompts_per_round", "eval_n"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.generate_with not in ("gguf", "hf"):
            raise ValueError(f"generate_with must be gguf or hf, not {self.generate_with!r}")
        if self.train_launcher is not None and not shlex.split(self.train_launcher):
            raise ValueError("train_launcher is empty; leave it out to train in this process")
        # the stages' own checks (pairs to compare, loss, beta, tie margin, ...), before any
        # model loads, not when round 1 reaches them
        first = self.out / "round-1"
        self.run_config(first, self.policy)
        self.dpo_settings(first, self.policy)
        self.winrate_config(first, self.policy, self.policy)

    @property
    def win_rate_judge(self) -> str:
        """The judge of the win rates: ``eval_judge``, else the loop's ``judge``."""
        return self.eval_judge or self.judge

    def run_config(self, round_dir: Path, policy: str) -> RunConfig:
        """The settings of one round's main job: ``policy`` answers the round's prompts."""
        return self._build(
            RunConfig,
            RUN_FIELDS,
            out=round_dir / "run",
            prompts=str(round_dir / ROUND_PROMPTS_FILE),
            policy=policy,
        )

    def dpo_settings(self, round_dir: Path, model: str) -> DPOSettings:
        """The settings of one round's DPO: that round's preferences, into its ``policy/``."""
        return self._build(
            DPOSettings,
            DPO_FIELDS,
            data=str(round_dir / "run" / "preferences.jsonl"),
            out=round_dir / "policy",
            model=model,
        )

    def winrate_config(self, round_dir: Path, policy: str, baseline: str) -> WinrateConfig:
        """The settings of one win rate, into ``round_dir/winrate``, on the held-out prompts."""
        return self._build(
            WinrateConfig,
            WINRATE_FIELDS,
            out=round_dir / "winrate",
            prompts=str(self.out / EVAL_PROMPTS_FILE),
            policy=policy,
            baseline=baseline,
        )

    def _build(self, settings: type[S], fields: dict[str, str], **where: object) -> S:
        """``settings`` with ``fields`` (theirs -> ours) read from this config, and ``where``;
        a ValueError names the loop's field, e.g. dpo_steps rather than max_steps."""
        try:
            return settings(
                **{theirs: getattr(self, ours) for theirs, ours in fields.items()}, **where
            )
        except ValueError as e:
            message = str(e)
            for theirs, ours in fields.items():
                if message.startswith(theirs + " "):
                    message = ours + message.removeprefix(theirs)
                    break
            raise ValueError(message) from e

    def identity(self) -> dict:
        """What makes a loop directory this loop (everything but the number of rounds)."""
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        d.pop("rounds")
        d.pop("out")
        if not d["dpo_nll_weight"]:  # plain DPO, as every loop written before the setting
            d.pop("dpo_nll_weight")
        if d["dpo_degenerate_chosen"] == "keep":  # as every loop written before the setting
            d.pop("dpo_degenerate_chosen")
        # in this process, as every loop written before the setting; a launcher changes the
        # global batch (batch size x processes), so it is part of what the loop is
        if d["train_launcher"] is None:
            d.pop("train_launcher")
        if d["eval_judge"] in (None, d["judge"]):  # as every loop written before the setting
            d.pop("eval_judge")
        for key in ("prompts", "eval_prompts"):
            if d[key]:
                d[key + "_sha256"] = file_sha256(d[key])
        return d


#: called with one line saying what the loop does next
LogFn = Callable[[str], None]


def split_prompts(config: LoopConfig) -> tuple[list[Prompt], list[Prompt]]:
    """(training pool, held-out prompts); InputError when the pool would be empty."""
    pool = load_prompts(config.prompts or builtin_prompts_path())
    if config.eval_prompts:
        held = load_prompts(config.eval_prompts, limit=config.eval_n)
        held_texts = {p.text for p in held}
        pool = [p for p in pool if p.text not in held_texts]
    else:
        if len(pool) <= config.eval_n:
            raise InputError(
                f"{config.prompts or 'the built-in prompts'}: {len(pool)} prompts; setting "
                f"aside --eval-n {config.eval_n} for evaluation leaves none to train on"
            )
        pool, held = pool[: -config.eval_n], pool[-config.eval_n :]
    if not pool:
        raise InputError("every training prompt is also a held-out prompt; nothing to train on")
    return pool, held


def round_prompts(pool: list[Prompt], round_no: int, per_round: int) -> list[Prompt]:
    """Round ``round_no``'s slice of the pool (1-based), wrapping around when it runs out."""
    start = (round_no - 1) * per_round
    n = min(per_round, len(pool))
    return [pool[(start + j) % len(pool)] for j in range(n)]


def _prompt_record(p: Prompt) -> dict:
    rec: dict = {"id": p.id}
    if p.is_chat:
        rec["messages"] = p.chat()
    else:
        rec["prompt"] = p.text
    if p.category:
        rec["category"] = p.category
    return rec


def _write_prompts(path: Path, prompts: list[Prompt]) -> None:
    """Write a prompts file once; RunError if one with other prompts is already there."""
    text = "".join(json.dumps(_prompt_record(p), ensure_ascii=False) + "\n" for p in prompts)
    if path.exists():
        if path.read_text(encoding="utf-8") != text:
            raise RunError(f"{path}: holds other prompts than this loop's; choose a new --out")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)


def _open_loop_dir(config: LoopConfig) -> None:
    out = config.out
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a directory; choose another --out")
    marker = out / LOOP_FILE
    identity = config.identity()
    if marker.exists():
        old = json.loads(marker.read_text(encoding="utf-8")).get("identity", {})
        if old != identity:
            # a setting left out of the identity is at its default: say which, not None
            shown = {"eval_judge": "(its --judge)"}
            diff = ", ".join(
                f"{k}: {old.get(k, shown.get(k))!r} -> {identity.get(k, shown.get(k))!r}"
                for k in sorted(set(old) | set(identity))
                if old.get(k) != identity.get(k)
            )
            raise RunError(f"{out}: holds a different loop ({diff}); choose a new --out")
    elif out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise RunError(f"{out}: not empty and not an rlaif loop directory; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        write_json_atomic(marker, {"identity": identity, "rounds": []})


def run_loop(
    config: LoopConfig, *, show_progress: bool = True, log: LogFn | None = None
) -> list[dict]:
    """Run (or continue) the loop; write ``loop.json``, ``rounds.md`` and ``rounds.png``;
    return one row a round."""
    from rlaif.backends import check_judge_spec
    from rlaif.backends.checkpoints import is_checkpoint, resolve_checkpoint
    from rlaif.constitution import load_constitution
    from rlaif.train.curves import rounds_png

    log = log or (lambda line: None)
    # Everything that can be wrong with the input is found before any model is loaded.
    pool, held = split_prompts(config)
    load_constitution(config.constitution)
    check_judge_spec(config.judge)  # a model string, or a rule:/python: scoring function
    if config.eval_judge is not None:
        check_judge_spec(config.eval_judge)
    if config.policy != "smollm2":
        resolve_checkpoint(config.policy)
    _open_loop_dir(config)
    _write_prompts(config.out / EVAL_PROMPTS_FILE, held)

    start = config.policy
    if start == "smollm2":
        log("converting the embedded model to a transformers checkpoint (once, then cached)")
        baseline = f"hf:{resolve_checkpoint('smollm2')}"
    else:
        baseline = start
    generator = start  # answers the round's prompts: the GGUF itself in round 1 (faster)
    fast = _generation_spec if config.generate_with == "gguf" else (lambda spec, log: spec)
    rows = []
    for i in range(1, config.rounds + 1):
        rd = config.out / f"round-{i}"
        _write_prompts(rd / ROUND_PROMPTS_FILE, round_prompts(pool, i, config.prompts_per_round))
        run_info = _stage_run(config, rd, fast(generator, log), i, show_progress, log)
        policy_dir = rd / "policy"
        if is_checkpoint(policy_dir):
            log(f"round {i}: DPO done before ({policy_dir})")
            train_info = _read_json(policy_dir / "train.json")
        else:
            log(f"round {i}: DPO from {baseline} on {rd / 'run' / 'preferences.jsonl'}")
            train_info = _stage_dpo(config, rd, baseline, i, show_progress)
        policy = f"hf:{policy_dir}"
        metrics = _stage_winrate(
            config, rd, fast(policy, log), fast(baseline, log), show_progress, log, i
        )
        rows.append(_row(i, policy, baseline, run_info, train_info, metrics))
        baseline = generator = policy
    final = None
    if len(rows) > 1:  # round 1 already played the start; later rounds play their predecessor
        final_rd = config.out / FINAL_DIR
        start_model = rows[0]["baseline"]
        metrics = _stage_winrate(
            config,
            final_rd,
            fast(rows[-1]["policy"], log),
            fast(start_model, log),
            show_progress,
            log,
            "final",
        )
        final = _row("final", rows[-1]["policy"], start_model, {}, {}, metrics)
    loop = {"identity": config.identity(), "rounds": rows, "final_vs_start": final}
    write_json_atomic(config.out / LOOP_FILE, loop)
    (config.out / TABLE_FILE).write_text(rounds_table(rows, final) + "\n", encoding="utf-8")
    (config.out / FIGURE_FILE).write_bytes(rounds_png(rows))
    return rows


def _generation_spec(spec: str, log: LogFn) -> str:
    """``gguf:DIR`` for an ``hf:DIR`` the GGUF export accepts (exported here, once), else
    ``spec`` as it is: the model string that answers prompts fastest."""
    from rlaif.backends.gguf_export import export_gguf
    from rlaif.errors import ModelSpecError

    if not spec.startswith("hf:"):
        return spec
    try:
        export_gguf(Path(spec[3:]).expanduser())
    except ModelSpecError as e:
        log(f"{spec} answers through transformers: {e}")
        return spec
    return "gguf:" + spec[3:]


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _stage_run(config: LoopConfig, rd: Path, policy: str, i: int, show, log) -> dict:
    from rlaif.pipeline.job import run

    done = rd / "run" / "run.json"
    if done.is_file():
        log(f"round {i}: labelled data done before ({done.parent})")
        return _read_json(done)
    log(f"round {i}: generate with {policy}, label with {config.judge}")
    return run(config.run_config(rd, policy), show_progress=show).info


def _stage_dpo(config, rd: Path, model: str, i: int, show) -> dict:
    from rlaif.train.dpo import train_dpo

    settings = config.dpo_settings(rd, model)
    if config.train_launcher:
        return _launch_dpo(config.train_launcher, settings, rd, i)
    try:
        return train_dpo(settings, show_progress=show)
    except InputError as e:
        raise RunError(
            f"round {i}: no usable training pairs ({e}); raise --prompts-per-round or "
            "--n-responses, or lower --min-margin"
        ) from e


def dpo_command(launcher: str, settings) -> list[str]:
    """``LAUNCHER -m rlaif train dpo ...`` for these :class:`~rlaif.train.dpo.DPOSettings`.

    The launcher's words come first (``accelerate launch --num_processes 2``, ``torchrun
    --nproc_per_node 2``); ``-m rlaif`` is the module every process runs.
    """
    cmd = [*shlex.split(launcher), "-m", "rlaif", "train", "dpo"]
    cmd += ["--data", settings.data, "--out", str(settings.out), "--model", settings.model]
    for field in (*DPO_FIELDS, "max_length"):
        value, option = getattr(settings, field), "--" + field.replace("_", "-")
        if isinstance(value, bool):
            cmd += [option] if value else []
        else:
            cmd += [option, str(value)]
    # the loop measures drift itself, beside each win rate
    return [*cmd, "--drift-prompts", "0", "--quiet"]


#: the file beside ``policy/`` that keeps what a launched DPO printed
LAUNCH_LOG = "dpo-launch.log"


def _launch_dpo(launcher: str, settings, rd: Path, i: int) -> dict:
    """Run the round's DPO through the launcher; its ``train.json``, or RunError on failure.

    What the processes print goes to ``rd/dpo-launch.log`` (the command on its first line).
    """
    cmd = dpo_command(launcher, settings)
    log_path = rd / LAUNCH_LOG
    with log_path.open("w", encoding="utf-8") as log:
        log.write(shlex.join(cmd) + "\n")
        log.flush()
        try:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
        except OSError as e:
            raise RunError(
                f"round {i}: could not start --train-launcher {launcher!r} ({e}); give a "
                "command on the PATH, e.g. 'accelerate launch --num_processes 2'"
            ) from e
    if proc.returncode != 0:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        tail = "\n".join((errors or lines)[-5:])
        raise RunError(
            f"round {i}: DPO through --train-launcher failed (exit status {proc.returncode}); "
            f"the full output is in {log_path}; it ends:\n{tail}"
        )
    info = _read_json(settings.out / "train.json")
    if not info:
        raise RunError(f"round {i}: the launched DPO exited 0 but wrote no {settings.out}")
    return info


def _stage_winrate(config: LoopConfig, rd: Path, policy, baseline, show, log, i) -> dict:
    from rlaif.evaluate.winrate import load_metrics, run_winrate_with_progress

    out = rd / "winrate"
    metrics = load_metrics(out)
    if metrics and metrics.get("policy") == policy and metrics.get("baseline") == baseline:
        log(f"round {i}: win rate done before ({out})")
        return metrics
    log(f"round {i}: win rate of {policy} against {baseline}, judged by {config.win_rate_judge}")
    return run_winrate_with_progress(
        config.winrate_config(rd, policy, baseline), show_progress=show
    )


def _row(i, policy, baseline, run_info, train_info, m) -> dict:
    counts = run_info.get("counts", {})
    return {
        "round": i,
        "policy": policy,
        "baseline": baseline,
        "pairs": counts.get("preferences"),
        "low_margin": counts.get("low_margin"),
        "mean_margin": (run_info.get("stats") or {}).get("mean_margin"),
        "dpo_steps": train_info.get("steps"),
        "dpo_final_loss": train_info.get("final_loss"),
        "n": m["n"],
        "wins": m["wins"],
        "losses": m["losses"],
        "ties": m["ties"],
        "unreadable": m["unreadable"],
        "win_rate": m["win_rate"],
        "win_rate_ci": m["win_rate_ci"],
        "soft_win_rate": m["soft_win_rate"],
        "guards": m.get("guards"),
    }


def _guard_cells(guards: dict | None) -> str:
    """Two table cells: mean words of policy / baseline; the policy's near-empty, looping and
    cut-off shares (empty cells for rows written before guards existed; "-" for a share not
    recorded then)."""
    if not guards or not guards["policy"].get("n"):
        return "- | -"
    p, b = guards["policy"], guards["baseline"]
    cut = "-" if "truncated" not in p else f"{100 * p['truncated']:.0f}%"
    return (
        f"{p['mean_words']:.0f} / {b['mean_words']:.0f} "
        f"| {100 * p['near_empty']:.0f}%, {100 * p['looping']:.0f}%, {cut}"
    )


def rounds_table(rows: list[dict], final: dict | None = None) -> str:
    """A markdown table of the rounds: data, DPO loss, win rate against the previous policy;
    with ``final``, a last line: the last round's policy against the starting model."""

    def num(x, fmt="{:.4f}"):
        return "-" if x is None else fmt.format(x)

    lines = [
        "| round | pairs | DPO loss | win rate | 95% CI | W / L / T | n | soft win rate "
        "| words policy / baseline | near-empty, looping, cut off |",
        "|---:|---:|---:|---:|---|---|---:|---:|---|---|",
    ]
    for r in [*rows, *([final] if final else [])]:
        ci = r["win_rate_ci"]
        lines.append(
            f"| {r['round']} | {num(r['pairs'], '{}')} | {num(r['dpo_final_loss'])} "
            f"| {pct(r['win_rate'])} | {'-' if ci is None else f'{pct(ci[0])} - {pct(ci[1])}'} "
            f"| {r['wins']} / {r['losses']} / {r['ties']} | {r['n']} | {pct(r['soft_win_rate'])} "
            f"| {_guard_cells(r.get('guards'))} |"
        )
    return "\n".join(lines)
