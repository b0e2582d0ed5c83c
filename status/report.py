"""The status document (``GET /status``): pydantic models in the shape operators know, built
from one Kafka round (or its failure) and the health windows.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from streams.heartbeat import Heartbeat, LatencySummary, PausedTopic, summarize
from streams.settings import Settings
from streams.topics import Job, Topics

from . import health
from .health import State, Verdict
from .heartbeats import Seen
from .probe import KafkaRound, Member, Watched, watched_topics

# A worker whose heartbeat is older than this many of its intervals (and at least
# GONE_AFTER_S) is gone: a busy machine delays heartbeats by seconds.
GONE_AFTER_BEATS = 3
GONE_AFTER_S = 10.0


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class KafkaInfo(_Model):
    reachable: bool
    bootstrap: str
    cluster_id: str | None = None
    brokers: int = 0
    error: str | None = None
    round_s: float | None = None
    # When the service last had an answer (an unknown status says how old its truth is).
    last_good_at: datetime | None = None
    last_good_age_s: float | None = None


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
    paused_by_operator: str | None = None
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


class JobInFlight(_Model):
    uuid: str
    topic: str
    partition: int
    offset: int
    running_s: float


class WorkerInfo(_Model):
    """One worker process, from its heartbeat joined with the group's membership."""

    id: str
    state: Literal["running", "stopping", "gone", "no heartbeat"]
    member: bool  # in the consumer group now
    last_seen_s: float | None
    host: str | None = None
    pid: int | None = None
    version: str | None = None
    started_at: datetime | None = None
    topics: list[str] = []
    concurrency: int | None = None
    timeout_s: float | None = None
    jobs_done: int | None = None
    rss_bytes: int | None = None
    in_flight: list[JobInFlight] = []
    paused: list[PausedTopic] = []
    stopping: str | None = None
    assigned: list[Assignment] = []


class Latency(_Model):
    """Upload (record timestamp) to preview done, from the workers' heartbeats."""

    last_5m: LatencySummary
    last_60m: LatencySummary


class StatusReport(_Model):
    checked_at: datetime
    sample_age_s: float
    sample_interval_s: float
    kafka: KafkaInfo
    group: GroupInfo
    topics: dict[str, TopicStatus]
    jobs: Jobs
    worker: Worker
    workers: list[WorkerInfo] = []
    preview_latency: Latency | None = None

    def with_age(self, now: float) -> StatusReport:
        return self.model_copy(update={"sample_age_s": round(max(0.0, now - self.checked_at.timestamp()), 3)})


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def unreachable(
    settings: Settings, taken_at: float, error: str, last_good_at: float | None = None
) -> StatusReport:
    """The whole picture is unknown: the broker could not be asked, or answered late."""
    if last_good_at is None:
        since = "no round has answered since the service started"
        age = None
    else:
        age = round(max(0.0, taken_at - last_good_at), 1)
        since = f"the last good sample is {age:g} s old"
    return StatusReport(
        checked_at=_ts(taken_at), sample_age_s=0.0, sample_interval_s=settings.status.sample_interval_s,
        kafka=KafkaInfo(reachable=False, bootstrap=settings.kafka.bootstrap_servers, error=error,
                        last_good_at=_ts(last_good_at) if last_good_at is not None else None,
                        last_good_age_s=age),
        group=GroupInfo(id=settings.kafka.group_id, state="UNKNOWN", members=[]),
        topics={},
        jobs=Jobs(pending=0, ingest_pending=0, failed=0, failed_by_topic={},
                  note=f"counts unavailable: {error}"),
        worker=Worker(status=State.UNKNOWN, likely_running=None,
                      hint=f"cannot reach Kafka: {error}; {since}",
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
        self._topics = Topics.from_settings(settings.kafka)
        self._held_at: dict[tuple[str, int], float] = {}  # when a hold was last seen

    def build(self, rnd: KafkaRound) -> StatusReport:
        held = {tp for m in rnd.members for tp in m.assigned}
        now = rnd.taken_at
        contexts = _contexts(self._live(rnd), now, rnd.members)
        paused = self._operator_pauses(rnd)
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
            ctx = contexts.get(key, health.NO_CONTEXT)
            if p.topic in paused:  # the operator's word outranks what a worker last said
                ctx = dataclasses.replace(ctx, paused=paused[p.topic])
            if ctx.paused or ctx.busy or ctx.job_running_s is not None:
                self._held_at[key] = now
            elif key in self._held_at:
                ctx = dataclasses.replace(ctx, released_s=max(0.0, now - self._held_at[key]))
            v = (health.unknown(p.error) if p.error else
                 health.evaluate(list(win.samples), now, w.threshold_s, rebalancing=rnd.rebalancing,
                                 ctx=ctx))
            verdicts[f"{p.topic}/{p.partition}"] = v
            by_topic[p.topic].append(PartitionStatus(
                partition=p.partition, begin=p.begin, end=p.end, committed=p.committed,
                lag=v.lag, lag_s=_r(v.lag_s), since_moved_s=_r(v.since_moved_s),
                moved_seen=v.moved_seen, held=key in held, status=v.state, reason=v.reason,
            ))
        for key in set(self.windows) - seen:
            del self.windows[key]
            self._held_at.pop(key, None)  # topic deleted or shrunk: forget its history
        return self._report(rnd, by_topic, verdicts)

    def _operator_pauses(self, rnd: KafkaRound) -> dict[str, str]:
        """Watched topic -> why, for every job an operator paused (its retry topic too)."""
        out: dict[str, str] = {}
        for name, w in self.watched.items():
            pause = rnd.operator_pauses.get(self._topics.job(w.job))
            if pause is not None:
                out[name] = pause.describe()
        return out

    def _live(self, rnd: KafkaRound) -> list[Seen]:
        """Heartbeats of workers still beating and still in the group (a worker that left
        holds nothing back and runs nothing, whatever its last heartbeat said)."""
        members = {m.client_id for m in rnd.members}
        return [s for s in rnd.heartbeats
                if _alive(s, rnd.taken_at, self.settings.status.sample_interval_s)
                and s.beat.stopping is None and (s.beat.id in members or rnd.rebalancing)]

    def _workers(self, rnd: KafkaRound) -> list[WorkerInfo]:
        now = rnd.taken_at
        members = {m.client_id: m for m in rnd.members}
        out: list[WorkerInfo] = []
        for seen in sorted(rnd.heartbeats, key=lambda s: s.beat.id):
            b, age = seen.beat, max(0.0, now - seen.at)
            m = members.pop(b.id, None)
            alive = _alive(seen, now, self.settings.status.sample_interval_s)
            if not alive and m is None and age > 600:
                continue  # long gone: its latency still counts, the list stays short
            state: Literal["running", "stopping", "gone", "no heartbeat"] = (
                "gone" if not alive else "stopping" if b.stopping else "running")
            out.append(WorkerInfo(
                id=b.id, state=state, member=m is not None, last_seen_s=round(age, 1),
                host=b.host, pid=b.pid, version=b.version, started_at=_ts(b.started_at),
                topics=b.topics, concurrency=b.concurrency, timeout_s=b.timeout_s,
                jobs_done=b.jobs_done, rss_bytes=b.rss_bytes,
                in_flight=[JobInFlight(uuid=j.uuid, topic=j.topic, partition=j.partition,
                                       offset=j.offset,
                                       running_s=round(j.running_s + (age if alive else 0), 1))
                           for j in b.in_flight] if alive else [],
                paused=b.paused if alive else [], stopping=b.stopping,
                assigned=_assignments(m.assigned) if m else [],
            ))
        for cid, m in sorted(members.items()):
            out.append(WorkerInfo(id=cid, state="no heartbeat", member=True, last_seen_s=None,
                                  assigned=_assignments(m.assigned)))
        return out

    def _latency(self, rnd: KafkaRound) -> Latency:
        minutes = [lm for s in rnd.heartbeats for lm in s.beat.preview_latency]
        return Latency(last_5m=summarize(minutes, rnd.taken_at, 300),
                       last_60m=summarize(minutes, rnd.taken_at, 3600))

    def _report(
        self, rnd: KafkaRound, by_topic: dict[str, list[PartitionStatus]], verdicts: dict[str, Verdict]
    ) -> StatusReport:
        s = self.settings
        topics: dict[str, TopicStatus] = {}
        for name, parts in by_topic.items():
            w = self.watched[name]
            lags = [p.lag_s for p in parts if p.lag and p.lag_s is not None]
            topic_roll = health.rollup({str(p.partition): verdicts[f"{name}/{p.partition}"] for p in parts})
            pause = rnd.operator_pauses.get(self._topics.job(w.job))
            topics[name] = TopicStatus(
                job=w.job, kind=w.kind, exists=name not in rnd.missing_topics,
                paused_by_operator=pause.describe() if pause is not None else None,
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
            checked_at=_ts(rnd.taken_at), sample_age_s=0.0, sample_interval_s=s.status.sample_interval_s,
            kafka=KafkaInfo(reachable=True, bootstrap=s.kafka.bootstrap_servers,
                            cluster_id=rnd.cluster_id, brokers=rnd.brokers, round_s=_r(rnd.duration_s),
                            last_good_at=_ts(rnd.taken_at), last_good_age_s=0.0),
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
            workers=self._workers(rnd),
            preview_latency=self._latency(rnd),
        )


def _alive(seen: Seen, now: float, sample_interval_s: float) -> bool:
    # A beat may be up to one of its intervals old when written, plus one of ours when read.
    return now - seen.at <= max(GONE_AFTER_BEATS * seen.beat.interval_s, GONE_AFTER_S) + sample_interval_s


def _contexts(
    live: list[Seen], now: float, members: tuple[Member, ...] = ()
) -> dict[tuple[str, int], health.Context]:
    """Per partition: the longest job in flight on it, whether a worker holds it back, and
    whether its worker is busy with other jobs."""
    running: dict[tuple[str, int], tuple[float, float]] = {}
    paused: dict[tuple[str, int], str] = {}
    busy: dict[tuple[str, int], str] = {}
    holders = {m.client_id: m.assigned for m in members}
    for seen in live:
        b: Heartbeat = seen.beat
        age = max(0.0, now - seen.at)
        if len(b.in_flight) >= b.concurrency and all(
                j.running_s + age <= b.timeout_s for j in b.in_flight):
            for key in holders.get(b.id, ()):
                busy[key] = (f"waiting for a free slot: worker {b.id} runs {len(b.in_flight)} "
                             f"of {b.concurrency} jobs")
        for j in b.in_flight:
            key = (j.topic, j.partition)
            secs = j.running_s + age
            if key not in running or secs > running[key][0]:
                running[key] = (secs, b.timeout_s)
        for p in b.paused:
            for part in p.partitions:
                paused[(p.topic, part)] = p.reason
    out: dict[tuple[str, int], health.Context] = {}
    for key in running.keys() | paused.keys() | busy.keys():
        job = running.get(key)
        out[key] = health.Context(paused=paused.get(key), job_running_s=job[0] if job else None,
                                  job_timeout_s=job[1] if job else None, busy=busy.get(key))
    return out


def _assignments(tps: tuple[tuple[str, int], ...]) -> list[Assignment]:
    by: dict[str, list[int]] = {}
    for t, p in tps:
        by.setdefault(t, []).append(p)
    return [Assignment(topic=t, partitions=sorted(ps)) for t, ps in sorted(by.items())]
