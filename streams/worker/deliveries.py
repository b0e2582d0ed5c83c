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
import logging
from typing import Any

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
        self._consumer: Any = None
        self._synced_generation: int | None = None
        self._lock = asyncio.Lock()

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

    def _read_to_end(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

        if self._consumer is None:
            c = Consumer({**self.kafka.confluent_config(), "group.id": f"{self.group}-ledger",
                          "enable.auto.commit": False, "auto.offset.reset": "earliest"})
            md = c.list_topics(self.topic, timeout=self.kafka.request_timeout_s)
            parts = sorted(md.topics[self.topic].partitions)
            c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
            self._consumer = c
        c = self._consumer
        ends = {}
        for tp in c.assignment():
            _, hi = c.get_watermark_offsets(tp, timeout=self.kafka.request_timeout_s, cached=False)
            ends[tp.partition] = hi
        while True:
            positions = {tp.partition: tp.offset for tp in c.position(c.assignment())}
            if all(positions.get(p, 0) >= hi or hi == 0 for p, hi in ends.items()):
                return
            msgs = c.consume(1000, timeout=1.0)
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == -191:  # _PARTITION_EOF
                        continue
                    raise KafkaException(err)
                key = m.key() or b""
                value = m.value()
                if value is None:
                    self.counts.pop(key, None)
                else:
                    try:
                        self.counts[key] = int(value)
                    except ValueError:
                        continue  # not ours to judge; the next write fixes it

    def delivered(self, key: bytes) -> int:
        """Deliveries counted so far, without this one."""
        return self.counts.get(key, 0)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
