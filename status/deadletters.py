"""The failed count: dead letters not yet resolved, kept up to date incrementally.

A dedicated consumer (never subscribes, never commits) reads each dead-letter topic and
the compacted resolution-state topic once from the start, then only what is new each
round, so a large dead-letter history costs one pass, not one per cache period. A dead
letter is identified by its id header; a resolution record resolves that id, a tombstone
reopens it.

The same pass keeps a small index by record key (the image UUID): where each dead letter
is and the headers an operator needs, so looking one upload up costs no scan.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streams import headers as h
from streams.errors import KafkaUnavailable
from streams.headers import DEAD_LETTER_ID_HEADER
from streams.kafka import TopicTail
from streams.topics import Topics

TP = tuple[str, int]

# What a lookup shows of a dead letter's headers: enough to act on, nothing of the event's
# own payload (owner, gallery, path and file name stay in Kafka).
SHOWN_HEADERS = (
    h.H_EXC_CLASS, h.H_EXC_MESSAGE, h.H_TOPIC, h.H_PARTITION, h.H_OFFSET, h.H_REASON,
    h.H_ATTEMPTS, h.H_WORKER, h.H_FIRST_FAILURE, h.H_LAST_FAILURE, h.H_REPLAY_OF, h.H_ID,
)
MAX_MESSAGE = 500
MAX_INDEXED = 200_000  # dead letters remembered for lookups; beyond it the oldest are dropped


@dataclass(frozen=True)
class IndexedDeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp: float | None
    headers: dict[str, str]


class DeadLetterTally:
    def __init__(
        self, consumer_conf: dict[str, Any], topics: Topics, dead_letter_topics: Iterable[str]
    ) -> None:
        self._tail = TopicTail(consumer_conf)
        self.state_topic = topics.dead_letter_state
        self.dlq = list(dead_letter_topics)
        self.ids: dict[str, set[str]] = {name: set() for name in self.dlq}
        self.resolved: set[str] = set()
        self.by_key: dict[str, list[IndexedDeadLetter]] = {}
        self._indexed = 0
        self.caught_up = False

    def close(self) -> None:
        self._tail.close()

    def update(
        self, watermarks: Mapping[TP, tuple[int, int]], deadline: float
    ) -> tuple[dict[str, int], bool]:
        """Read what is new up to the given end offsets (dead-letter topics) and the state
        topic's end; returns unresolved per topic and whether it caught up in time."""
        ends = dict(watermarks)
        # No state topic yet, or late: count without resolutions this round.
        with contextlib.suppress(KafkaUnavailable):
            ends.update(self._tail.watermarks([(self.state_topic, 0)], deadline))
        caught_up = self._tail.read(deadline, lambda m: self._apply(m.topic() or "", m), ends)
        self.caught_up = caught_up
        per_topic = {name: len(ids - self.resolved) for name, ids in self.ids.items()}
        # Records not read yet (a first pass cut short by the deadline) count as open
        # until they are read: the count never drops below the truth while catching up.
        for (topic, p), (_, hi) in watermarks.items():
            if topic in per_topic:
                per_topic[topic] += max(0, hi - self._tail.next.get((topic, p), hi))
        return per_topic, caught_up

    def _apply(self, topic: str, m: Any) -> None:
        if topic == self.state_topic:
            key = (m.key() or b"").decode("utf-8", "replace")
            if m.value() is None:
                self.resolved.discard(key)
                return
            try:
                if json.loads(m.value()).get("status") == "resolved":
                    self.resolved.add(key)
            except ValueError:
                pass
            return
        shown: dict[str, str] = {}
        dlq_id = ""
        for k, v in m.headers() or []:
            if k in SHOWN_HEADERS and k not in shown:
                shown[k] = (v or b"").decode("utf-8", "replace")[:MAX_MESSAGE]
            if k == DEAD_LETTER_ID_HEADER and v and not dlq_id:
                dlq_id = v.decode("utf-8", "replace")
        # No id header (written by something else): count it under its own coordinates.
        self.ids.setdefault(topic, set()).add(dlq_id or f"{topic}:{m.partition()}:{m.offset()}")
        self._index(topic, m, shown, dlq_id)

    def _index(self, topic: str, m: Any, shown: dict[str, str], dlq_id: str) -> None:
        key = (m.key() or b"").decode("utf-8", "replace")[:64]
        kind, ms = m.timestamp()
        entry = IndexedDeadLetter(topic, m.partition() or 0, m.offset() or 0,
                                  ms / 1000 if kind and ms >= 0 else None, shown)
        self.by_key.setdefault(key, []).append(entry)
        self._indexed += 1
        if self._indexed > MAX_INDEXED:  # dicts keep insertion order: drop the oldest key
            oldest = next(iter(self.by_key))
            self._indexed -= len(self.by_key.pop(oldest))

    def lookup(self, key: str) -> list[IndexedDeadLetter]:
        """Dead letters of one upload, each with whether it is resolved (read so far)."""
        return list(self.by_key.get(key, ()))
