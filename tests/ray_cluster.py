"""A Ray cluster of separate nodes on this machine, for tests and benchmarks (no pytest here).

Each node gets its own short ``--temp-dir``, ports found free at run time,
``--node-ip-address 127.0.0.1``, one CPU, and token authentication (``RAY_AUTH_MODE=token`` with
a fresh token in ``RAY_AUTH_TOKEN``, so ``~/.ray/auth_token`` is neither read nor written).

Ray 2.60 rewrites ``--node-ip-address 127.0.0.1`` to the machine's own address
(``ray._private.services.resolve_ip_for_localhost``) and its gRPC servers listen on every
interface, so the token is what keeps other processes out. It runs its workers at nice 15,
which on a busy machine starves them, so the nodes here start with ``RAY_worker_niceness=0``.

``Cluster.stop`` kills the processes of each node by its temp dir (every Ray daemon of a node
names it on its command line) and their descendants (the workers, whose titles Ray rewrites to
``ray::...``), never ``ray stop``, which stops every Ray process on the machine, other people's
included. ``kill_node`` on one node alone is how a test loses a node mid-run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RAY = Path(sys.executable).with_name("ray")
#: seconds for one `ray start`, or one driver asking the cluster a question (2 busy cores)
START_TIMEOUT_S = 180


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_processes(temp_dir: str) -> list:
    """The processes of the Ray node started with ``temp_dir``: those naming it on their
    command line (raylet, gcs_server, log monitor, dashboard...) and all their descendants."""
    me = os.getpid()
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []
        if proc.pid != me and any(temp_dir in arg for arg in args):
            found[proc.pid] = proc
    for proc in list(found.values()):
        try:
            found.update({c.pid: c for c in proc.children(recursive=True)})
        except psutil.NoSuchProcess:
            pass
    return list(found.values())


def kill_node(temp_dir: str) -> list:
    """SIGKILL every process of the node with ``temp_dir``; the processes killed."""
    procs = node_processes(temp_dir)
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)
    return procs


@dataclass
class Cluster:
    """A Ray cluster of this test: its address, the environment that joins it, node dirs."""

    address: str
    env: dict[str, str]
    temp_dirs: list[str] = field(default_factory=list)

    def start(self, *args: str) -> None:
        """``ray start`` one node with ``args`` (``--head ...`` or ``--address ...``)."""
        temp_dir = tempfile.mkdtemp(prefix="rlaif-ray-", dir="/tmp")  # short: Unix socket paths
        self.temp_dirs.append(temp_dir)
        cmd = [str(RAY), "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1"]
        cmd += ["--temp-dir", temp_dir, "--disable-usage-stats", *args]
        cmd += ["--dashboard-agent-listen-port", str(free_port())]
        result = subprocess.run(
            cmd, env=self.env, capture_output=True, text=True, timeout=START_TIMEOUT_S
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}:\n{result.stderr[-3000:]}")

    def add_node(self) -> None:
        """A second node joining the head."""
        self.start("--address", self.address)

    def stop(self) -> None:
        """Kill every node of the cluster and delete their temp dirs."""
        for temp_dir in reversed(self.temp_dirs):
            kill_node(temp_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)

    def alive_nodes(self) -> int:
        """Nodes the cluster counts alive, asked by a driver that joins it."""
        code = "import ray; ray.init(); print(sum(n['Alive'] for n in ray.nodes()))"
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={**self.env, "RAY_ADDRESS": self.address},
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if result.returncode != 0:
            raise RuntimeError(f"cannot ask the cluster its nodes:\n{result.stderr[-3000:]}")
        return int(result.stdout.split()[-1])


def new_env() -> dict[str, str]:
    """The environment of every node and driver of one cluster: a fresh token, token auth on."""
    token = secrets.token_hex(32)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_worker_niceness": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RLAIF_N_THREADS": os.environ.get("RLAIF_N_THREADS", "1"),
    }
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    return env


def start_head() -> Cluster:
    """A one-node cluster (the head); ``add_node`` adds more. Stopped again if it fails."""
    port = free_port()
    cluster = Cluster(address=f"127.0.0.1:{port}", env=new_env())
    try:
        cluster.start(
            "--head",
            "--port",
            str(port),
            "--include-dashboard",
            "false",
            "--dashboard-port",
            str(free_port()),
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster
