"""The workers' heartbeats, kept up to date incrementally: a dedicated consumer (never
subscribes, never commits) reads the heartbeats topic from a few minutes back once, then
only what is new each round, keeping the latest heartbeat of each worker for an hour.

A heartbeat's age is measured from its record's timestamp, not from the clock of the
worker that wrote it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaException, TopicPartition
from pydantic import ValidationError

from streams.heartbeat import Heartbeat

log = logging.getLogger("status.heartbeats")

LOOKBACK_S = 300.0
KEEP_S = 3600.0
# Heartbeats are read last in a round: they get this much time even if the round's budget
# is spent, or a slow broker would make every worker look gone.
MIN_READ_S = 0.5


@dataclass(frozen=True)
class Seen:
    beat: Heartbeat
    at: float  # the record's timestamp (s)


class HeartbeatTail:
    def __init__(self, consumer_conf: dict[str, Any], topic: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._c = Consumer(consumer_conf)
        self.topic = topic
        self.clock = clock
        self._next: int | None = None
        self.latest: dict[str, Seen] = {}
        self.malformed = 0

    def close(self) -> None:
        self._c.close()

    def update(self, deadline: float) -> dict[str, Seen]:
        """Read what is new (within the deadline); the latest heartbeat per worker."""
        deadline = max(deadline, time.monotonic() + MIN_READ_S)
        try:
            self._read(deadline)
        except KafkaException as exc:
            # No heartbeats topic yet, or late: the workers are judged without them.
            log.debug("heartbeats not read this round: %s", exc)
        now = self.clock()
        for wid in [w for w, s in self.latest.items() if now - s.at > KEEP_S]:
            del self.latest[wid]
        return dict(self.latest)

    def _left(self, deadline: float) -> float:
        return max(0.05, deadline - time.monotonic())

    def _read(self, deadline: float) -> None:
        tp = TopicPartition(self.topic, 0)
        lo, hi = self._c.get_watermark_offsets(tp, timeout=self._left(deadline), cached=False)
        if self._next is None:
            since = TopicPartition(self.topic, 0, int((self.clock() - LOOKBACK_S) * 1000))
            found = self._c.offsets_for_times([since], timeout=self._left(deadline))[0]
            self._next = found.offset if found.offset >= 0 else hi
        start = max(self._next, lo)
        if start >= hi:
            self._next = start
            return
        self._c.assign([TopicPartition(self.topic, 0, start)])
        try:
            while start < hi and time.monotonic() < deadline:
                for m in self._c.consume(200, timeout=min(0.05, self._left(deadline))):
                    if m.error() is not None:
                        continue
                    start = (m.offset() or 0) + 1
                    self._apply(m)
        finally:
            self._next = start
            self._c.unassign()

    def _apply(self, m: Any) -> None:
        try:
            beat = Heartbeat.model_validate_json(m.value() or b"")
        except (ValidationError, ValueError):
            self.malformed += 1  # not ours, or a newer version: nothing to trust in it
            return
        kind, ms = m.timestamp()
        at = ms / 1000 if kind != TIMESTAMP_NOT_AVAILABLE and ms >= 0 else self.clock()
        prev = self.latest.get(beat.id)
        if prev is None or at >= prev.at:
            self.latest[beat.id] = Seen(beat, at)
