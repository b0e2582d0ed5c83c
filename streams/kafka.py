"""Kafka mechanics shared by the worker, the operator tools and the status service.

Every confluent-kafka client is built here (``admin``, ``consumer``, ``producer``: the
cluster's settings plus what the caller adds), so security settings and defaults apply
to all of them alike; the worker's faust app takes the same settings in worker/app.py.

The one definition of lag: the workers reset to the earliest offset, so a group that never
committed on a partition, or committed below its log start (retention deleted those
records), resumes at the log start; only records from there on are waiting. A group's
description, asked again while its coordinator is still busy. And the one topic reader:
``TopicTail`` (read from where it was up to the end offsets seen now, within a deadline)
and ``read_to_end`` (a one-shot snapshot of topics up to the end offsets seen at the start).
"""

from __future__ import annotations

import time
import uuid as uuid_mod
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException, Message, TopicPartition

from .errors import KafkaUnavailable

if TYPE_CHECKING:
    from .settings import KafkaSettings

TP = tuple[str, int]


def position(begin: int, committed: int | None) -> int:
    """Where the group's next read of a partition starts."""
    if committed is None or committed < 0:
        return begin
    return max(committed, begin)


def lag(begin: int, end: int, committed: int | None) -> int:
    """Records waiting: from the group's position to the log end, never negative."""
    return max(0, end - position(begin, committed))


# ListOffsets takes a timestamp per partition, and the protocol reads -2 as the log start
# and -1 as the log end: asked through offsets_for_times, all partitions go in one request
# per leader, where get_watermark_offsets(cached=False) sends two requests per partition
# (a worker's lag check every second over 24 partitions was 48 requests, each the broker's
# CPU on a machine the jobs share).
_LOG_START, _LOG_END = -2, -1


def watermarks(consumer: Any, tps: Iterable[TP], timeout_s: float) -> dict[TP, tuple[int, int]]:
    """(log start, log end) of each partition, asked of the leaders now, in two requests;
    raises KafkaException when the broker does not answer for one of them."""
    wanted = list(tps)
    if not wanted:
        return {}
    answers: dict[int, dict[TP, int]] = {}
    for which in (_LOG_START, _LOG_END):
        got = consumer.offsets_for_times([TopicPartition(t, p, which) for t, p in wanted],
                                         timeout=timeout_s)
        for tp in got:
            if tp.error is not None:
                raise KafkaException(tp.error)
        answers[which] = {(tp.topic, tp.partition): tp.offset for tp in got}
    return {tp: (answers[_LOG_START][tp], answers[_LOG_END][tp]) for tp in wanted}


# A group's coordinator answers these while it is being elected or loading the offsets
# topic (a fresh broker, a restart): "ask again shortly", not "the broker is down".
_COORDINATOR_BUSY = ("NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE")


def describe_group(admin: Any, group: str, timeout_s: float,
                   clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> Any:
    """``admin.describe_consumer_groups`` for one group, asked again while its coordinator
    is busy, until ``timeout_s``; raises KafkaException (the last error) after that."""
    deadline = clock() + timeout_s
    while True:
        left = max(0.1, deadline - clock())
        try:
            return admin.describe_consumer_groups([group], request_timeout=left)[group].result(
                timeout=left)
        except KafkaException as exc:
            err: Any = exc.args[0] if exc.args else None
            name = err.name() if hasattr(err, "name") else ""
            if name not in _COORDINATOR_BUSY or clock() + 0.2 >= deadline:
                raise
        sleep(0.2)


def admin(kafka: KafkaSettings, conf: Mapping[str, Any] | None = None) -> Any:
    """An AdminClient for the cluster; ``conf`` adds librdkafka settings."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({**kafka.confluent_config(), **(conf or {})})


def delete_topics(kafka: KafkaSettings, prefix: str, timeout_s: float = 15.0) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a test's or a benchmark's
    own); the names deleted. Raises KafkaException when the broker does not do it."""
    client = admin(kafka)
    names = [t for t in client.list_topics(timeout=timeout_s).topics if t.startswith(prefix)]
    if names:
        for future in client.delete_topics(names, operation_timeout=timeout_s).values():
            future.result(timeout=timeout_s)
    return names


def consumer(kafka: KafkaSettings, group: str, conf: Mapping[str, Any] | None = None) -> Any:
    """A Consumer that uses ``group`` for committed offsets and never commits by itself:
    whoever commits (faust, the trace sink) does so explicitly."""
    from confluent_kafka import Consumer

    return Consumer({**kafka.confluent_config(), "group.id": group, "enable.auto.commit": False,
                     **(conf or {})})


def producer(kafka: KafkaSettings, conf: Mapping[str, Any] | None = None) -> Any:
    """A Producer for the cluster; ``conf`` adds librdkafka settings."""
    from confluent_kafka import Producer

    return Producer({**kafka.confluent_config(), **(conf or {})})


def reader_config(kafka: KafkaSettings, group: str | None = None, **extra: Any) -> dict[str, Any]:
    """A consumer that never subscribes (so never joins its group) and never commits."""
    return {**kafka.confluent_config(),
            "group.id": group or f"prophoto-ingest-reader-{uuid_mod.uuid4().hex[:8]}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest", **extra}


def _unavailable(exc: BaseException) -> KafkaUnavailable:
    arg: Any = exc.args[0] if exc.args else exc
    return KafkaUnavailable(f"Kafka error: {arg.str() if hasattr(arg, 'str') else arg}")


class TopicTail:
    """Partitions read from a kept position (or their log start) up to the end offsets seen
    at each call, within a deadline; then stop. Blocking (confluent-kafka): callers on an
    event loop run it in a thread. Every Kafka error is raised as ``KafkaUnavailable``.

    ``topics`` are read on all their partitions, looked up at each call (a partition or a
    topic added later is read from its start); ``read`` also takes the end offsets of given
    partitions instead. ``next`` is the resume position per partition, ``caught_up`` whether
    the last call reached every end offset it saw.
    """

    BATCH = 500
    POLL_S = 0.1

    def __init__(self, conf: Mapping[str, Any], topics: Iterable[str] = (), *,
                 clock: Callable[[], float] = time.monotonic, consumer: Any = None) -> None:
        if consumer is None:
            from confluent_kafka import Consumer

            consumer = Consumer(dict(conf))
        self._c = consumer
        self.servers = str(conf.get("bootstrap.servers", "?"))
        self.topics = list(topics)
        self.clock = clock
        self.next: dict[TP, int] = {}
        self.caught_up = False

    def __enter__(self) -> TopicTail:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._c.close()

    def _left(self, deadline: float) -> float:
        return max(0.05, deadline - self.clock())

    def partitions(self, deadline: float) -> list[TP]:
        """Every partition of ``topics`` the broker lists now; a missing topic has none."""
        try:
            md = self._c.list_topics(timeout=self._left(deadline))
        except KafkaException as exc:
            raise _unavailable(exc) from exc
        if not md.brokers:
            raise KafkaUnavailable(f"no broker answered at {self.servers}")
        return [(name, p) for name in self.topics
                if (t := md.topics.get(name)) is not None and t.error is None
                for p in sorted(t.partitions)]

    def watermarks(self, tps: Iterable[TP], deadline: float) -> dict[TP, tuple[int, int]]:
        """(log start, end) of each partition, asked of its leader now (not cached)."""
        try:
            return watermarks(self._c, tps, self._left(deadline))
        except KafkaException as exc:
            raise _unavailable(exc) from exc

    def offset_for_time(self, tp: TP, ms: int, deadline: float) -> int | None:
        """The first offset of ``tp`` at or after ``ms``; None when nothing is that new."""
        try:
            [found] = self._c.offsets_for_times([TopicPartition(*tp, ms)],
                                                timeout=self._left(deadline))
        except KafkaException as exc:
            raise _unavailable(exc) from exc
        return int(found.offset) if found.offset >= 0 else None

    def read(self, deadline: float, each: Callable[[Message], None],
             ends: Mapping[TP, tuple[int, int]] | None = None) -> bool:
        """Pass every record from the resume positions up to the end offsets (``ends``, or
        those of ``topics`` seen now) to ``each``, until the deadline; whether it caught up.
        The position moves past a record once ``each`` has returned."""
        if ends is None:
            ends = self.watermarks(self.partitions(deadline), deadline)
        todo: dict[TP, int] = {}
        for tp, (lo, hi) in ends.items():
            start = max(self.next.get(tp, lo), lo)
            self.next[tp] = start
            if hi > start:
                todo[tp] = hi
        if todo:
            try:
                self._c.assign([TopicPartition(t, p, self.next[(t, p)]) for t, p in todo])
                try:
                    while todo and self.clock() < deadline:
                        poll = min(self.POLL_S, max(0.0, deadline - self.clock()))
                        for m in self._c.consume(self.BATCH, timeout=poll):
                            if m.error() is not None:
                                continue  # partition EOF and transient errors: the ends decide
                            tp = (m.topic() or "", m.partition() or 0)
                            each(m)
                            self.next[tp] = (m.offset() or 0) + 1
                            if tp in todo and self.next[tp] >= todo[tp]:
                                del todo[tp]
                finally:
                    self._c.unassign()
            except KafkaException as exc:
                raise _unavailable(exc) from exc
        self.caught_up = not todo
        return self.caught_up

    def read_new(self, deadline: float,
                 ends: Mapping[TP, tuple[int, int]] | None = None) -> list[Message]:
        """The records ``read`` would pass on, as a list; on an error none is taken (the
        positions stay where they were)."""
        before = dict(self.next)
        out: list[Message] = []
        try:
            self.read(deadline, out.append, ends)
        except KafkaUnavailable:
            self.next = before
            raise
        return out


def read_to_end(kafka: KafkaSettings, topics: Iterable[str], timeout_s: float = 30.0) -> list[Message]:
    """Every record of ``topics`` up to the end offsets seen at the start (a snapshot);
    raises ``KafkaUnavailable`` when Kafka does not answer or the read takes longer."""
    names = list(topics)
    deadline = time.monotonic() + timeout_s
    with TopicTail(reader_config(kafka), names) as tail:
        start = time.monotonic() + kafka.request_timeout_s
        tps = tail.partitions(start)
        out = tail.read_new(deadline, tail.watermarks(tps, start))
        if not tail.caught_up:
            raise KafkaUnavailable(f"timed out reading {sorted(names)}")
    return out
