"""Delivery counts, durable before a job starts, so a record that kills its worker (OOM,
a crashing decoder) is dead-lettered after a few deliveries instead of looping forever.

The count of a record (group, topic, partition, offset) is written to a compacted topic
and acknowledged before the job starts; once the record has an outcome (ok, retry, dead
letter) a tombstone removes it. A count that reaches ``max_deliveries`` without an outcome
means each of those deliveries died with its worker: the next one is a dead letter.

Every worker reads the topic into memory (only records in flight are there) and reads
it up to its end again whenever its assignment changes, so a partition's new owner sees
what the old one wrote before it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from confluent_kafka import Message

from ..errors import KafkaUnavailable
from ..kafka import TopicTail, reader_config
from ..settings import KafkaSettings

log = logging.getLogger("streams.deliveries")


def delivery_key(group: str, topic: str, partition: int, offset: int) -> bytes:
    return f"{group}|{topic}|{partition}|{offset}".encode()


class DeliveryLedger:
    def __init__(self, kafka: KafkaSettings, topic: str, *, max_deliveries: int) -> None:
        self.kafka = kafka
        self.topic = topic
        self.group = kafka.group_id
        self.max_deliveries = max_deliveries
        self.counts: dict[bytes, int] = {}
        self.to_clear: list[bytes] = []  # tombstones to send with the next count
        self._tail: TopicTail | None = None
        self._synced_generation: int | None = None
        self._lock = asyncio.Lock()
        self._syncing: asyncio.Task[None] | None = None  # sync_soon's; the loop keeps a weak one

    def key(self, topic: str, partition: int, offset: int) -> bytes:
        return delivery_key(self.group, topic, partition, offset)

    async def ensure_synced(self, generation: int) -> None:
        """Read the ledger to its end once per consumer generation (each rebalance)."""
        if self._synced_generation == generation:
            return
        async with self._lock:
            if self._synced_generation == generation:
                return
            while True:
                try:
                    await asyncio.to_thread(self._read_to_end)
                    break
                except Exception as exc:  # noqa: BLE001 - broker away: keep the record pinned
                    log.error("cannot read the delivery ledger %s (%s); retrying in 1 s",
                              self.topic, exc)
                    await asyncio.sleep(1.0)
            self._synced_generation = generation
            log.info("delivery ledger %s read for generation %d: %d count(s) in flight",
                     self.topic, generation, len(self.counts))

    def sync_soon(self, generation: int) -> None:
        """Start reading the ledger for a new generation now, in the background: a worker
        given partitions reads it while its first fetch is made, and its first record does
        not wait for it (the read takes about half a second; ensure_synced waits for it)."""
        self._syncing = asyncio.ensure_future(self.ensure_synced(generation))

    def _read_to_end(self) -> None:
        if self._tail is None:
            self._tail = TopicTail(reader_config(self.kafka, f"{self.group}-ledger"), [self.topic])
        deadline = time.monotonic() + self.kafka.request_timeout_s * 3
        if not self._tail.read(deadline, self._apply):
            raise KafkaUnavailable(f"timed out reading {self.topic}")  # read on from there

    def _apply(self, m: Message) -> None:
        key = m.key() or b""
        value = m.value()
        if value is None:
            self.counts.pop(key, None)
            return
        with contextlib.suppress(ValueError):  # not ours to judge; the next write fixes it
            self.counts[key] = int(value)

    def delivered(self, key: bytes) -> int:
        """Deliveries counted so far, without this one."""
        return self.counts.get(key, 0)

    def close(self) -> None:
        if self._tail is not None:
            self._tail.close()
            self._tail = None
