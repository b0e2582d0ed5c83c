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

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE
from pydantic import ValidationError

from streams.errors import KafkaUnavailable
from streams.heartbeat import Heartbeat
from streams.kafka import TopicTail

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
        self._tail = TopicTail(consumer_conf)
        self.topic = topic
        self.clock = clock
        self.latest: dict[str, Seen] = {}
        self.malformed = 0

    def close(self) -> None:
        self._tail.close()

    def update(self, deadline: float) -> dict[str, Seen]:
        """Read what is new (within the deadline); the latest heartbeat per worker."""
        deadline = max(deadline, time.monotonic() + MIN_READ_S)
        try:
            self._read(deadline)
        except KafkaUnavailable as exc:
            # No heartbeats topic yet, or late: the workers are judged without them.
            log.debug("heartbeats not read this round: %s", exc)
        now = self.clock()
        for wid in [w for w, s in self.latest.items() if now - s.at > KEEP_S]:
            del self.latest[wid]
        return dict(self.latest)

    def _read(self, deadline: float) -> None:
        tp = (self.topic, 0)
        ends = self._tail.watermarks([tp], deadline)
        if tp not in self._tail.next:  # the first read: only the last few minutes
            since = int((self.clock() - LOOKBACK_S) * 1000)
            found = self._tail.offset_for_time(tp, since, deadline)
            self._tail.next[tp] = ends[tp][1] if found is None else found
        self._tail.read(deadline, self._apply, ends)

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
