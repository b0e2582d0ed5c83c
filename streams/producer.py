"""A synchronous producer for the CLI and tools (upload, confirm, replay), on confluent-kafka.

It uses Kafka's murmur2 partitioner, the one faust's producer (aiokafka) and the Java
clients use, so a UUID lands on the same partition whoever publishes it. Every send is
confirmed; a broker that does not answer is a clear error, not a silent drop.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message

from . import kafka as kafka_clients  # the parameters named kafka are settings
from .errors import KafkaUnavailable
from .kafka import TopicTail, reader_config
from .settings import KafkaSettings


class PublishError(KafkaUnavailable):
    """Some sends failed. ``uncertain_keys``: the broker may have written them (the
    delivery timed out or never reported), so whatever they announce must be kept."""

    def __init__(self, message: str, delivered_keys: set[bytes] | None = None,
                 uncertain_keys: set[bytes] | None = None) -> None:
        super().__init__(message)
        self.delivered_keys = delivered_keys or set()
        self.uncertain_keys = uncertain_keys or set()


# Delivery errors after which the record may still be on the broker (a produce request
# sent, its answer lost); any other error means the broker did not write it.
_MAYBE_WRITTEN = {KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT,
                  KafkaError._TIMED_OUT_QUEUE, KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND}


class EventProducer:
    def __init__(self, kafka: KafkaSettings, *, timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s or kafka.request_timeout_s
        conf: dict[str, Any] = {
            **kafka.confluent_config(),
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(self.timeout_s * 1000),
        }
        self._p = kafka_clients.producer(kafka, conf)
        self._errors: list[str] = []
        self.delivered: list[tuple[str, int, int]] = []
        self.delivered_keys: set[bytes] = set()
        self.uncertain_keys: set[bytes] = set()
        self._pending_keys: set[bytes] = set()

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self._pending_keys.discard(msg.key() or b"")
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err.str()}")
            if err.code() in _MAYBE_WRITTEN:
                self.uncertain_keys.add(msg.key() or b"")
        else:
            self.delivered.append((msg.topic() or "", msg.partition() or 0, msg.offset() or 0))
            self.delivered_keys.add(msg.key() or b"")

    def send(
        self, topic: str, key: bytes | None, value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None, partition: int | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"on_delivery": self._on_delivery}
        if headers:
            kwargs["headers"] = headers
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._p.produce(topic, value=value, key=key, **kwargs)
                self._pending_keys.add(key or b"")
                break
            except BufferError:
                self._p.poll(0.1)  # local queue full: let deliveries drain
        self._p.poll(0)

    def flush(self) -> list[tuple[str, int, int]]:
        """Wait for every send; raise PublishError naming what failed."""
        remaining = self._p.flush(self.timeout_s + 1)
        if remaining:
            self._errors.append(f"{remaining} record(s) not confirmed within {self.timeout_s:g} s")
            self.uncertain_keys |= self._pending_keys
        if self._errors:
            errors, self._errors = self._errors, []
            raise PublishError("publish failed (is the broker reachable?): " + "; ".join(errors[:5]),
                               set(self.delivered_keys), set(self.uncertain_keys))
        done, self.delivered = self.delivered, []
        return done

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None:
            self.flush()


def broker_answers(kafka: KafkaSettings, timeout_s: float) -> bool:
    """Does a broker answer a metadata request? (Before staging files for an upload.)"""
    from confluent_kafka import KafkaException

    try:
        md = kafka_clients.admin(kafka).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(md.brokers)


def end_offsets(kafka: KafkaSettings, topic: str, timeout_s: float) -> dict[int, int]:
    """End offset per partition; a partition whose leader is not known yet (a topic made
    a moment ago) is asked again, then left out (0: read from its start)."""
    import time

    from confluent_kafka import KafkaException, TopicPartition

    c = kafka_clients.consumer(kafka, "prophoto-ingest-probe")
    out: dict[int, int] = {}
    try:
        try:
            md = c.list_topics(topic, timeout=timeout_s)
        except KafkaException as exc:
            raise KafkaUnavailable(f"Kafka error: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        for p in md.topics[topic].partitions if topic in md.topics else []:
            while True:
                try:
                    out[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1]
                    break
                except KafkaException:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
    finally:
        c.close()
    return out


def keys_written_since(kafka: KafkaSettings, topic: str, since: dict[int, int], keys: set[bytes],
                       timeout_s: float) -> set[bytes]:
    """Which of ``keys`` the broker holds in ``topic`` after the offsets ``since``; raises
    KafkaUnavailable when it does not answer."""
    import time

    found: set[bytes] = set()

    def each(m: Message) -> None:
        if m.key() in keys:
            found.add(m.key() or b"")

    ends = {(topic, p): (0, hi) for p, hi in end_offsets(kafka, topic, timeout_s).items()}
    with TopicTail(reader_config(kafka, "prophoto-ingest-probe"), [topic]) as tail:
        tail.next.update({(topic, p): at for p, at in since.items()})
        if not tail.read(time.monotonic() + timeout_s * 3, each, ends):
            raise KafkaUnavailable(f"timed out reading {topic}")
    return found
