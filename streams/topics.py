"""Every topic the system uses, declared once: name, partitions, priority, dead-letter twin.

The CLI, the status service and the tests import names from here; no topic name is typed
twice. Job topics share one partition count so that one image UUID, hashed with Kafka's
murmur2 partitioner, lands on the same partition number of every topic.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from . import kafka as kafka_clients  # the parameters named kafka are settings
from .settings import KafkaSettings


class Job(enum.StrEnum):
    """The three jobs, in priority order (first = highest)."""

    INGEST = "ingest"
    PREVIEW = "preview"
    ENHANCE = "enhance"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    priority: int = 99  # lower drains first; only job topics have a real one
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)
    # Config keys an existing topic must have as declared (checked at start): for topics
    # whose records may not silently expire.
    enforced: tuple[str, ...] = ()

    def kafka_config(self) -> dict[str, str]:
        conf = dict(self.config)
        if self.compacted:
            conf["cleanup.policy"] = "compact"
        return conf


# Base names; a deployment may prefix them (KafkaSettings.topic_prefix).
JOB_TOPICS: dict[Job, str] = {
    Job.INGEST: "ingest",
    Job.PREVIEW: "ingest-preview",
    Job.ENHANCE: "ingest-enhance",
}
DEAD_LETTER_SUFFIX = ".dlq"
RETRY_SUFFIX = ".retry"
TRACES = "ingest-traces"
IMAGES = "images"
DEAD_LETTER_STATE = "ingest-dlq-state"
CONTROL = "ingest-control"
DELIVERIES = "ingest-deliveries"
HEARTBEATS = "ingest-heartbeats"
PAUSES = "ingest-pauses"


@dataclass(frozen=True)
class Topics:
    """Concrete topic names and specs for one deployment (prefix + partition count)."""

    prefix: str
    partitions: int

    # How long an unresolved dead letter is kept (ms); -1: until it is resolved.
    dead_letter_retention_ms: int = -1

    @classmethod
    def from_settings(cls, kafka: KafkaSettings) -> Topics:
        return cls(prefix=kafka.topic_prefix, partitions=kafka.partitions,
                   dead_letter_retention_ms=kafka.dead_letter_retention_ms)

    def _n(self, base: str) -> str:
        return f"{self.prefix}{base}"

    def job(self, job: Job) -> str:
        return self._n(JOB_TOPICS[job])

    def dead_letter(self, job: Job) -> str:
        return self.job(job) + DEAD_LETTER_SUFFIX

    def retry(self, job: Job) -> str:
        return self.job(job) + RETRY_SUFFIX

    @property
    def traces(self) -> str:
        return self._n(TRACES)

    @property
    def traces_dead_letter(self) -> str:
        return self.traces + DEAD_LETTER_SUFFIX

    @property
    def images(self) -> str:
        return self._n(IMAGES)

    @property
    def dead_letter_state(self) -> str:
        return self._n(DEAD_LETTER_STATE)

    @property
    def control(self) -> str:
        return self._n(CONTROL)

    @property
    def deliveries(self) -> str:
        return self._n(DELIVERIES)

    @property
    def heartbeats(self) -> str:
        return self._n(HEARTBEATS)

    @property
    def pauses(self) -> str:
        return self._n(PAUSES)

    def job_for_topic(self, name: str) -> Job | None:
        for job in Job:
            if name in (self.job(job), self.retry(job), self.dead_letter(job)):
                return job
        return None

    def parse_jobs(self, names: str | list[str]) -> list[Job]:
        """Turn ``ingest,ingest-preview`` (topic names or job names) into jobs, order kept."""
        items = names.split(",") if isinstance(names, str) else names
        jobs: list[Job] = []
        for raw in (i.strip() for i in items):
            if not raw:
                continue
            job = self.job_for_topic(raw) or self.job_for_topic(self._n(raw))
            if job is None:
                job = next((j for j in Job if j.value == raw), None)
            if job is None:
                known = ", ".join(self.job(j) for j in Job)
                raise ValueError(f"unknown topic {raw!r}; known job topics: {known}")
            if job not in jobs:
                jobs.append(job)
        return jobs

    def specs(self) -> list[TopicSpec]:
        n = self.partitions
        out: list[TopicSpec] = []
        # Dead letters wait for an operator (failed / replay / forget), however long that
        # takes: the broker's default 7 days would delete unresolved failures.
        kept = {"retention.ms": str(self.dead_letter_retention_ms), "retention.bytes": "-1",
                "cleanup.policy": "delete"}
        for prio, job in enumerate(Job):
            out.append(TopicSpec(self.job(job), n, priority=prio))
            out.append(TopicSpec(self.retry(job), n, priority=prio))
            out.append(TopicSpec(self.dead_letter(job), n, config=kept,
                                 enforced=("retention.ms", "cleanup.policy")))
        out.append(TopicSpec(self.traces, n))
        out.append(TopicSpec(self.traces_dead_letter, n))
        out.append(TopicSpec(self.images, n, compacted=True))
        out.append(TopicSpec(self.dead_letter_state, 1, compacted=True,
                             enforced=("cleanup.policy",)))
        out.append(TopicSpec(self.control, 1, config={"retention.ms": str(24 * 3600 * 1000)}))
        # Workers' heartbeats (streams/heartbeat.py): only the last minutes matter.
        # Operator pauses (streams/pauses.py): the latest per topic is the state, for ever.
        out.append(TopicSpec(self.pauses, 1, compacted=True, enforced=("cleanup.policy",)))
        # The broker stamps them: their age is read against one clock, not each worker's.
        out.append(TopicSpec(self.heartbeats, 1, config={
            "retention.ms": str(15 * 60 * 1000), "segment.ms": str(5 * 60 * 1000),
            "message.timestamp.type": "LogAppendTime"}))
        # Delivery counts of records in flight (streams/worker/deliveries.py): nearly every key is
        # tombstoned within seconds, so compact often and keep tombstones an hour.
        out.append(TopicSpec(self.deliveries, n, compacted=True, config={
            "segment.ms": str(3600 * 1000), "delete.retention.ms": str(3600 * 1000),
            "min.cleanable.dirty.ratio": "0.1"}))
        return out


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's and aiokafka's default partitioner hash)."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (
            (data[i4 + 0] & 0xFF)
            + ((data[i4 + 1] & 0xFF) << 8)
            + ((data[i4 + 2] & 0xFF) << 16)
            + ((data[i4 + 3] & 0xFF) << 24)
        )
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    if extra >= 3:
        h ^= (data[(length & ~3) + 2] & 0xFF) << 16
    if extra >= 2:
        h ^= (data[(length & ~3) + 1] & 0xFF) << 8
    if extra >= 1:
        h ^= data[length & ~3] & 0xFF
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class TopicMismatch(RuntimeError):
    """An existing topic has a partition count other than the declared one."""


def ensure_topics(kafka: KafkaSettings, specs: list[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create missing topics; raise TopicMismatch if an existing one has other partitions
    or, for topics whose records must not expire, other retention or cleanup settings.

    Returns the names created.
    """
    admin = kafka_clients.admin(kafka)
    md = admin.list_topics(timeout=timeout)
    problems: list[str] = []
    missing: list[TopicSpec] = []
    for spec in specs:
        existing = md.topics.get(spec.name)
        if existing is None or existing.error is not None:
            missing.append(spec)
        elif len(existing.partitions) != spec.partitions:
            problems.append(
                f"topic {spec.name!r} has {len(existing.partitions)} partitions, "
                f"declared {spec.partitions}: the same UUID would land on different partition "
                "numbers; recreate it or set INGEST_KAFKA__PARTITIONS to match"
            )
    if problems:
        raise TopicMismatch("; ".join(problems))
    created = _create(admin, kafka, missing, timeout) if missing else []
    # Every topic, not only those made here: workers started together find the topics one
    # of them has just created in the metadata before their leaders serve.
    _await_leaders(admin, [s.name for s in specs], timeout)
    # Checked after creating: a topic another process made meanwhile is checked too.
    problems = _config_problems(
        admin, kafka, [s for s in specs if s.enforced and s.name not in created], timeout
    )
    if problems:
        raise TopicMismatch("; ".join(problems))
    return created


def _await_leaders(admin: Any, names: list[str], timeout: float) -> None:
    """Return once every partition of ``names`` answers an offset query: a topic created a
    moment ago answers NOT_LEADER_FOR_PARTITION until its leaders are elected and loaded
    (metadata may name a leader before it serves), and the first command after ``topics
    create`` (or a worker's start) should not see that."""
    from confluent_kafka import KafkaException, TopicPartition
    from confluent_kafka.admin import OffsetSpec as _OffsetSpec  # type: ignore[attr-defined]

    latest: Any = _OffsetSpec.latest  # its factory methods carry no annotations

    deadline = time.monotonic() + timeout
    waiting = set(names)
    while True:
        left = max(0.1, deadline - time.monotonic())
        md = admin.list_topics(timeout=left)
        tps = [TopicPartition(n, p) for n in sorted(waiting)
               if (t := md.topics.get(n)) is not None and t.error is None for p in t.partitions]
        ready = {n for n in waiting if (t := md.topics.get(n)) is not None and t.error is None
                 and t.partitions and all(p.leader >= 0 for p in t.partitions.values())}
        if tps:
            futures = admin.list_offsets({tp: latest() for tp in tps},
                                         request_timeout=left)
            for tp, fut in futures.items():
                try:
                    fut.result(timeout=left)
                except KafkaException:
                    ready.discard(tp.topic)
        waiting -= ready
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise TopicMismatch(f"topics not serving offset queries within {timeout:g} s: "
                                + ", ".join(sorted(waiting)[:5]))
        time.sleep(0.2)


def _create(admin: Any, kafka: KafkaSettings, missing: list[TopicSpec], timeout: float) -> list[str]:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    futures = admin.create_topics(
        [
            NewTopic(s.name, s.partitions, kafka.replication_factor, config=s.kafka_config())
            for s in missing
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created: list[str] = []
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            err: Any = exc.args[0]
            if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a racing worker made it
                raise
    return created


def _config_problems(admin: Any, kafka: KafkaSettings, specs: list[TopicSpec],
                     timeout: float) -> list[str]:
    """Existing topics whose enforced settings differ from the declaration, each with the
    command that fixes it."""
    import time

    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    by_name = {s.name: s for s in specs}
    problems: list[str] = []
    for name, spec in by_name.items():
        deadline = time.monotonic() + 10
        while True:
            try:
                [fut] = admin.describe_configs([ConfigResource("topic", name)],
                                               request_timeout=timeout).values()
                current = fut.result(timeout=timeout)
                break
            except KafkaException as exc:
                # a topic made a moment ago (by a racing worker) may not be known yet
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART or \
                        time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        want = spec.kafka_config()
        wrong = {k: want[k] for k in spec.enforced
                 if k in want and (current.get(k) is None or current[k].value != want[k])}
        if wrong:
            have = ", ".join(f"{k}={current[k].value if k in current else '?'}" for k in wrong)
            fix = ",".join(f"{k}={v}" for k, v in wrong.items())
            problems.append(
                f"topic {spec.name!r} has {have}, declared {fix}: its records could be deleted "
                f"before anyone resolves them; fix it with: kafka-configs.sh --bootstrap-server "
                f"{kafka.bootstrap_servers} --alter --entity-type topics --entity-name {spec.name} "
                f"--add-config {fix}"
            )
    return problems
