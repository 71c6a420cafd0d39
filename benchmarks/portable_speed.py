"""What the portable llama.cpp build costs: its speed against a native build, in one run.

Both wheels come from the wheelhouse that scripts/install-llama.sh keeps (it builds the native
one with ``RLAIF_LLAMA_NATIVE=1``). Each is unpacked into its own folder, and a child process
with that folder first on ``sys.path`` measures the embedded model: prompt evaluation (tokens/s
over a ~400-token judge-sized prompt, from an empty cache) and generation (tokens/s over 64
greedy tokens). The two builds alternate round by round, so load from other processes on a
shared machine hits both alike; the table gives the medians and the portable/native ratio.

    sh scripts/install-llama.sh .venv/bin/python                     # the portable wheel
    RLAIF_LLAMA_NATIVE=1 sh scripts/install-llama.sh /tmp/v/bin/python  # a native one
    .venv/bin/python benchmarks/portable_speed.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

HOUSE = Path(
    os.environ.get("RLAIF_WHEELHOUSE")
    or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rlaif" / "wheels"
)

_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import llama_cpp
from rlaif.backends.llamacpp import embedded_model_path
llm = llama_cpp.Llama(str(embedded_model_path()), n_ctx=1024, n_threads=int(sys.argv[2]),
                      verbose=False)
text = ("Compare the two responses below under the principle: be helpful and honest. " * 30)
tokens = llm.tokenize(text.encode())[:400]
llm.reset(); llm.eval(tokens[:8])  # warm the weights
llm.reset()
t = time.perf_counter(); llm.eval(tokens); prompt_s = time.perf_counter() - t
llm.reset()
def story(topic):
    messages = [{"role": "user", "content": f"Write a long story about {topic}."}]
    return llm.create_chat_completion(messages, max_tokens=64, temperature=0.0)
story("a robot")
t = time.perf_counter()
out = story("a cat")
gen_s = time.perf_counter() - t
n_gen = out["usage"]["completion_tokens"]
assert n_gen > 16, out
print(json.dumps({"prompt_tps": len(tokens) / prompt_s, "gen_tps": n_gen / gen_s,
                  "file": llama_cpp.__file__}))
"""


def find_wheel(kind: str) -> Path:
    """The newest wheel of a kind (portable or native) for this architecture in the wheelhouse."""
    dirs = sorted(
        HOUSE.glob(f"llama-cpp-python-*-{platform.machine()}-{kind}-*"),
        key=lambda p: p.stat().st_mtime,
    )
    wheels = [w for d in dirs for w in d.glob("*.whl")]
    if not wheels:
        sys.exit(f"no {kind} wheel in {HOUSE}: build it with scripts/install-llama.sh first")
    return wheels[-1]


def unpack(wheel: Path, dest: Path) -> Path:
    """Unpack a wheel into ``dest`` (a wheel is a zip whose root is site-packages)."""
    if not (dest / "llama_cpp").is_dir():
        with zipfile.ZipFile(wheel) as z:
            z.extractall(dest)
        for lib in (dest / "llama_cpp" / "lib").glob("*"):
            lib.chmod(0o755)
    return dest


def measure(folder: Path, threads: int) -> dict:
    """One child's measurement with the llama_cpp in ``folder``."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), str(threads)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        sys.exit(f"measurement failed ({proc.returncode}): {proc.stderr[-800:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["file"].startswith(str(folder)), result["file"]
    return result


def main() -> None:
    """Measure both builds round-robin and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rlaif-portable-speed"))
    args = parser.parse_args()
    folders = {kind: unpack(find_wheel(kind), args.work / kind) for kind in ("portable", "native")}
    results: dict[str, list[dict]] = {kind: [] for kind in folders}
    for i in range(args.rounds):
        order = list(folders) if i % 2 == 0 else list(folders)[::-1]
        for kind in order:
            results[kind].append(measure(folders[kind], args.threads))
            print(f"round {i + 1} {kind}: {results[kind][-1]}", file=sys.stderr)
    med = {
        kind: {key: statistics.median(r[key] for r in rs) for key in ("prompt_tps", "gen_tps")}
        for kind, rs in results.items()
    }
    print(
        f"\nllama.cpp builds, embedded SmolLM2-135M Q4_1, {args.threads} threads, "
        f"{platform.machine()}, median of {args.rounds} alternating rounds\n"
    )
    print("| build | prompt eval tok/s | generation tok/s |")
    print("|---|---|---|")
    for kind in folders:
        print(f"| {kind} | {med[kind]['prompt_tps']:.0f} | {med[kind]['gen_tps']:.1f} |")
    print(
        f"| portable / native | {med['portable']['prompt_tps'] / med['native']['prompt_tps']:.2f}"
        f" | {med['portable']['gen_tps'] / med['native']['gen_tps']:.2f} |"
    )


if __name__ == "__main__":
    main()
