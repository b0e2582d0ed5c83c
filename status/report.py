"""The status document (``GET /status``): pydantic models in the shape operators know, built
from one Kafka round (or its failure) and the health windows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from streams.settings import Settings
from streams.topics import Job

from . import health
from .health import State, Verdict
from .lag import KafkaRound, Watched, watched_topics


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class KafkaInfo(_Model):
    reachable: bool
    bootstrap: str
    cluster_id: str | None = None
    brokers: int = 0
    error: str | None = None
    round_s: float | None = None


class Assignment(_Model):
    topic: str
    partitions: list[int]


class MemberInfo(_Model):
    member_id: str
    client_id: str
    host: str
    assigned: list[Assignment]


class GroupInfo(_Model):
    id: str
    state: str
    members: list[MemberInfo]


class PartitionStatus(_Model):
    partition: int
    begin: int
    end: int
    committed: int | None
    lag: int
    lag_s: float | None
    since_moved_s: float | None
    moved_seen: bool
    held: bool
    status: State
    reason: str


class TopicTotals(_Model):
    end: int
    lag: int
    oldest_lag_s: float | None


class TopicStatus(_Model):
    job: Job
    kind: Literal["job", "retry"]
    exists: bool
    stall_threshold_s: float
    status: State
    partitions: list[PartitionStatus]
    totals: TopicTotals


class Jobs(_Model):
    driver: Literal["kafka"] = "kafka"
    pending: int
    ingest_pending: int
    failed: int
    failed_by_topic: dict[str, int]
    note: str


class Worker(_Model):
    status: State
    likely_running: bool | None
    hint: str
    members: int
    partitions: dict[State, list[str]]


class StatusReport(_Model):
    checked_at: datetime
    cache_age_s: float
    cache_s: float
    kafka: KafkaInfo
    group: GroupInfo
    topics: dict[str, TopicStatus]
    jobs: Jobs
    worker: Worker

    def with_age(self, now: float) -> StatusReport:
        return self.model_copy(update={"cache_age_s": round(max(0.0, now - self.checked_at.timestamp()), 3)})


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def unreachable(settings: Settings, taken_at: float, error: str) -> StatusReport:
    """The whole picture is unknown: the broker could not be asked, or answered late."""
    return StatusReport(
        checked_at=_ts(taken_at), cache_age_s=0.0, cache_s=settings.status.cache_s,
        kafka=KafkaInfo(reachable=False, bootstrap=settings.kafka.bootstrap_servers, error=error),
        group=GroupInfo(id=settings.kafka.group_id, state="UNKNOWN", members=[]),
        topics={},
        jobs=Jobs(pending=0, ingest_pending=0, failed=0, failed_by_topic={},
                  note=f"counts unavailable: {error}"),
        worker=Worker(status=State.UNKNOWN, likely_running=None, hint=f"cannot reach Kafka: {error}",
                      members=0, partitions={}),
    )


class Tracker:
    """The health windows of every watched partition, kept across rounds."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.watched: dict[str, Watched] = {w.name: w for w in watched_topics(settings)}
        horizon = 2 * max(w.threshold_s for w in self.watched.values())
        self.windows: dict[tuple[str, int], health.Window] = {}
        self._horizon = horizon

    def build(self, rnd: KafkaRound) -> StatusReport:
        held = {tp for m in rnd.members for tp in m.assigned}
        now = rnd.taken_at
        by_topic: dict[str, list[PartitionStatus]] = {name: [] for name in self.watched}
        verdicts: dict[str, Verdict] = {}
        seen: set[tuple[str, int]] = set()
        for p in rnd.partitions:
            w = self.watched.get(p.topic)
            if w is None:
                continue
            key = (p.topic, p.partition)
            seen.add(key)
            win = self.windows.setdefault(key, health.Window(self._horizon))
            sample = health.Sample(now, p.begin, p.end, p.committed, p.oldest_ts, key in held)
            win.add(sample)
            v = (health.unknown(p.error) if p.error else
                 health.evaluate(list(win.samples), now, w.threshold_s, rebalancing=rnd.rebalancing))
            verdicts[f"{p.topic}/{p.partition}"] = v
            by_topic[p.topic].append(PartitionStatus(
                partition=p.partition, begin=p.begin, end=p.end, committed=p.committed,
                lag=v.lag, lag_s=_r(v.lag_s), since_moved_s=_r(v.since_moved_s),
                moved_seen=v.moved_seen, held=key in held, status=v.state, reason=v.reason,
            ))
        for key in set(self.windows) - seen:
            del self.windows[key]  # topic deleted or shrunk: forget its history
        return self._report(rnd, by_topic, verdicts)

    def _report(
        self, rnd: KafkaRound, by_topic: dict[str, list[PartitionStatus]], verdicts: dict[str, Verdict]
    ) -> StatusReport:
        s = self.settings
        topics: dict[str, TopicStatus] = {}
        for name, parts in by_topic.items():
            w = self.watched[name]
            lags = [p.lag_s for p in parts if p.lag and p.lag_s is not None]
            topic_roll = health.rollup({str(p.partition): verdicts[f"{name}/{p.partition}"] for p in parts})
            topics[name] = TopicStatus(
                job=w.job, kind=w.kind, exists=name not in rnd.missing_topics,
                stall_threshold_s=w.threshold_s,
                status=topic_roll.state if parts else State.UNKNOWN,
                partitions=parts,
                totals=TopicTotals(end=sum(p.end for p in parts), lag=sum(p.lag for p in parts),
                                   oldest_lag_s=max(lags) if lags else None),
            )
        pending = sum(t.totals.lag for t in topics.values())
        ingest_pending = sum(t.totals.lag for t in topics.values() if t.job is Job.INGEST)
        members = len(rnd.members)
        roll = health.rollup(verdicts)
        if not verdicts:
            hint = "no job topic exists yet: no worker has ever started (it creates them)"
        else:
            hint = health.hint(roll, verdicts, members, pending)
        return StatusReport(
            checked_at=_ts(rnd.taken_at), cache_age_s=0.0, cache_s=s.status.cache_s,
            kafka=KafkaInfo(reachable=True, bootstrap=s.kafka.bootstrap_servers,
                            cluster_id=rnd.cluster_id, brokers=rnd.brokers, round_s=_r(rnd.duration_s)),
            group=GroupInfo(id=s.kafka.group_id, state=rnd.group_state, members=[
                MemberInfo(member_id=m.member_id, client_id=m.client_id, host=m.host,
                           assigned=_assignments(m.assigned))
                for m in rnd.members
            ]),
            topics=topics,
            jobs=Jobs(pending=pending, ingest_pending=ingest_pending, failed=rnd.dead_letters.total,
                      failed_by_topic=rnd.dead_letters.per_topic, note=rnd.dead_letters.note),
            worker=Worker(status=roll.state, likely_running=members > 0, hint=hint, members=members,
                          partitions={k: sorted(v) for k, v in roll.by_state.items()}),
        )


def _assignments(tps: tuple[tuple[str, int], ...]) -> list[Assignment]:
    by: dict[str, list[int]] = {}
    for t, p in tps:
        by.setdefault(t, []).append(p)
    return [Assignment(topic=t, partitions=sorted(ps)) for t, ps in sorted(by.items())]
