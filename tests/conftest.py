"""Shared fixtures. Integration fixtures talk to the real broker started by scripts/kafka;
without one they skip on a laptop and fail when CI is set. Each test gets its own topic
prefix and consumer group, so tests never see each other's records."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings
from streams.topics import Topics

BOOTSTRAP = os.environ.get("INGEST_TEST_BOOTSTRAP", "127.0.0.1:9092")
ROOT = Path(__file__).resolve().parent.parent


def _broker_up(bootstrap: str) -> str | None:
    host, _, port = bootstrap.partition(":")
    try:
        with socket.create_connection((host, int(port or 9092)), timeout=2):
            pass
    except OSError as exc:
        return f"no Kafka broker at {bootstrap} ({exc}); start one with scripts/kafka start"
    return None


@pytest.fixture(scope="session")
def bootstrap() -> str:
    problem = _broker_up(BOOTSTRAP)
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and the integration broker is missing: {problem}")
        pytest.skip(problem)
    return BOOTSTRAP


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}-"


def _drop_topics(bootstrap: str, prefix: str) -> None:
    """Delete the topics a test made: a long-lived developer broker would otherwise collect
    thousands of partitions and take minutes to start."""
    from confluent_kafka import KafkaException

    from streams.kafka import delete_topics
    from streams.settings import KafkaSettings

    try:
        delete_topics(KafkaSettings(bootstrap_servers=bootstrap), prefix)
    except KafkaException as exc:
        # housekeeping only: the test's verdict stands; a test that stopped the broker lands here
        print(f"could not delete topics {prefix}*: {exc}", file=sys.stderr)


@pytest.fixture
def test_topics_dropped(bootstrap: str, prefix: str) -> Iterator[None]:
    """Deletes the test's topics at teardown; fixtures that start processes depend on it, so
    their processes stop before their topics go."""
    yield
    _drop_topics(bootstrap, prefix)


@pytest.fixture
def make_settings(
    bootstrap: str, prefix: str, tmp_path: Path, test_topics_dropped: None
) -> Callable[..., Settings]:
    """Settings for this test: own topic prefix, group and storage root; overrides by group."""

    def make(**groups: dict[str, Any]) -> Settings:
        base: dict[str, dict[str, Any]] = {
            "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": prefix,
                      "group_id": f"{prefix}group", "partitions": 4,
                      # a killed worker's partitions move on after 6 s, not 15
                      "session_timeout_s": 6},
            "storage": {"root": tmp_path / "storage"},
            "clickhouse": {"path": tmp_path / "traces.chdb"},
            "worker": {"backoff_base_s": 0.2, "backoff_max_s": 1.0, "timeout_s": 60},
        }
        for name, values in groups.items():
            base.setdefault(name, {}).update(values)
        return Settings(**base)  # type: ignore[arg-type]

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def topics(settings: Settings) -> Topics:
    from streams.topics import ensure_topics

    t = Topics.from_settings(settings.kafka)
    ensure_topics(settings.kafka, t.specs())
    return t


def settings_env(settings: Settings) -> dict[str, str]:
    """The INGEST_* environment that reproduces ``settings`` in a subprocess."""
    env: dict[str, str] = {}
    for group, model in settings:
        if hasattr(model, "model_dump"):
            for key, value in model.model_dump(mode="json").items():
                if value is None:
                    continue
                if hasattr(getattr(model, key), "get_secret_value"):
                    value = getattr(model, key).get_secret_value()
                env[f"INGEST_{group.upper()}__{key.upper()}"] = str(value)
        else:
            env[f"INGEST_{group.upper()}"] = str(model)
    return env


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        """The exit code; on timeout, fail with the end of the worker's log."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker still running after {timeout:g} s; log:\n{self.output()[-4000:]}"
            ) from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def _process_factory(tmp_path: Path, name: str, command: list[str]) -> tuple[
    Callable[..., WorkerProcess], list[WorkerProcess]
]:
    """Start ``python -m streams <command> <args>`` as real subprocesses, logs in tmp_path."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        log = tmp_path / f"{name}-{len(started)}.log"
        full_env = {**os.environ, **settings_env(settings), **(env or {})}
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams", *command, *args],
                stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT,
            )
        p = WorkerProcess(proc, log)
        started.append(p)
        return p

    return start, started


@pytest.fixture
def start_worker(tmp_path: Path, test_topics_dropped: None) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``prophoto-ingest worker -v`` as a real subprocess; stopped at teardown."""
    start, started = _process_factory(tmp_path, "worker", ["worker", "-v"])
    yield start
    for w in started:
        w.stop()


def wait_until(
    cond: Callable[[], Any], timeout: float, what: str | Callable[[], str], interval: float = 0.2
) -> Any:
    """Poll ``cond`` until truthy; ``what`` (or its result, computed on failure) names it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = cond()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")


@pytest.fixture
def start_sink(tmp_path: Path, test_topics_dropped: None) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``prophoto-ingest traces sink`` as a real subprocess; stopped at teardown."""
    start, started = _process_factory(tmp_path, "sink", ["traces", "sink"])
    yield start
    for s in started:
        s.stop()


@pytest.fixture
def private_broker() -> Iterator[Any]:
    """A broker of this test's own, for tests that stop and start it (tests/support/broker.py)."""
    from tests.support.broker import private_broker_fixture

    yield from private_broker_fixture()
