"""A synchronous producer for the CLI and tools (upload, confirm, replay), on confluent-kafka.

It uses Kafka's murmur2 partitioner, the one faust's producer (aiokafka) and the Java
clients use, so a UUID lands on the same partition whoever publishes it. Every send is
confirmed; a broker that does not answer is a clear error, not a silent drop.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from .settings import KafkaSettings


class PublishError(RuntimeError):
    def __init__(self, message: str, delivered_keys: set[bytes] | None = None) -> None:
        super().__init__(message)
        self.delivered_keys = delivered_keys or set()


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
        self._p = Producer(conf)
        self._errors: list[str] = []
        self.delivered: list[tuple[str, int, int]] = []
        self.delivered_keys: set[bytes] = set()

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err.str()}")
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
                break
            except BufferError:
                self._p.poll(0.1)  # local queue full: let deliveries drain
        self._p.poll(0)

    def flush(self) -> list[tuple[str, int, int]]:
        """Wait for every send; raise PublishError naming what failed."""
        remaining = self._p.flush(self.timeout_s + 1)
        if remaining:
            self._errors.append(f"{remaining} record(s) not confirmed within {self.timeout_s:g} s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise PublishError("publish failed (is the broker reachable?): " + "; ".join(errors[:5]),
                               set(self.delivered_keys))
        done, self.delivered = self.delivered, []
        return done

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None:
            self.flush()
