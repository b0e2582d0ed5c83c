"""The worker as operators run it: limits, signals, restart, priority, scale-out, crashes."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from pathlib import Path

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
from PIL import Image

from streams.kafka import describe_group
from streams.producer import EventProducer
from streams.replay import DeadLetters
from streams.settings import Settings
from streams.storage import LocalStorage
from streams.topics import Job, Topics, ensure_topics
from streams.uploads import enhance_request, ingest_request, stage_upload
from tests.conftest import wait_until
from tests.integration.helpers import cli, make_jpeg


def _setup(make_settings, **groups: dict) -> tuple[Settings, Topics, LocalStorage]:
    settings: Settings = make_settings(**groups)
    topics = Topics.from_settings(settings.kafka)
    ensure_topics(settings.kafka, topics.specs())
    st = LocalStorage(settings.storage.root)
    st.ensure()
    return settings, topics, st


def _uploads(st: LocalStorage, tmp_path: Path, n: int, size: tuple[int, int] = (320, 240)) -> list:
    src = make_jpeg(tmp_path / "src.jpg", size)
    return [stage_upload(st, src) for _ in range(n)]


def _publish(settings: Settings, topic: str, events: list) -> None:
    with EventProducer(settings.kafka) as p:
        for ev in events:
            p.send(topic, ev.key, ev.model_dump_json().encode())


def _slow_image(tmp_path: Path) -> Path:
    """A PNG big enough that decoding it takes a noticeable while (no DCT shortcut)."""
    path = tmp_path / "slow.png"
    Image.linear_gradient("L").resize((9000, 7000)).convert("RGB").save(path, compress_level=1)
    return path


def _done(st: LocalStorage, events: list) -> int:
    return sum(st.preview_path(e.uuid).exists() for e in events)


def _group_story(settings: Settings, st: LocalStorage, ups: list, a, b) -> str:
    """What a timed-out wait in the two-Deployment test shows: progress, who holds what, logs."""
    held = [(m.client_id, sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions))
            for m in _members(settings)]
    meta = sum(st.metadata_path(u.uuid).exists() for u in ups[:4])
    # mode's worker logs every task's stack on SIGUSR1: where a worker that does nothing waits
    for w in (a, b):
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGUSR1)
    time.sleep(2)
    return (f"{_done(st, ups)}/8 previews, {meta}/4 metadata; members {held}\n"
            f"--- ingest worker:\n{a.output()[-30000:]}\n--- preview worker:\n{b.output()[-3000:]}")


def _health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def _members(settings: Settings) -> list:
    admin = AdminClient(settings.kafka.confluent_config())
    group = settings.kafka.group_id
    return list(describe_group(admin, group, 10).members)


def _committed(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer

    c = Consumer({**settings.kafka.confluent_config(), "group.id": settings.kafka.group_id,
                  "enable.auto.commit": False})
    try:
        res = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in res}
    finally:
        c.close()


def test_once_processes_one_job_and_exits(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings)
    events = _uploads(st, tmp_path, 3)
    _publish(settings, topics.job(Job.PREVIEW), events)
    w = start_worker(settings, "--once", "--concurrency", "1")
    assert w.wait(90) == 0, w.output()[-2000:]
    assert _done(st, events) == 1
    assert "--max-jobs 1 reached" in w.output()


def test_max_jobs_stops_after_n(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings)
    events = _uploads(st, tmp_path, 6)
    _publish(settings, topics.job(Job.PREVIEW), events)
    w = start_worker(settings, "--max-jobs", "2", "--concurrency", "1")
    assert w.wait(90) == 0, w.output()[-2000:]
    assert _done(st, events) == 2
    # the rest is still there for the next worker: nothing was acked without being done
    w2 = start_worker(settings, "--stop-when-empty")
    assert w2.wait(90) == 0, w2.output()[-2000:]
    assert _done(st, events) == 6


def test_stop_when_empty_drains_then_exits(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings)
    events = _uploads(st, tmp_path, 5)
    _publish(settings, topics.job(Job.PREVIEW), events)
    w = start_worker(settings, "--stop-when-empty")
    assert w.wait(90) == 0, w.output()[-2000:]
    assert _done(st, events) == 5
    assert "--stop-when-empty" in w.output()


def test_max_time_stops_an_idle_worker(make_settings, start_worker) -> None:
    settings, _, _ = _setup(make_settings)
    w = start_worker(settings, "--max-time", "4")
    assert w.wait(60) == 0, w.output()[-2000:]
    assert "--max-time 4 s reached" in w.output()


def test_memory_limit_exits_with_code_12(make_settings, start_worker) -> None:
    settings, _, _ = _setup(make_settings)
    w = start_worker(settings, "--memory", "5")
    assert w.wait(60) == 12, w.output()[-2000:]
    assert "--memory: resident" in w.output()


def test_timeout_abandons_a_slow_job_as_transient(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings, worker={"tries": 1})
    ev = stage_upload(st, _slow_image(tmp_path))
    _publish(settings, topics.job(Job.PREVIEW), [ev])
    w = start_worker(settings, "--timeout", "0.2")
    store = DeadLetters(settings.kafka, topics)
    wait_until(lambda: store.entries(), 90, lambda: w.output()[-2000:])
    [entry] = store.entries()
    assert entry.error_class.endswith("JobTimeout") and entry.reason == "retries-exhausted"
    assert "longer than 0.2 s" in entry.error_message


def test_sigterm_finishes_the_job_commits_and_hands_over(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings, kafka={"partitions": 1})
    w1 = start_worker(settings, env={"INGEST_WORKER__HEALTH_PORT": "18931"})
    wait_until(lambda: "Worker]: Ready" in w1.output(), 60, lambda: w1.output()[-2000:])
    ev = stage_upload(st, _slow_image(tmp_path))
    _publish(settings, topics.job(Job.PREVIEW), [ev])
    wait_until(lambda: _health(18931)["in_flight"] == 1, 60, lambda: w1.output()[-2000:])
    w1.proc.send_signal(signal.SIGTERM)
    assert w1.wait(60) == 0
    assert st.preview_path(ev.uuid).exists(), "the in-flight job must finish before exit"
    assert "outcome=ok" in w1.output()
    assert _committed(settings, topics.job(Job.PREVIEW), 1)[0] == 1
    w2 = start_worker(settings)
    later = _uploads(st, tmp_path, 1)
    _publish(settings, topics.job(Job.PREVIEW), later)
    wait_until(lambda: _done(st, later) == 1, 60, lambda: w2.output()[-2000:])
    assert ev.uuid not in w2.output(), "the finished job was not redelivered"


def test_restart_stops_every_running_worker(make_settings, start_worker) -> None:
    settings, _, _ = _setup(make_settings)
    workers = [start_worker(settings) for _ in range(2)]
    for w in workers:
        wait_until(lambda w=w: "Worker]: Ready" in w.output(), 60, lambda w=w: w.output()[-2000:])
    time.sleep(1.5)  # let the restart listeners seek to 'now'
    res = cli(settings, "restart")
    assert res.exit_code == 0, res.output
    for w in workers:
        assert w.wait(60) == 0, w.output()[-2000:]
        assert "restart requested by" in w.output()


def test_priority_ingest_then_preview_then_enhance(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings, kafka={"partitions": 2})
    n = 15
    ups = _uploads(st, tmp_path, 3 * n, size=(600, 400))
    _publish(settings, topics.job(Job.ENHANCE), [enhance_request(u) for u in ups[:n]])
    _publish(settings, topics.job(Job.PREVIEW), ups[n:2 * n])
    _publish(settings, topics.job(Job.INGEST), [ingest_request(u) for u in ups[2 * n:]])
    w = start_worker(settings, "--concurrency", "1", "--stop-when-empty")
    assert w.wait(120) == 0, w.output()[-2000:]
    order = re.findall(r"job=(\w+) uuid=\S+ .* outcome=ok", w.output())
    assert len(order) == 3 * n
    last = {job: max(i for i, j in enumerate(order) if j == job) for job in ("ingest", "preview", "enhance")}
    assert last["ingest"] < last["preview"] < last["enhance"], order
    mean = {job: sum(i for i, j in enumerate(order) if j == job) / n for job in last}
    assert mean["ingest"] < mean["preview"] < mean["enhance"], order


def test_three_workers_share_the_partitions(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings, kafka={"partitions": 6})
    workers = [start_worker(settings) for _ in range(3)]
    wait_until(lambda: len(_members(settings)) == 3 and all(m.assignment.topic_partitions for m in
                                                            _members(settings)), 90, "3 members")
    events = _uploads(st, tmp_path, 30)
    _publish(settings, topics.job(Job.PREVIEW), events)
    wait_until(lambda: _done(st, events) == 30, 90, lambda: workers[0].output()[-2000:])
    # (a job's line follows its files once the broker has acknowledged what it owes)
    wait_until(lambda: all("outcome=ok" in w.output() for w in workers), 30,
               "every worker took a share of the jobs")
    preview_parts = [{tp.partition for tp in m.assignment.topic_partitions
                      if tp.topic == topics.job(Job.PREVIEW)} for m in _members(settings)]
    assert sorted(len(p) for p in preview_parts) == [2, 2, 2]
    assert set().union(*preview_parts) == set(range(6))


def test_sigkill_mid_batch_loses_nothing_and_duplicates_nothing(
    make_settings, start_worker, tmp_path: Path
) -> None:
    settings, topics, st = _setup(make_settings, kafka={"partitions": 6})
    a = start_worker(settings, "--concurrency", "2")
    b = start_worker(settings, "--concurrency", "2")
    wait_until(lambda: len(_members(settings)) == 2, 90, "2 members")
    events = _uploads(st, tmp_path, 200, size=(900, 600))
    _publish(settings, topics.job(Job.PREVIEW), events)
    wait_until(lambda: _done(st, events) >= 40, 120, lambda: a.output()[-2000:])
    a.proc.kill()
    a.wait(10)
    store = DeadLetters(settings.kafka, topics)
    wait_until(lambda: _done(st, events) == 200, 180, lambda: b.output()[-2000:])
    failed = {e.uuid for e in store.entries()}
    processed = {e.uuid for e in events if st.preview_path(e.uuid).exists()}
    assert failed == set() and len(processed) == 200
    redelivered = b.output().count("duplicate delivery")
    done_twice = set(re.findall(r"uuid=(\S+) .*outcome=ok", a.output())) & \
        set(re.findall(r"uuid=(\S+) .*outcome=ok.*note=duplicate", b.output()))
    print(f"sigkill: redelivered with outputs already stored: {redelivered}; "
          f"processed by the killed worker then noted as duplicate: {len(done_twice)}")
    previews = [p for p in (st.root / "previews").rglob("*") if p.is_file()]
    finals = [p for p in previews if not p.name.startswith(".")]
    assert len(finals) == 200, "one preview per UUID, none twice"
    assert {p.stem for p in finals} == {e.uuid for e in events}


def test_json_logs_one_line_per_job(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings, worker={"log_json": True})
    events = _uploads(st, tmp_path, 2)
    _publish(settings, topics.job(Job.PREVIEW), events)
    w = start_worker(settings, "--stop-when-empty")
    assert w.wait(90) == 0, w.output()[-2000:]
    lines = [json.loads(line) for line in w.output().splitlines() if line.startswith("{")]
    jobs = [x for x in lines if x.get("logger") == "streams.jobs"]
    assert {j["uuid"] for j in jobs} == {e.uuid for e in events}
    for j in jobs:
        assert j["outcome"] == "ok" and j["topic"] == topics.job(Job.PREVIEW)
        assert isinstance(j["partition"], int) and isinstance(j["offset"], int) and j["duration_ms"] > 0


def test_worker_groups_with_different_topics_share_one_consumer_group(
    make_settings, start_worker, tmp_path: Path
) -> None:
    """The Helm chart runs one Deployment per priority in one group: each must get only
    the partitions of the topics it asked for, and all of them must be served."""
    settings, topics, st = _setup(make_settings)
    a = start_worker(settings, "--topics", "ingest")
    b = start_worker(settings, "--topics", "ingest-preview,ingest-enhance")
    wait_until(lambda: len(_members(settings)) == 2, 90, "2 members")
    ups = _uploads(st, tmp_path, 8)
    _publish(settings, topics.job(Job.PREVIEW), ups)
    _publish(settings, topics.job(Job.INGEST), [ingest_request(u) for u in ups[:4]])
    wait_until(lambda: _done(st, ups) == 8 and all(st.metadata_path(u.uuid).exists() for u in ups[:4]),
               90, lambda: _group_story(settings, st, ups, a, b))
    assert "job=preview" not in a.output() and "job=ingest " not in b.output()
    for m in _members(settings):
        names = {tp.topic for tp in m.assignment.topic_partitions if "__assignor" not in tp.topic}
        assert names and (names <= {topics.job(Job.INGEST), topics.retry(Job.INGEST)}
                          or not names & {topics.job(Job.INGEST), topics.retry(Job.INGEST)})


def test_a_worker_reads_its_delivery_ledger_when_given_partitions(make_settings,
                                                                  start_worker) -> None:
    """Not when its first record arrives: that record would wait for the read (about half a
    second after every rebalance, on every worker)."""
    settings, _, _ = _setup(make_settings)
    w = start_worker(settings, "--concurrency", "1")
    wait_until(lambda: re.search(r"delivery ledger \S+ read for generation \d+", w.output()), 60,
               lambda: w.output()[-3000:])
    assert "outcome=" not in w.output()  # no record was there to ask for it
