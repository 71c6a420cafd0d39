"""The installed llama.cpp runs on every x86-64 of the last decade (or every ARMv8), not only on
the machine that compiled it: a build for the build machine's CPU died with SIGILL on a VM that
advertised AMX and trapped it. These tests fail on such a build, on any machine."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlaif.cli.doctor import build_record, parse_system_info

RLAIF = shutil.which("rlaif", path=os.path.dirname(sys.executable))
X86 = platform.machine() in ("x86_64", "AMD64", "amd64")

# Registers and mnemonics that only AVX-512 (zmm, opmask k1-k7) and AMX (tmm, tile ops) have.
AVX512_AMX = re.compile(r"%zmm\d|%k[1-7]\b|%tmm\d|\b(?:ldtilecfg|sttilecfg|tileloadd|tdpb\w+)\b")
# BMI2-only mnemonics: the portable baseline leaves BMI2 out, so a compiler emits these only when
# told to target a newer CPU, as -march=native does on every Haswell/Zen machine and later.
BMI2 = re.compile(r"\s(?:shlx|shrx|sarx|rorx|pdep|pext|mulx|bzhi)\s")


def rlaif_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    assert RLAIF, f"the rlaif console script is not installed next to {sys.executable}"
    return subprocess.run(
        [RLAIF, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _llama_libs() -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    assert spec is not None and spec.submodule_search_locations, "llama_cpp is not installed"
    libs = sorted((Path(spec.submodule_search_locations[0]) / "lib").glob("*.so*"))
    assert libs, "no shared libraries in llama_cpp/lib"
    return libs


def test_build_record_says_portable():
    record = build_record()
    assert record, (
        f"{sys.prefix}/llama-cpp-build.txt is missing: llama-cpp-python was not installed by "
        "scripts/install-llama.sh, so nothing says it was built for a portable CPU"
    )
    args = record["cmake_args"]
    assert record["kind"] == "portable", f"llama.cpp is a {record['kind']} build"
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_NATIVE=ON" not in args
    enabled = re.findall(r"-DGGML_(AVX512\w*|AMX\w*|AVX_VNNI)=ON", args)
    assert not enabled, f"the build enables {enabled}"


def test_compiled_features_have_no_avx512_or_amx():
    # in a child: a library with trapped instructions may kill the process that loads it
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"loading llama.cpp failed ({proc.returncode}): {proc.stderr}"
    features = parse_system_info(proc.stdout)
    assert features, f"no features in llama.cpp's system info: {proc.stdout!r}"
    on = {name for name, value in features.items() if value}
    assert not {n for n in on if n.startswith(("AVX512", "AMX"))}, on
    if X86:
        # the baseline itself is there: a build without AVX2 would run, but several times slower
        assert {"AVX", "AVX2", "FMA", "F16C"} <= on, on
        assert "BMI2" not in on, on


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
@pytest.mark.skipif(not X86, reason="the scanned instructions are x86's")
def test_no_avx512_amx_or_native_only_instructions_in_the_libraries():
    for lib in _llama_libs():
        dump = subprocess.run(
            ["objdump", "-d", "--no-show-raw-insn", str(lib)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert len(dump) > 10_000, f"objdump gave almost nothing for {lib}"
        bad = AVX512_AMX.search(dump)
        assert bad is None, f"{lib.name} holds AVX-512/AMX code: {bad.group(0)!r}"
        native = BMI2.search(dump)
        assert native is None, (
            f"{lib.name} holds {native.group(0).strip()!r}: compiled for a newer CPU than the "
            "portable baseline (a native build?)"
        )


def test_the_scan_finds_what_it_looks_for():
    # the patterns match real objdump lines, so a clean scan means something
    assert AVX512_AMX.search("  vmovups %zmm0,(%rax)")
    assert AVX512_AMX.search("  tileloadd (%rsi,%rdx,1),%tmm0")
    assert AVX512_AMX.search("  kmovw  %k1,%eax")
    assert BMI2.search("  1234:	shlx   %rax,%rbx,%rcx")
    assert not AVX512_AMX.search("  vfmadd231ps %ymm1,%ymm2,%ymm0")
    assert not BMI2.search("  1234:	shl    %cl,%rax")


def test_doctor_passes_and_shows_compiled_features():
    proc = rlaif_cli("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compiled with" in proc.stdout and "CPU reports" in proc.stdout
    assert "forward pass      ok" in proc.stdout
    assert re.search(r"^llama_cpp_python\s+\d+\.\d+\.\d+", proc.stdout, re.M), proc.stdout
    if X86:
        line = next(x for x in proc.stdout.splitlines() if x.startswith("compiled with"))
        assert "AVX2" in line.split() and "AVX512" not in line


def test_doctor_turns_a_crash_into_a_message(tmp_path):
    # A llama_cpp that dies like the AMX build did: SIGILL as it loads.
    fake = tmp_path / "llama_cpp"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n")
    proc = rlaif_cli("doctor", env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "SIGILL" in proc.stderr and "make llama" in proc.stderr
    assert "Traceback" not in proc.stderr
