"""A Kafka broker of a test's own (scripts/kafka on a free port pair, an empty data dir), for
tests that stop and start it: the suite's shared broker is never stopped. It is the version
that KAFKA_VERSION names (scripts/kafka's default otherwise), as the shared broker is; its
ports are looked for from INGEST_TEST_PRIVATE_PORT (23092), so that two passes of the suite
on different brokers at once (scripts/test) look in different ranges.

The ports lie below Linux's ephemeral range (32768-60999): while the broker is stopped, any
outgoing connection on the machine may be handed one of its ports as a local port, and then
the broker cannot start again ("Address already in use", seen in CI)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = ROOT / "scripts" / "kafka"
DEFAULT_PORT_START = 23092
PORT_START = int(os.environ.get("INGEST_TEST_PRIVATE_PORT") or DEFAULT_PORT_START)
SEARCH_SPAN = 1000  # _free_port_pair looks at 500 pairs


class BrokerFailed(RuntimeError):
    pass


def _port_taken(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port_pair(start: int) -> int:
    """Like scripts/test: the first port p from ``start`` (step 2) with p and p+1 unused."""
    port = start
    for _ in range(SEARCH_SPAN // 2):
        if not _port_taken(port) and not _port_taken(port + 1):
            return port
        port += 2
    raise BrokerFailed(f"no free port pair from {start}")


class Broker:
    """scripts/kafka on its own port pair and data dir; stop/start keep topics and offsets."""

    def __init__(self, port: int, data: Path) -> None:
        self.port = port
        self.data = data
        self.bootstrap = f"127.0.0.1:{port}"
        # PYTHON: scripts/kafka's readiness probe needs confluent-kafka (a worktree has no .venv);
        # KAFKA_VERSION, if set, comes along with os.environ
        self.env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DATA": str(data),
                    "PYTHON": sys.executable, "KAFKA_START_TIMEOUT": "120"}

    def _run(self, command: str, timeout: float) -> tuple[int, str]:
        r = subprocess.run([str(KAFKA_SCRIPT), command], env=self.env, cwd=ROOT,
                           capture_output=True, text=True, timeout=timeout, check=False)
        return r.returncode, (r.stdout + r.stderr).strip()

    def start(self) -> None:
        rc, out = self._run("start", 180)
        if rc != 0:
            raise BrokerFailed(f"scripts/kafka start exited {rc}: {out[-1500:]}")

    def stop(self) -> None:
        rc, out = self._run("stop", 90)
        if rc != 0:
            raise BrokerFailed(f"scripts/kafka stop exited {rc}: {out[-1500:]}")

    def stop_quietly(self) -> None:
        try:
            self.stop()
        except (BrokerFailed, subprocess.TimeoutExpired, OSError) as exc:
            print(f"private broker stop: {exc}", file=sys.stderr)

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join((self.data / "kafka.log").read_text(errors="replace").splitlines()[-n:])
        except OSError as exc:
            return f"(no broker log: {exc})"


def private_broker_fixture() -> Iterator[Broker]:
    problem = ""
    port = PORT_START
    broker: Broker | None = None
    for _ in range(3):  # a port taken between the check and the start: try the next pair
        port = _free_port_pair(port)
        data = Path(tempfile.mkdtemp(prefix="prophoto-kafka-private."))
        candidate = Broker(port, data)
        try:
            candidate.start()
            broker = candidate
            break
        except (BrokerFailed, subprocess.TimeoutExpired, OSError) as exc:
            version = os.environ.get("KAFKA_VERSION") or "default"
            problem = f"private broker (Kafka {version}) on 127.0.0.1:{port} did not start: {exc}"
            candidate.stop_quietly()
            shutil.rmtree(data, ignore_errors=True)
            port += 2
    if broker is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and the private broker is missing: {problem}")
        pytest.skip(problem)
    try:
        yield broker
    finally:
        broker.stop_quietly()
        shutil.rmtree(broker.data, ignore_errors=True)
