"""Heartbeats: what a worker says of itself, and how the status service joins it with the
group's membership and the offsets."""

from __future__ import annotations

import time
from typing import Any

import pytest

from status import metrics
from status.health import State
from status.heartbeats import Seen
from status.probe import DeadLetterDepth, KafkaRound, Member, PartitionOffsets
from status.report import Tracker
from streams.heartbeat import Heartbeat, InFlightJob, LatencySketch, PausedTopic, summarize
from streams.pauses import Pause, decode
from streams.settings import KafkaSettings, Settings
from streams.topics import Job, Topics
from streams.worker.runtime import Limits, WorkerRuntime

S = Settings(kafka={"topic_prefix": "h-", "partitions": 2},  # type: ignore[arg-type]
             status={"stall_threshold_s": 30, "sample_interval_s": 5})
TOPICS = Topics.from_settings(S.kafka)
PREVIEW, INGEST = TOPICS.job(Job.PREVIEW), TOPICS.job(Job.INGEST)


def beat(wid: str, **kw: Any) -> Heartbeat:
    base: dict[str, Any] = dict(id=wid, host=wid.split(":")[0], pid=int(wid.split(":")[1]),
                                version="0.1.0", started_at=0.0, sent_at=0.0, interval_s=3.0,
                                topics=[INGEST, PREVIEW], concurrency=2, timeout_s=120.0,
                                jobs_done=7)
    return Heartbeat(**{**base, **kw})


def rnd(t: float, parts: list[tuple[str, int, int, int | None]], members: list[str],
        beats: list[Seen], pauses: dict[str, Pause] | None = None) -> KafkaRound:
    return KafkaRound(
        taken_at=t, duration_s=0.01, cluster_id="c", brokers=1, group_state="STABLE",
        members=tuple(Member(f"m-{m}", m, "/127.0.0.1", tuple((topic, p) for topic, p, _, _ in parts))
                      for m in members),
        partitions=tuple(PartitionOffsets(topic, p, 0, end, c, t - 500 if end > (c or 0) else None)
                         for topic, p, end, c in parts),
        missing_topics=(), dead_letters=DeadLetterDepth(0, {}, ""), calls=1, heartbeats=tuple(beats),
        operator_pauses=pauses or {},
    )


def test_a_long_job_seen_through_heartbeats_is_processing_with_its_running_time() -> None:
    tracker = Tracker(S)
    parts = [(PREVIEW, 0, 5, 4), (PREVIEW, 1, 3, 3)]
    for t in range(0, 100, 5):  # the committed offset frozen for 95 s
        job = InFlightJob(topic=PREVIEW, partition=0, offset=4, uuid="u1", running_s=float(t))
        report = tracker.build(rnd(1000.0 + t, parts, ["w:1"],
                                   [Seen(beat("w:1", in_flight=[job]), 1000.0 + t)]))
    p0 = report.topics[PREVIEW].partitions[0]
    assert p0.status is State.PROCESSING, p0.reason
    assert "job running 95 s of its 120 s timeout" in p0.reason
    assert report.workers[0].in_flight[0].running_s == pytest.approx(95.0)


def test_without_the_heartbeat_the_same_offsets_are_a_stall() -> None:
    tracker = Tracker(S)
    for t in range(0, 100, 5):
        report = tracker.build(rnd(1000.0 + t, [(PREVIEW, 0, 5, 4)], ["w:1"], []))
    assert report.topics[PREVIEW].partitions[0].status is State.STALLED
    assert [(w.id, w.state) for w in report.workers] == [("w:1", "no heartbeat")]


def test_a_paused_partition_is_waiting_for_priority_while_its_worker_beats() -> None:
    tracker = Tracker(S)
    paused = PausedTopic(topic=PREVIEW, partitions=[0], reason="waiting for priority: h-ingest has 9")
    for t in range(0, 120, 5):
        report = tracker.build(rnd(1000.0 + t, [(PREVIEW, 0, 50, 10), (INGEST, 0, 9, 0)], ["w:1"],
                                   [Seen(beat("w:1", paused=[paused]), 1000.0 + t)]))
    p0 = report.topics[PREVIEW].partitions[0]
    assert p0.status is State.PENDING and "waiting for priority" in p0.reason
    # Its last heartbeat 30 s old (3 intervals + one sample): gone, and the pause with it.
    report = tracker.build(rnd(1150.0, [(PREVIEW, 0, 50, 10)], ["w:1"],
                               [Seen(beat("w:1", paused=[paused]), 1119.0)]))
    assert report.topics[PREVIEW].partitions[0].status is State.STALLED
    assert report.workers[0].state == "gone" and report.workers[0].paused == []


def test_workers_listed_by_their_own_ids_joined_with_membership() -> None:
    beats = [Seen(beat("host-a:11", rss_bytes=50_000_000), 995.0),
             Seen(beat("host-a:12", stopping="signal SIGTERM"), 999.0),
             Seen(beat("host-b:7"), 900.0)]  # stopped beating 100 s ago
    report = Tracker(S).build(rnd(1000.0, [(PREVIEW, 0, 0, None)], ["host-a:11", "host-a:12", "faust-x"],
                                  beats))
    got = {w.id: (w.state, w.member) for w in report.workers}
    assert got == {"host-a:11": ("running", True), "host-a:12": ("stopping", True),
                   "host-b:7": ("gone", False), "faust-x": ("no heartbeat", True)}
    a11 = next(w for w in report.workers if w.id == "host-a:11")
    assert (a11.host, a11.pid, a11.jobs_done, a11.rss_bytes, a11.last_seen_s) == \
        ("host-a", 11, 7, 50_000_000, 5.0)
    assert a11.assigned[0].topic == PREVIEW


def test_latency_sketch_percentiles_within_a_bucket_and_exact_max() -> None:
    sk = LatencySketch()
    now = 1_000_000.0
    for i in range(1, 101):
        sk.add(i / 10, now=now - 30)  # 0.1 .. 10 s
    sk.add(500.0, now=now - 1800)  # half an hour ago: only in the hour
    five, hour = summarize(sk.minutes(), now, 300), summarize(sk.minutes(), now, 3600)
    assert five.count == 100 and hour.count == 101
    assert five.p50_s is not None and 5.0 <= five.p50_s <= 5.0 * 1.1
    assert five.p95_s is not None and 9.5 <= five.p95_s <= 9.5 * 1.1
    assert five.max_s == 10.0 and hour.max_s == 500.0
    assert summarize([], now, 300).p50_s is None


def test_sketches_of_two_workers_add_up_in_the_report() -> None:
    a, b = LatencySketch(), LatencySketch()
    for _ in range(10):
        a.add(1.0, now=990.0)
        b.add(4.0, now=990.0)
    beats = [Seen(beat("w:1", preview_latency=a.minutes()), 999.0),
             Seen(beat("w:2", preview_latency=b.minutes()), 999.0)]
    report = Tracker(S).build(rnd(1000.0, [(PREVIEW, 0, 0, None)], ["w:1", "w:2"], beats))
    lat = report.preview_latency
    assert lat is not None and lat.last_5m.count == 20 and lat.last_5m.max_s == 4.0
    assert lat.last_5m.p50_s is not None and lat.last_5m.p50_s <= 1.1
    text = metrics.render(report, rounds=1, late=0)
    assert 'ingest_preview_latency_seconds{window="5m",quantile="1"} 4' in text
    assert 'ingest_preview_latency_count{window="60m"} 20' in text
    assert 'ingest_workers{state="running"} 2' in text


async def test_the_runtime_heartbeat_names_its_jobs_and_its_pauses() -> None:
    class TP:
        def __init__(self, topic: str, partition: int) -> None:
            self.topic, self.partition = topic, partition

    rt = WorkerRuntime(kafka=KafkaSettings(), topics=TOPICS, jobs=[Job.INGEST, Job.PREVIEW],
                       concurrency=2, grace_s=1, limits=Limits(), worker_id="host-z:42",
                       timeout_s=120.0)
    rt.assignment = lambda: {TP(PREVIEW, 0), TP(PREVIEW, 1), TP(INGEST, 0)}
    rt._apply_priority({(INGEST, 0): 5, (PREVIEW, 0): 3})
    async with rt.slot(Job.INGEST, (INGEST, 0, 17, "uuid-1")):
        time.sleep(0.01)
        hb = rt.heartbeat(rss_bytes=123)
    assert (hb.id, hb.host, hb.pid, hb.concurrency, hb.timeout_s) == ("host-z:42", "host-z", 42, 2, 120.0)
    assert hb.topics[:2] == [INGEST, TOPICS.retry(Job.INGEST)]
    assert [(j.topic, j.partition, j.offset, j.uuid) for j in hb.in_flight] == [(INGEST, 0, 17, "uuid-1")]
    assert hb.in_flight[0].running_s >= 0.01
    paused = {p.topic: p for p in hb.paused}
    assert paused[PREVIEW].partitions == [0, 1]
    assert "waiting for priority: h-ingest has 5 waiting" in paused[PREVIEW].reason
    assert rt.heartbeat().in_flight == [] and rt.heartbeat().jobs_done == 1
    # The model is the protocol: what the worker writes, the service reads back.
    assert Heartbeat.model_validate_json(hb.model_dump_json()) == hb


def test_a_partition_whose_worker_runs_every_slot_waits_for_a_free_slot() -> None:
    tracker = Tracker(S)
    parts = [(PREVIEW, 0, 5, 4), (INGEST, 0, 3, 2)]  # its one slot runs the preview job
    for t in range(0, 60, 5):
        job = InFlightJob(topic=PREVIEW, partition=0, offset=4, uuid="u1", running_s=float(t))
        report = tracker.build(rnd(1000.0 + t, parts, ["w:1"],
                                   [Seen(beat("w:1", concurrency=1, in_flight=[job]), 1000.0 + t)]))
    ingest = report.topics[INGEST].partitions[0]
    assert ingest.status is State.PENDING, ingest.reason
    assert "waiting for a free slot: worker w:1 runs 1 of 1 jobs" in ingest.reason
    assert report.topics[PREVIEW].partitions[0].status is State.PROCESSING


def test_a_topic_paused_by_an_operator_is_never_stalled_even_with_no_worker() -> None:
    tracker = Tracker(S)
    pause = Pause(PREVIEW, "ops:1", 1_700_000_000_000, "storage maintenance")
    retry = TOPICS.retry(Job.PREVIEW)
    for t in range(0, 600, 5):  # ten minutes, no member at all
        report = tracker.build(rnd(1000.0 + t, [(PREVIEW, 0, 40, 10), (retry, 0, 2, 0)], [], [],
                                   {PREVIEW: pause}))
    for name in (PREVIEW, retry):
        p = report.topics[name].partitions[0]
        assert p.status is State.PENDING and "paused by operator ops:1" in p.reason, p.reason
        assert "storage maintenance" in p.reason
    assert report.topics[PREVIEW].paused_by_operator is not None
    assert report.topics[INGEST].paused_by_operator is None
    assert "held back on purpose" in report.worker.hint
    text = metrics.render(report, rounds=1, late=0)
    assert f'ingest_topic_paused_by_operator{{topic="{PREVIEW}"}} 1' in text
    assert f'ingest_topic_paused_by_operator{{topic="{INGEST}"}} 0' in text
    # Continued: the same ten-minute-old backlog with nobody to hold it is a stall again.
    report = tracker.build(rnd(1600.0, [(PREVIEW, 0, 40, 10)], [], []))
    assert report.topics[PREVIEW].partitions[0].status is State.STALLED


@pytest.mark.parametrize("key,value,expected", [
    (b"ingest-preview", None, ("ingest-preview", None)),  # continue: a tombstone
    (b"ingest-preview", b"not json", None),
    (b"ingest-preview", b"[1, 2]", ("ingest-preview", None)),
    (b"ingest-preview", b'{"paused": "yes"}', ("ingest-preview", None)),
    (b"", b'{"paused": true}', None),
    (None, b'{"paused": true}', None),
])
def test_a_pause_record_that_is_not_ours_is_not_a_pause(
    key: bytes | None, value: bytes | None, expected: tuple[str, None] | None
) -> None:
    assert decode(key, value) == expected


def test_a_pause_round_trips_and_bounds_what_it_repeats() -> None:
    p = Pause("ingest", "x" * 1000, 5, "why")
    got = decode(b"ingest", p.encode())
    assert got is not None and got[1] is not None
    assert got[1].by == "x" * 200 and got[1].reason == "why" and got[1].at_ms == 5
    odd = decode(b"ingest", b'{"paused": true, "at_ms": "soon", "by": 7}')
    assert odd is not None and odd[1] is not None and odd[1].at_ms == 0 and odd[1].by == "7"
