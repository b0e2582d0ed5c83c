"""Operator pauses of job topics (``pause TOPIC`` / ``continue TOPIC``), held on a compacted
topic keyed by job topic name, so a worker that restarts or joins later honours them.

A pause holds the job's records at every worker's job gate (its retry topic too), the way
a priority pause does: nothing is skipped, fetching is never paused. The latest record per
key is the state; ``continue`` writes a tombstone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .kafka import TopicTail, reader_config
from .producer import EventProducer
from .settings import KafkaSettings


@dataclass(frozen=True)
class Pause:
    topic: str
    by: str
    at_ms: int
    reason: str = ""

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.at_ms / 1000))
        why = f": {self.reason}" if self.reason else ""
        return f"paused by operator {self.by} at {when}{why}"

    def encode(self) -> bytes:
        return json.dumps({"paused": True, "by": self.by, "at_ms": self.at_ms,
                           "reason": self.reason}).encode()


def decode(key: bytes | None, value: bytes | None) -> tuple[str, Pause | None] | None:
    """(topic, pause or None for "continued"); None for a record that is not ours."""
    topic = (key or b"").decode("utf-8", "replace")
    if not topic:
        return None
    if value is None:
        return topic, None
    try:
        body = json.loads(value)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("paused") is not True:
        return topic, None
    at = body.get("at_ms")
    return topic, Pause(topic, str(body.get("by", "?"))[:200],
                        at if isinstance(at, int) else 0, str(body.get("reason", ""))[:500])


def publish(kafka: KafkaSettings, state_topic: str, topics: Iterable[str], *, paused: bool,
            by: str, reason: str = "") -> None:
    """Pause or continue job topics; returns once the broker holds the new state."""
    at = int(time.time() * 1000)
    with EventProducer(kafka) as producer:
        for t in topics:
            value = Pause(t, by, at, reason).encode() if paused else None
            producer.send(state_topic, t.encode(), value)


class PauseTail:
    """The current pauses, read from the start of the compacted topic, then what is new.
    Blocking (confluent-kafka); callers run ``update`` off their event loop."""

    def __init__(self, kafka: KafkaSettings, state_topic: str, group: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.topic = state_topic
        self.clock = clock
        self._tail = TopicTail(reader_config(kafka, group, log_level=2), clock=clock)
        self.pauses: dict[str, Pause] = {}
        self.caught_up = False

    def close(self) -> None:
        self._tail.close()

    def update(self, timeout_s: float) -> dict[str, Pause]:
        """Read up to the end offset seen now (within ``timeout_s``); raises KafkaUnavailable
        when the broker does not answer, so a caller can tell "none" from "unknown"."""
        deadline = self.clock() + timeout_s
        # ensure_topics returns only once new topics answer offset queries: no retry here.
        ends = self._tail.watermarks([(self.topic, 0)], deadline)
        self.caught_up = self._tail.read(deadline, self._apply, ends)
        return dict(self.pauses)

    def _apply(self, m: Any) -> None:
        got = decode(m.key(), m.value())
        if got is None:
            return
        topic, pause = got
        if pause is None:
            self.pauses.pop(topic, None)
        else:
            self.pauses[topic] = pause
