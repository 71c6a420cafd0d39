"""Shared fixtures: the real embedded model, a real llama.cpp OpenAI-compatible server, and a
backend wrapper that counts calls to a real backend."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from rlaif.backends import Backend, ChoiceScores, Generation, Messages, load_backend
from rlaif.backends.llamacpp import embedded_model_path
from rlaif.constitution import Constitution, load_constitution

REPO = Path(__file__).resolve().parents[1]
#: the project's shared folder (data, design notes), next to the repository
SHARED = REPO.parent / "shared"

SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 10.0


@pytest.fixture(scope="session")
def smollm2() -> Iterator[Backend]:
    """The embedded SmolLM2-135M-Instruct GGUF, run in-process by llama.cpp."""
    backend = load_backend("smollm2")
    yield backend
    # Free it before interpreter shutdown, where llama-cpp-python's __del__ fails noisily.
    backend.close()


@pytest.fixture(scope="session")
def constitution() -> Constitution:
    """The default constitution shipped with rlaif."""
    return load_constitution("default")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the embedded model; yields its /v1 URL."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(embedded_model_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--logits_all",
        "True",
        "--n_ctx",
        "4096",
        "--n_threads",
        "2",
        "--n_threads_batch",
        "2",
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited with code {proc.returncode} before answering; "
                    f"log:\n{log_path.read_text(errors='replace')[-3000:]}"
                )
            try:
                with urllib.request.urlopen(base_url + "/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama_cpp.server did not answer GET /v1/models within "
                    f"{SERVER_START_TIMEOUT_S:.0f} s; log:\n"
                    f"{log_path.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.25)
        yield base_url
    finally:
        _stop(proc)


class CountingBackend(Backend):
    """Wraps a real backend and records every call made through it."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.calls: Counter[str] = Counter()
        self.scored: list[Messages] = []

    def generate(
        self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> Generation:
        self.calls["generate"] += 1
        return self.inner.generate(
            messages, max_tokens=max_tokens, temperature=temperature, seed=seed
        )

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        self.calls["choice_logprobs"] += 1
        self.scored.append(messages)
        return self.inner.choice_logprobs(messages, choices)


@pytest.fixture
def counted_smollm2(smollm2: Backend) -> CountingBackend:
    """The real embedded model behind a call counter (fresh counts per test)."""
    return CountingBackend(smollm2)
