"""The status service with real workers on the real broker: heartbeats name each worker,
a long job within its timeout is processing, a topic held back for priority is never
stalled, and the first look after a quiet spell is idle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from status.health import State
from status.report import StatusReport
from status.service import StatusService
from streams.settings import Settings
from streams.storage import LocalStorage
from streams.topics import Job, Topics
from tests.integration.helpers import cli, make_jpeg
from tests.support.slow_exiftool import slow_exiftool


def _partitions(r: StatusReport | None) -> str:
    if r is None:
        return ""
    return "; ".join(f"{n}/{p.partition} {p.status.value}: {p.reason}"
                     for n, t in r.topics.items() for p in t.partitions if p.lag)


async def until(svc: StatusService, cond: Callable[[StatusReport], bool], timeout: float,
                what: str, seen: list[StatusReport] | None = None) -> StatusReport:
    deadline = time.monotonic() + timeout
    last: StatusReport | None = None
    while time.monotonic() < deadline:
        last = await svc.report()
        if seen is not None:
            seen.append(last)
        # Only a report Kafka answered: before the first round answers, a report knows no
        # topics and counts nothing pending (a loaded CI machine showed one, and a "nothing
        # pending" condition passed on it).
        if last.kafka.reachable and last.topics and cond(last):
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"no {what} within {timeout:g} s; last: "
                         f"{last.worker.hint if last else None}; {_partitions(last)}")


async def test_a_long_job_is_processing_and_a_held_back_topic_waits_for_priority(
    make_settings, start_worker, tmp_path: Path
) -> None:
    settings: Settings = make_settings(
        status={"stall_threshold_s": 4, "sample_interval_s": 1},
        worker={"timeout_s": 60, "concurrency": 1, "heartbeat_s": 1, "priority_lag_threshold": 0},
        imaging={"exiftool_timeout_s": 60},
    )
    topics = Topics.from_settings(settings.kafka)
    ingest, preview = topics.job(Job.INGEST), topics.job(Job.PREVIEW)
    env, flag = slow_exiftool(tmp_path, delay_s=20)
    worker = start_worker(settings, "--topics", "ingest,ingest-preview", env=env)
    st = LocalStorage(settings.storage.root)
    res = cli(settings, "upload", str(make_jpeg(tmp_path / "in" / "long.jpg", (900, 600))))
    assert res.exit_code == 0, res.output
    slow_uuid = res.output.split()[0]
    svc = StatusService(settings)
    svc.start()
    try:
        await until(svc, lambda r: st.preview_path(slow_uuid).exists() and r.jobs.pending == 0,
                    120, "the first preview")
        flag.touch()  # the next exiftool call (the ingest's metadata) takes 20 s: a long job
        assert cli(settings, "confirm", slow_uuid).exit_code == 0
        await until(svc, lambda r: any("job running" in p.reason
                                       for p in r.topics[ingest].partitions), 30, "the ingest job")
        files = [make_jpeg(tmp_path / "in" / f"n{i}.jpg", (640 + i, 480)) for i in range(6)]
        res = cli(settings, "upload", *map(str, files))
        assert res.exit_code == 0, res.output
        uploaded = [line.split()[0] for line in res.output.splitlines()]

        seen: list[StatusReport] = []

        def long_job_and_old_held_back_lag(r: StatusReport) -> bool:
            # Past the stall threshold (4 s) with the committed offset frozen, within the 60 s
            # job timeout: processing, saying how long the job has run; the previews behind
            # it have waited longer than the threshold too.
            job = any(p.status is State.PROCESSING and "job running" in p.reason
                      and (p.since_moved_s or 0) > 8 for p in r.topics[ingest].partitions)
            held = [p for p in r.topics[preview].partitions if p.lag]
            return job and bool(held) and all((p.lag_s or 0) > 5 for p in held)

        r = await until(svc, long_job_and_old_held_back_lag, 40, "a long job and old held-back lag", seen)
        held = [p for p in r.topics[preview].partitions if p.lag]
        assert all(p.status is State.PENDING and "waiting for priority" in p.reason for p in held), \
            [(p.partition, p.status, p.reason) for p in held]
        w = next(w for w in r.workers if w.state == "running")
        assert [j.uuid for j in w.in_flight] == [slow_uuid]
        assert [p.topic for p in w.paused] == [preview, topics.retry(Job.PREVIEW)]

        await until(svc, lambda r: all(st.preview_path(u).exists() for u in uploaded)
                    and r.jobs.pending == 0, 90, "the held-back previews", seen)
        stalled = [(n, p.partition, p.reason) for rep in seen for n, t in rep.topics.items()
                   for p in t.partitions if p.status is State.STALLED]
        assert stalled == [], stalled[:5]
        assert st.metadata_path(slow_uuid).exists()
    finally:
        await svc.stop()
        svc.close()
    assert worker.proc.poll() is None, worker.output()[-3000:]


async def test_three_workers_by_their_own_ids_and_idle_after_a_quiet_spell(
    make_settings, start_worker, tmp_path: Path
) -> None:
    settings: Settings = make_settings(status={"sample_interval_s": 1}, worker={"heartbeat_s": 1})
    workers = [start_worker(settings, "--topics", "ingest-preview") for _ in range(3)]
    svc = StatusService(settings)
    svc.start()
    try:
        r = await until(svc, lambda r: sum(w.state == "running" and w.member for w in r.workers) == 3,
                        90, "three workers beating in the group")
        pids = {w.proc.pid for w in workers}
        listed = [w for w in r.workers if w.state == "running"]
        assert {w.pid for w in listed} == pids
        assert len({w.id for w in listed}) == 3
        assert all(w.id.endswith(f":{w.pid}") for w in listed)
        assert {m.client_id for m in r.group.members} == {w.id for w in listed}
        assert all(w.version and w.topics and w.rss_bytes for w in listed)

        res = cli(settings, "upload", str(make_jpeg(tmp_path / "in" / "q.jpg", (800, 600))))
        assert res.exit_code == 0, res.output
        uid = res.output.split()[0]
        st = LocalStorage(settings.storage.root)
        # Nobody asks the service from before the upload until after a quiet spell: a window
        # that followed the requests would hold the last look (before the upload) and this
        # one, see the commit between them, and say "processing: caught up since the last
        # look". The sampler's window has seen the commit and the quiet since.
        deadline = time.monotonic() + 60
        while not st.preview_path(uid).exists():
            assert time.monotonic() < deadline, "no preview within 60 s"
            await asyncio.sleep(0.1)
        await asyncio.sleep(4)  # a quiet spell (the commit is due within 1 s of the preview)
        first = await svc.report()
        assert first.kafka.reachable and first.jobs.pending == 0, first.worker
        assert sum(w.jobs_done or 0 for w in first.workers) >= 1
        assert first.worker.status is State.IDLE, first.worker
        lat = first.preview_latency
        assert lat is not None and lat.last_5m.count == 1 and (lat.last_5m.max_s or 0) > 0
    finally:
        await svc.stop()
        svc.close()
    for w in workers:
        assert w.proc.poll() is None, w.output()[-2000:]




async def test_pause_and_continue_a_topic_across_workers_and_restarts(
    make_settings, start_worker, tmp_path: Path
) -> None:
    settings: Settings = make_settings(status={"sample_interval_s": 1, "stall_threshold_s": 4},
                                       worker={"heartbeat_s": 1})
    preview = Topics.from_settings(settings.kafka).job(Job.PREVIEW)
    first = start_worker(settings, "--topics", "ingest-preview")
    st = LocalStorage(settings.storage.root)
    svc = StatusService(settings)
    svc.start()
    try:
        await until(svc, lambda r: any(w.state == "running" for w in r.workers), 60, "a worker")
        res = cli(settings, "pause", "ingest-preview", "--reason", "storage maintenance")
        assert res.exit_code == 0, res.output
        listed = cli(settings, "pause")
        assert f"{preview}: paused by operator" in listed.output, listed.output
        await until(svc, lambda r: any(p.by == "operator" for w in r.workers for p in w.paused),
                    30, "the worker honouring the pause")
        files = [make_jpeg(tmp_path / "in" / f"p{i}.jpg", (640 + i, 480)) for i in range(4)]
        res = cli(settings, "upload", *map(str, files))
        assert res.exit_code == 0, res.output
        uploaded = [line.split()[0] for line in res.output.splitlines()]

        # A worker that starts while the topic is paused honours it from its first job.
        first.stop()
        second = start_worker(settings, "--topics", "ingest-preview")
        seen: list[StatusReport] = []
        r = await until(svc, lambda r: any(w.state == "running" and w.pid == second.proc.pid
                                           for w in r.workers)
                        and all((p.lag_s or 0) > 6 for p in r.topics[preview].partitions if p.lag)
                        and r.jobs.pending == 4, 90, "old lag held back by the pause", seen)
        assert not any(st.preview_path(u).exists() for u in uploaded), "a paused topic ran a job"
        lagging = [p for p in r.topics[preview].partitions if p.lag]
        assert all(p.status is State.PENDING and "paused by operator" in p.reason
                   and "storage maintenance" in p.reason for p in lagging), \
            [(p.partition, p.status, p.reason) for p in lagging]
        assert r.topics[preview].paused_by_operator is not None
        assert "held back on purpose" in r.worker.hint

        assert cli(settings, "continue", "ingest-preview").exit_code == 0
        r = await until(svc, lambda r: all(st.preview_path(u).exists() for u in uploaded)
                        and r.jobs.pending == 0, 90, "the previews after continue", seen)
        assert r.topics[preview].paused_by_operator is None
        assert cli(settings, "pause").output.strip() == "no topic is paused"
        stalled = [(n, p.partition, p.reason) for rep in seen for n, t in rep.topics.items()
                   for p in t.partitions if p.status is State.STALLED]
        assert stalled == [], stalled[:5]
    finally:
        await svc.stop()
        svc.close()
    assert second.proc.poll() is None, second.output()[-3000:]
