"""``rlaif doctor``: versions, llama.cpp's compiled CPU features next to the CPU's, one forward
pass of the embedded model in a child process."""

from __future__ import annotations

import sys

import click


@click.command()
def doctor() -> None:
    """Check that this installation can run the main job on this machine.

    Prints package versions, the SIMD features llama.cpp was compiled with next to those the
    CPU reports, and runs one forward pass of the embedded model in a child process, so that a
    crash (e.g. SIGILL from an instruction the CPU traps) becomes a message with the command
    that fixes it. Exits 1 when something the main job needs is broken.
    """
    from rlaif.doctor import SHOWN_CPU_FLAGS, diagnose

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
