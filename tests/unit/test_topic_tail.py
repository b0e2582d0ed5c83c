"""streams.kafka.TopicTail on a fake consumer: resume positions, the deadline, partitions
added between calls, Kafka errors raised as the one KafkaUnavailable."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.errors import KafkaUnavailable
from streams.kafka import TopicTail
from streams.producer import PublishError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeConsumer:
    """Partitions as lists of values; ``consume`` serves from the assigned positions, a
    few records at a time, and moves the clock on by its poll timeout when it has none."""

    def __init__(self, logs: dict[tuple[str, int], list[bytes]], clock: Clock, *,
                 per_call: int = 2, begin: int = 0) -> None:
        self.logs = logs
        self.clock = clock
        self.per_call = per_call
        self.begin = begin
        self.pos: dict[tuple[str, int], int] = {}
        self.fail: KafkaException | None = None
        self.assigns: list[list[tuple[str, int, int]]] = []

    def list_topics(self, timeout: float) -> Any:
        topics: dict[str, Any] = {}
        for t, p in self.logs:
            topics.setdefault(t, NS(error=None, partitions={}))
            topics[t].partitions[p] = object()
        return NS(brokers={1: object()}, topics=topics)

    def offsets_for_times(self, tps: list[Any], timeout: float) -> list[Any]:
        """ListOffsets as the broker reads it: -2 the log start, -1 the log end."""
        if self.fail is not None:
            raise self.fail
        assert all(tp.offset in (-2, -1) for tp in tps)
        return [NS(topic=tp.topic, partition=tp.partition, error=None,
                   offset=self.begin if tp.offset == -2 else len(self.logs[(tp.topic, tp.partition)]))
                for tp in tps]

    def assign(self, tps: list[Any]) -> None:
        self.assigns.append([(tp.topic, tp.partition, tp.offset) for tp in tps])
        self.pos = {(tp.topic, tp.partition): tp.offset for tp in tps}

    def unassign(self) -> None:
        self.pos = {}

    def consume(self, n: int, timeout: float) -> list[Any]:
        out = []
        for tp, at in self.pos.items():
            for off in range(at, min(at + self.per_call, len(self.logs[tp]))):
                out.append(NS(topic=lambda t=tp[0]: t, partition=lambda p=tp[1]: p,
                              offset=lambda o=off: o, error=lambda: None,
                              value=lambda v=self.logs[tp][off]: v))
            self.pos[tp] = min(at + self.per_call, len(self.logs[tp]))
        self.clock.now += timeout if not out else 0.01
        return out

    def close(self) -> None:
        pass


def tail_of(logs: dict[tuple[str, int], list[bytes]], **kw: Any) -> tuple[TopicTail, FakeConsumer, Clock]:
    clock = Clock()
    fake = FakeConsumer(logs, clock, **kw)
    return TopicTail({}, sorted({t for t, _ in logs}), clock=clock, consumer=fake), fake, clock


def values(msgs: list[Any]) -> list[bytes]:
    return [m.value() for m in msgs]


def test_reads_to_the_end_seen_now_then_only_what_is_new() -> None:
    logs = {("a", 0): [b"a0", b"a1", b"a2"], ("a", 1): [b"b0"]}
    tail, fake, clock = tail_of(logs)
    assert sorted(values(tail.read_new(clock.now + 10))) == [b"a0", b"a1", b"a2", b"b0"]
    assert tail.caught_up and tail.next == {("a", 0): 3, ("a", 1): 1}
    assert tail.read_new(clock.now + 10) == [] and tail.caught_up
    logs[("a", 0)].append(b"a3")
    assert values(tail.read_new(clock.now + 10)) == [b"a3"]
    assert fake.assigns[-1] == [("a", 0, 3)]  # resumed where it was, nothing else assigned


def test_a_partition_added_later_is_read_from_its_start() -> None:
    logs = {("a", 0): [b"x"]}
    tail, _, clock = tail_of(logs)
    tail.read_new(clock.now + 10)
    logs[("a", 1)] = [b"y0", b"y1"]
    logs[("b", 0)] = [b"z"]
    tail.topics.append("b")
    assert sorted(values(tail.read_new(clock.now + 10))) == [b"y0", b"y1", b"z"]


def test_the_deadline_cuts_a_read_short_and_the_next_call_goes_on() -> None:
    logs = {("a", 0): [f"v{i}".encode() for i in range(10)]}
    tail, _, clock = tail_of(logs)
    first = tail.read_new(clock.now + 0.015)  # time for two consume calls
    assert not tail.caught_up and 0 < len(first) < 10
    rest = tail.read_new(clock.now + 10)
    assert tail.caught_up and values(first + rest) == [f"v{i}".encode() for i in range(10)]
    # A deadline already past reads nothing, and says so.
    logs[("a", 0)].append(b"late")
    assert tail.read_new(clock.now) == [] and not tail.caught_up


def test_the_log_start_wins_over_a_position_retention_deleted() -> None:
    logs = {("a", 0): [b"gone", b"gone", b"kept"]}
    tail, _, clock = tail_of(logs, begin=2)
    tail.next[("a", 0)] = 1
    assert values(tail.read_new(clock.now + 10)) == [b"kept"]


def test_kafka_errors_are_kafka_unavailable_and_keep_the_position() -> None:
    logs = {("a", 0): [b"a0"]}
    tail, fake, clock = tail_of(logs)
    tail.read_new(clock.now + 10)
    logs[("a", 0)].append(b"a1")
    fake.fail = KafkaException(KafkaError(KafkaError._TRANSPORT))
    with pytest.raises(KafkaUnavailable, match="Kafka error"):
        tail.read_new(clock.now + 10)
    assert tail.next == {("a", 0): 1}
    fake.fail = None
    assert values(tail.read_new(clock.now + 10)) == [b"a1"]


def test_one_class_for_kafka_not_answering() -> None:
    from status.errors import KafkaLate, KafkaUnreachable

    for cls in (KafkaLate, KafkaUnreachable, PublishError):
        assert issubclass(cls, KafkaUnavailable)
