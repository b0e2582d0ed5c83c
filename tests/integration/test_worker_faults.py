"""Fault paths of one worker that no calm run walks: priority pauses that flip while a
topic is idle, lower-priority buffers full behind a pause, sends the broker refuses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.topics import Job
from streams.uploads import enhance_request, ingest_request
from tests.conftest import wait_until
from tests.integration.test_worker_runtime import _committed, _done, _publish, _setup, _uploads


def _end_offsets(settings, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**settings.kafka.confluent_config(), "group.id": "end-reader",
                  "enable.auto.commit": False})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        c.close()


def test_pause_and_resume_while_a_topic_is_idle_skip_nothing(
    make_settings, start_worker, tmp_path: Path
) -> None:
    """Each ingest pauses the preview partitions, each commit resumes them. Several cycles
    with nothing delivered in between must leave the preview position where it was: the
    previews published afterwards are all made (a seek one past the next record lost one
    per cycle)."""
    settings, topics, st = _setup(make_settings, kafka={"partitions": 2})
    first = _uploads(st, tmp_path, 20)
    w = start_worker(settings, "--topics", "ingest,ingest-preview", "--concurrency", "1")
    _publish(settings, topics.job(Job.PREVIEW), first)
    wait_until(lambda: _done(st, first) == 20, 60, lambda: w.output()[-2000:])
    # The watch looks once a second and a commit follows within one, so not every ingest
    # is seen as lag: confirm one at a time until three pause/continue cycles happened.
    for up in first:
        _publish(settings, topics.job(Job.INGEST), [ingest_request(up)])
        wait_until(lambda up=up: st.metadata_path(up.uuid).exists(), 60, lambda: w.output()[-2000:])
        time.sleep(2.2)
        if w.output().count("priority: paused nothing") >= 3:
            break
    cycles = w.output().count("priority: paused nothing")
    assert cycles >= 2, (f"the test needs pause/continue cycles to mean anything; saw {cycles}\n"
                         f"{w.output()[-3000:]}")
    later = _uploads(st, tmp_path, 8)
    _publish(settings, topics.job(Job.PREVIEW), later)
    wait_until(lambda: _done(st, later) == 8, 60,
               lambda: f"all 8 later previews; made {_done(st, later)}\n{w.output()[-3000:]}")
    preview = topics.job(Job.PREVIEW)
    wait_until(lambda: _committed(settings, preview, 2) == _end_offsets(settings, preview, 2), 30,
               "committed offsets at the end offsets")


@pytest.mark.parametrize(("partitions", "n_enhance", "n_preview"), [(2, 80, 80), (12, 700, 60)])
def test_full_lower_priority_buffers_do_not_wedge_the_worker(
    make_settings, start_worker, tmp_path: Path, partitions: int, n_enhance: int, n_preview: int
) -> None:
    """A large enhance backlog held back behind preview lag fills its stream buffer; the
    fetcher must still bring in the preview records that end the pause. With 12 partitions
    each one not yet flagged as under pressure can add a whole fetch to the shared queue."""
    settings, topics, st = _setup(make_settings, kafka={"partitions": partitions})
    ups = _uploads(st, tmp_path, max(n_enhance, n_preview), size=(160, 120))
    _publish(settings, topics.job(Job.ENHANCE), [enhance_request(u, 160) for u in ups[:n_enhance]])
    _publish(settings, topics.job(Job.PREVIEW), ups[:n_preview])
    w = start_worker(settings, "--concurrency", "1", "--stop-when-empty")
    started = time.monotonic()

    def progress() -> str:
        made = _done(st, ups[:n_preview])
        enhanced = sum(st.enhanced_path(u.uuid).exists() for u in ups[:n_enhance])
        return (f"{made}/{n_preview} previews, {enhanced}/{n_enhance} enhances after "
                f"{time.monotonic() - started:.0f} s\n{w.output()[-3000:]}")

    wait_until(lambda: _done(st, ups[:n_preview]) == n_preview
               and all(st.enhanced_path(u.uuid).exists() for u in ups[:n_enhance]), 240, progress)
    assert w.wait(60) == 0, w.output()[-2000:]


def test_a_record_the_broker_refuses_is_never_committed_past(
    make_settings, start_worker, tmp_path: Path
) -> None:
    """The images record of an ingest is refused (the topic allows 200-byte records):
    the ingest must not count as done; it goes round its retries and ends a dead letter
    naming the refusal, and only then is its offset committed."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    from streams.replay import DeadLetters

    settings, topics, st = _setup(make_settings, kafka={"partitions": 1}, worker={"tries": 2})
    admin = AdminClient(settings.kafka.confluent_config())
    entry = ConfigEntry("max.message.bytes", "200",
                        incremental_operation=AlterConfigOpType.SET)
    res = ConfigResource("topic", topics.images, incremental_configs=[entry])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(timeout=10)
    [up] = _uploads(st, tmp_path, 1)
    _publish(settings, topics.job(Job.INGEST), [ingest_request(up)])
    w = start_worker(settings, "--topics", "ingest")
    store = DeadLetters(settings.kafka, topics)
    entries = wait_until(lambda: [e for e in store.entries() if e.uuid == up.uuid], 90,
                         lambda: w.output()[-3000:])
    [e] = entries
    assert "DeliveryFailed" in e.error_class, e.error_class
    assert "TooLarge" in e.error_message, e.error_message
    ingest = topics.job(Job.INGEST)
    wait_until(lambda: _committed(settings, ingest, 1) == _end_offsets(settings, ingest, 1), 30,
               "the ingest offset committed after its dead letter")
    assert st.original_path(up.uuid, up.original_filename).exists()  # nothing of it lost


def _ledger_counts(settings, topic: str) -> dict[bytes, bytes | None]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**settings.kafka.confluent_config(), "group.id": "ledger-reader",
                  "enable.auto.commit": False})
    out: dict[bytes, bytes | None] = {}
    try:
        md = c.list_topics(topic, timeout=10)
        for p in md.topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi <= lo:
                continue
            c.assign([TopicPartition(topic, p, lo)])
            got = lo
            while got < hi:
                for m in c.consume(100, timeout=1.0):
                    if m.error() is None:
                        out[m.key()] = m.value()
                        got = m.offset() + 1
    finally:
        c.close()
    return out


def test_a_record_that_kills_its_worker_is_dead_lettered_and_the_partition_moves_on(
    make_settings, start_worker, tmp_path: Path
) -> None:
    """An upload whose preview runs long enough to be killed: SIGKILL the worker each time
    its delivery is counted (as the OOM killer would); after max_deliveries the next
    delivery dead-letters it as poison, and the uploads behind it on the partition go
    through."""
    from PIL import Image

    from streams.replay import DeadLetters
    from streams.uploads import stage_upload
    from streams.worker.deliveries import delivery_key

    settings, topics, st = _setup(make_settings, kafka={"partitions": 1},
                                  worker={"max_deliveries": 2})
    big = tmp_path / "poison.png"
    Image.linear_gradient("L").resize((12000, 9000)).convert("RGB").save(big, compress_level=1)
    poison = stage_upload(st, big)
    behind = _uploads(st, tmp_path, 3)
    _publish(settings, topics.job(Job.PREVIEW), [poison, *behind])
    key = delivery_key(settings.kafka.group_id, topics.job(Job.PREVIEW), 0, 0)
    for n in (1, 2):
        w = start_worker(settings, "--topics", "ingest-preview", "--concurrency", "1")
        wait_until(lambda n=n: _ledger_counts(settings, topics.deliveries).get(key) == str(n).encode(),
                   60, lambda n=n, w=w: f"delivery {n} counted\n{w.output()[-2000:]}", interval=0.1)
        w.proc.kill()
        w.wait(10)
        assert not st.preview_path(poison.uuid).exists(), "the job finished before the kill"
    w = start_worker(settings, "--topics", "ingest-preview", "--concurrency", "1")
    wait_until(lambda: _done(st, behind) == 3, 90, lambda: w.output()[-3000:])
    [e] = [e for e in DeadLetters(settings.kafka, topics).entries() if e.uuid == poison.uuid]
    assert e.error_class.endswith("PoisonRecord") and "delivered 3 times" in e.error_message
    preview = topics.job(Job.PREVIEW)
    wait_until(lambda: _committed(settings, preview, 1) == _end_offsets(settings, preview, 1), 30,
               "committed offsets at the end offsets")
    assert _ledger_counts(settings, topics.deliveries).get(key) is None  # tombstoned


def test_two_deliveries_of_one_ingest_in_flight_make_one_ingest_and_no_dead_letter(
    make_settings, start_worker, tmp_path: Path
) -> None:
    """Each confirm is published twice back to back; two job slots on one partition run
    both at once. Every image is ingested once, nothing is dead-lettered, and both images
    records of a UUID are the same bytes."""
    from collections import defaultdict

    from streams.replay import DeadLetters
    from tests.integration.helpers import read_topic

    settings, topics, st = _setup(make_settings, kafka={"partitions": 1})
    ups = _uploads(st, tmp_path, 12, size=(1200, 900))
    requests = [ingest_request(u) for u in ups]
    _publish(settings, topics.job(Job.INGEST), [r for r in requests for _ in (0, 1)])
    w = start_worker(settings, "--topics", "ingest", "--concurrency", "2", "--stop-when-empty")
    assert w.wait(120) == 0, w.output()[-3000:]
    assert DeadLetters(settings.kafka, topics).entries() == [], w.output()[-3000:]
    records = read_topic(settings, topics.images, expect=24)
    by_uuid: dict[str, set[bytes]] = defaultdict(set)
    for m in records:
        by_uuid[m.key().decode()].add(m.value())
    assert len(records) == 24 and all(len(v) == 1 for v in by_uuid.values()), by_uuid.keys()
    for u in ups:
        assert st.metadata_path(u.uuid).read_bytes() in by_uuid[u.uuid]
        assert not st.resolve(u.path).exists()
        assert sorted(p.name for p in st.original_dir(u.uuid).iterdir()) == ["metadata.json", "original.jpg"]
