"""Kafka's own truth for the status service, read in one bounded round: cluster metadata, the
group's members and committed offsets, each watched partition's log start and end, and the
timestamp of the oldest unconsumed record. Blocking (confluent-kafka); the service runs it
off the event loop. Every call gets what is left of one ``kafka_timeout_s`` budget.
"""

from __future__ import annotations

import time
import uuid as uuid_mod
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec as _OffsetSpec  # type: ignore[attr-defined]

from streams import kafka
from streams.errors import KafkaUnavailable
from streams.headers import DEAD_LETTER_ID_HEADER
from streams.pauses import Pause, PauseTail
from streams.settings import Settings
from streams.topics import Job, Topics

from .deadletters import DeadLetterTally
from .errors import KafkaLate, KafkaUnreachable
from .heartbeats import HeartbeatTail, Seen

TP = tuple[str, int]
Kind = Literal["job", "retry"]

OffsetSpec: Any = _OffsetSpec  # its factory methods carry no annotations

# The group states in which members hold no stable assignment (librdkafka's names).
REBALANCING = {"PREPARING_REBALANCING", "COMPLETING_REBALANCING"}


@dataclass(frozen=True)
class Watched:
    """A topic the service judges, and the stall threshold that suits it."""

    name: str
    job: Job
    kind: Kind
    threshold_s: float


def watched_topics(settings: Settings) -> list[Watched]:
    topics = Topics.from_settings(settings.kafka)
    t = settings.status.stall_threshold_s
    # A retry record waits in its agent until its backoff is over, committed offset still;
    # that wait is not a stall.
    retry_t = t + settings.worker.backoff_max_s
    out: list[Watched] = []
    for job in Job:
        out.append(Watched(topics.job(job), job, "job", t))
        out.append(Watched(topics.retry(job), job, "retry", retry_t))
    return out


def dead_letter_topics(settings: Settings) -> list[str]:
    topics = Topics.from_settings(settings.kafka)
    return [topics.dead_letter(job) for job in Job]


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str
    assigned: tuple[TP, ...]


@dataclass(frozen=True)
class PartitionOffsets:
    topic: str
    partition: int
    begin: int
    end: int
    committed: int | None  # None: the group has never committed here
    oldest_ts: float | None = None  # timestamp (s) of the record at the committed offset
    error: str | None = None


@dataclass(frozen=True)
class DeadLetterDepth:
    total: int
    per_topic: dict[str, int]
    note: str


@dataclass(frozen=True)
class KafkaRound:
    taken_at: float
    duration_s: float
    cluster_id: str | None
    brokers: int
    group_state: str
    members: tuple[Member, ...]
    partitions: tuple[PartitionOffsets, ...]
    missing_topics: tuple[str, ...]
    dead_letters: DeadLetterDepth
    calls: int
    heartbeats: tuple[Seen, ...] = ()  # the latest of each worker seen in the last hour
    operator_pauses: dict[str, Pause] = field(default_factory=dict)  # job topic -> pause

    @property
    def rebalancing(self) -> bool:
        return self.group_state in REBALANCING


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp: float | None
    headers: dict[str, str]  # the ones an operator acts on (deadletters.SHOWN_HEADERS)
    state: str = "unresolved"


@dataclass
class DeadLetterLookup:
    records: list[DeadLetter] = field(default_factory=list)
    scanned: int = 0
    complete: bool = True
    note: str = ""


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def left(self, floor: float = 0.05) -> float:
        return max(floor, self.deadline - time.monotonic())

    @property
    def spent(self) -> bool:
        return time.monotonic() >= self.deadline


def _err_text(err: Any) -> str:
    return str(err.str() if hasattr(err, "str") else err)


def _err(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    text = arg.str() if hasattr(arg, "str") else str(arg)
    return text or type(exc).__name__


def dead_letter_depth(
    tally: DeadLetterTally, topics: Topics, watermarks: Mapping[TP, tuple[int, int]], deadline: float
) -> DeadLetterDepth:
    """Failed jobs: dead letters not yet resolved (replayed, forgotten or flushed)."""
    per_topic, caught_up = tally.update(watermarks, deadline)
    for job in Job:
        per_topic.setdefault(topics.dead_letter(job), 0)
    note = "unresolved dead letters" if caught_up else \
        "unresolved dead letters (still reading the dead-letter history; the count may grow)"
    return DeadLetterDepth(total=sum(per_topic.values()), per_topic=per_topic, note=note)


def _wait(fs: Iterable[futures.Future[Any]], budget: _Budget, what: str) -> None:
    pending = list(fs)
    _, not_done = futures.wait(pending, timeout=budget.left())
    if not_done:
        raise KafkaLate(f"no answer to {what} within {budget.seconds:g} s")


class Probe:
    """One AdminClient and one peeking Consumer, kept for the life of the service."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.topics = Topics.from_settings(settings.kafka)
        self.watched = watched_topics(settings)
        self.dlq = dead_letter_topics(settings)
        self.group = settings.kafka.group_id
        self.timeout_s = settings.status.kafka_timeout_s
        ms = int(self.timeout_s * 1000)
        self._admin = kafka.admin(settings.kafka, {"socket.timeout.ms": max(ms, 10), "log_level": 2})
        peek = f"{self.group}.status-peek"
        self._consumer = kafka.consumer(settings.kafka, peek, self._consumer_conf(peek))
        self._offsets = kafka.consumer(settings.kafka, self.group, self._consumer_conf(self.group))
        self._tally = DeadLetterTally(
            {**self._consumer_conf(f"{self.group}.status-dlq"), "max.partition.fetch.bytes": 1048576},
            self.topics, self.dlq,
        )
        self._beats = HeartbeatTail(self._consumer_conf(f"{self.group}.status-beats"),
                                    self.topics.heartbeats, clock=clock)
        self._pauses = PauseTail(settings.kafka, self.topics.pauses, f"{self.group}.status-pauses")
        self.rounds = 0
        self.calls = 0
        self._oldest: dict[TP, tuple[int, float]] = {}  # committed position -> its timestamp

    def _consumer_conf(self, group: str) -> dict[str, Any]:
        return {
            **self.settings.kafka.confluent_config(),
            # Never subscribes (so never joins) and never commits.
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": 20,
            "max.partition.fetch.bytes": 65536,
            "queued.max.messages.kbytes": 4096,
            "socket.timeout.ms": max(int(self.timeout_s * 1000), 10),
            # Connection failures are the status document's to report, not stderr's.
            "log_level": 2,
        }

    def close(self) -> None:
        self._consumer.close()
        self._offsets.close()
        self._tally.close()
        self._beats.close()
        self._pauses.close()

    # -- the round ----------------------------------------------------------------------
    def round(self) -> KafkaRound:
        """One round of queries. Raises KafkaUnreachable or KafkaLate."""
        self.rounds += 1
        calls_before = self.calls
        budget = _Budget(self.timeout_s)
        start = time.monotonic()
        taken_at = self.clock()
        md = self._metadata(budget)
        names = [w.name for w in self.watched] + self.dlq
        tps = [
            (name, p)
            for name in names
            if (t := md.topics.get(name)) is not None and t.error is None
            for p in sorted(t.partitions)
        ]
        missing = tuple(n for n in names if n not in {t for t, _ in tps})
        watermarks, committed, errors, group = self._offsets_and_group(tps, budget)
        members = tuple(_member(m) for m in group.members) if group is not None else ()
        state = group.state.name if group is not None else "UNKNOWN"
        dlq = set(self.dlq)
        job_parts = [
            PartitionOffsets(t, p, *watermarks[(t, p)], committed.get((t, p)),
                             error=errors.get((t, p)))
            for t, p in tps if t not in dlq and (t, p) in watermarks
        ]
        job_parts = self._peek(job_parts, budget)
        depth = dead_letter_depth(
            self._tally, self.topics,
            {tp: wm for tp, wm in watermarks.items() if tp[0] in dlq}, budget.deadline,
        )
        beats = tuple(self._beats.update(budget.deadline).values())
        try:
            pauses = self._pauses.update(budget.left())
        except KafkaUnavailable:
            pauses = dict(self._pauses.pauses)  # late this round: the last state read
        return KafkaRound(
            taken_at=taken_at, duration_s=time.monotonic() - start,
            cluster_id=md.cluster_id, brokers=len(md.brokers), group_state=state,
            members=members, partitions=tuple(job_parts), missing_topics=missing,
            dead_letters=depth, calls=self.calls - calls_before, heartbeats=beats,
            operator_pauses=pauses,
        )

    def _metadata(self, budget: _Budget) -> Any:
        self.calls += 1
        try:
            md = self._admin.list_topics(timeout=budget.left())
        except KafkaException as exc:
            raise KafkaUnreachable(
                f"no answer from {self.settings.kafka.bootstrap_servers} within "
                f"{budget.seconds:g} s ({_err(exc)})"
            ) from None
        if not md.brokers:
            raise KafkaUnreachable(f"{self.settings.kafka.bootstrap_servers} lists no brokers")
        return md

    def _offsets_and_group(
        self, tps: list[TP], budget: _Budget
    ) -> tuple[dict[TP, tuple[int, int]], dict[TP, int], dict[TP, str], Any]:
        t = budget.left()
        self.calls += 4
        f_group = self._admin.describe_consumer_groups([self.group], request_timeout=t)[self.group]
        specs = [TopicPartition(name, p) for name, p in tps]
        f_begin = self._admin.list_offsets({tp: OffsetSpec.earliest() for tp in specs}, request_timeout=t) \
            if specs else {}
        f_end = self._admin.list_offsets({tp: OffsetSpec.latest() for tp in specs}, request_timeout=t) \
            if specs else {}
        # Committed offsets through a consumer of the group itself (it never joins or
        # commits), not AdminClient.list_consumer_group_offsets: librdkafka's admin
        # OffsetFetch crashes the process when the group coordinator is loading or moving
        # (rd_kafka_cgrp_op on a client with no group), as on a broker restart.
        committed: dict[TP, int] = {}
        errors: dict[TP, str] = {}
        try:
            for tp in self._offsets.committed(specs, timeout=budget.left()) if specs else []:
                if tp.error is not None:
                    # Not "never committed": that would count the whole log as lag.
                    errors[(tp.topic, tp.partition)] = f"committed offset unreadable: {_err_text(tp.error)}"
                elif tp.offset >= 0:
                    committed[(tp.topic, tp.partition)] = tp.offset
        except KafkaException as exc:
            raise KafkaLate(f"committed offsets of group {self.group}: {_err(exc)}") from None
        _wait([f_group, *f_begin.values(), *f_end.values()], budget, "the offset queries")
        watermarks: dict[TP, tuple[int, int]] = {}
        for tp, fut in f_end.items():
            try:
                begin = f_begin[tp].result().offset
                end = fut.result().offset
            except KafkaException as exc:
                raise KafkaLate(f"offsets of {tp.topic}/{tp.partition}: {_err(exc)}") from None
            watermarks[(tp.topic, tp.partition)] = (begin, end)
        try:
            group = f_group.result()
        except KafkaException as exc:
            raise KafkaLate(f"members of group {self.group}: {_err(exc)}") from None
        return watermarks, committed, errors, group

    def _peek(self, parts: list[PartitionOffsets], budget: _Budget) -> list[PartitionOffsets]:
        """Read the timestamp of the record at each lagging partition's committed offset.

        Best effort within the budget: a partition left unread keeps ``oldest_ts`` None and
        the evaluation falls back to how long the lag has been seen.
        """
        lagging = {(p.topic, p.partition): p for p in parts if _lagging(p)}
        # A record's timestamp never changes: read it once per committed offset.
        found: dict[TP, float | None] = {
            tp: self._oldest[tp][1] for tp, p in lagging.items()
            if tp in self._oldest and self._oldest[tp][0] == _position(p)
        }
        self._oldest = {tp: self._oldest[tp] for tp in found}
        todo = {tp: p for tp, p in lagging.items() if tp not in found}
        if todo:
            self.calls += 1
            self._consumer.assign([
                TopicPartition(p.topic, p.partition, _position(p)) for p in todo.values()
            ])
            try:
                while len(found) < len(lagging) and not budget.spent:
                    for m in self._consumer.consume(len(todo), timeout=min(budget.left(), 0.02)):
                        key = (m.topic() or "", m.partition() or 0)
                        if m.error() is None and key in todo and key not in found:
                            found[key] = ts = _timestamp(m)
                            # Only the record at the committed offset itself: retention may
                            # have moved the position on, and then it is a lower bound.
                            if m.offset() == _position(todo[key]) and ts is not None:
                                self._oldest[key] = (_position(todo[key]), ts)
            finally:
                self._consumer.unassign()
        return [
            PartitionOffsets(p.topic, p.partition, p.begin, p.end, p.committed,
                             found.get((p.topic, p.partition)), p.error)
            for p in parts
        ]

    # -- dead letters of one upload -------------------------------------------------------
    def lookup_dead_letters(self, uuid: str) -> DeadLetterLookup:
        """Every dead letter keyed by ``uuid``, from the index the failed count keeps: no
        scan, whatever the size of the dead-letter history (as of the last round)."""
        key = str(uuid_mod.UUID(uuid))
        found = self._tally.lookup(key)
        out = DeadLetterLookup(scanned=0, complete=self._tally.caught_up)
        if not out.complete:
            out.note = "the dead-letter history is still being read; more may appear"
        for d in found:
            state = "resolved" if d.headers.get(DEAD_LETTER_ID_HEADER, "") in self._tally.resolved \
                else "unresolved"
            out.records.append(DeadLetter(topic=d.topic, partition=d.partition, offset=d.offset,
                                          timestamp=d.timestamp, headers=d.headers, state=state))
        out.records.sort(key=lambda d: (d.timestamp or 0, d.topic, d.offset))
        return out


def _lagging(p: PartitionOffsets) -> bool:
    return p.error is None and kafka.lag(p.begin, p.end, p.committed) > 0


def _position(p: PartitionOffsets) -> int:
    return kafka.position(p.begin, p.committed)


def _timestamp(m: Message) -> float | None:
    kind, ms = m.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE or ms < 0 else ms / 1000


def _member(m: Any) -> Member:
    tps = getattr(m.assignment, "topic_partitions", None) or []
    return Member(
        member_id=m.member_id, client_id=m.client_id, host=m.host,
        assigned=tuple(sorted((tp.topic, tp.partition) for tp in tps)),
    )
