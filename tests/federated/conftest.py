"""A real Flower deployment on 127.0.0.1: a SuperLink and SuperNodes as processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Cluster:
    """A SuperLink and its SuperNodes; each process in its own group (with its children)."""

    folder: Path
    env: dict[str, str]
    port: int = 0
    processes: list[subprocess.Popen] = field(default_factory=list)
    nodes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, clients: int) -> Cluster:
        self.port = free_port()
        self._spawn("superlink", ["flower-superlink", "--insecure", "--port", str(self.port),
                                  "--disable-runtime-dependency-installation"])  # fmt: skip
        wait_for_port(self.port)
        for i in range(clients):
            node = self._spawn(f"supernode{i}", [
                "flower-supernode", "--insecure", "--superlink", self.address,
                "--port", str(free_port()), "--node-config", f"partition-id={i}"])  # fmt: skip
            self.nodes.append(node)
        return self

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def kill(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        for process in reversed(self.processes):
            self.kill(process)

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        command = [str(BIN / command[0]), *command[1:]]
        out = (self.folder / f"{name}.log").open("w")
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                   start_new_session=True)  # fmt: skip
        self.processes.append(process)
        return process


@pytest.fixture
def flower(tmp_path: Path) -> Iterator[Cluster]:
    home = tmp_path / "flwr-home"
    home.mkdir()
    env = {**os.environ, "FLWR_HOME": str(home), "OMP_NUM_THREADS": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    cluster = Cluster(tmp_path, env)
    try:
        yield cluster
    finally:
        cluster.stop()
