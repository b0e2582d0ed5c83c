"""Traces on the real broker: workers -> traces topic -> sink process -> chDB -> readers."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from imaging.render import FAST_DECODER
from streams.headers import H_EXC_MESSAGE, H_REASON, H_TOPIC, headers_to_dict
from streams.settings import Settings
from streams.topics import Job, Topics
from streams.traces import TraceEvent
from tests.conftest import WorkerProcess, wait_until
from tests.integration.helpers import cli, make_jpeg, read_topic
from tests.support import samples
from tracestore.reader import open_reader
from tracestore.sink import sink_group
from tracestore.store import lock_path, read_owner

Rows = list[dict[str, object]]


def sink_settings(make_settings: Callable[..., Settings], **ch: Any) -> Settings:
    return make_settings(clickhouse={"flush_interval_s": 0.2, "lock_timeout_s": 20, **ch})


def wait_sink_ready(settings: Settings, sink: WorkerProcess) -> str:
    def url() -> str | None:
        assert sink.proc.poll() is None, f"sink died:\n{sink.output()[-3000:]}"
        owner = read_owner(lock_path(settings.clickhouse.path))
        return owner.get("url") if owner else None  # type: ignore[return-value]

    return str(wait_until(url, 60, lambda: f"the sink's endpoint; log:\n{sink.output()[-3000:]}"))


def timeline(settings: Settings, image: str) -> Rows:
    return open_reader(settings).timeline(image)


def attempts(rows: Rows, trace_type: str) -> list[tuple[object, object, object]]:
    return [(r["method_tried"], r["method_order"], r["success"])
            for r in rows if r["trace_type"] == trace_type]


def test_uploads_become_trace_rows(
    make_settings: Callable[..., Settings], start_worker: Callable[..., WorkerProcess],
    start_sink: Callable[..., WorkerProcess], tmp_path: Path,
) -> None:
    settings = sink_settings(make_settings)
    topics = Topics.from_settings(settings.kafka)
    sink = start_sink(settings)
    wait_sink_ready(settings, sink)
    workers = [start_worker(settings), start_worker(settings)]
    # Upload once the group has settled: a job that runs across the second worker's join
    # is redelivered (at least once) and would be traced twice.
    from tests.integration.test_worker_runtime import _members

    wait_until(lambda: len(_members(settings)) == 2 and all(m.assignment.topic_partitions
                                                            for m in _members(settings)),
               90, "both workers in the group with partitions")

    # A reader running the whole time, through the sink, while two workers produce traces.
    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def read_loop() -> None:
        reader = open_reader(settings)
        while not stop.is_set():
            try:
                _, rows = reader.query("SELECT count() FROM traces FINAL")
                seen.append(int(str(rows[0][0])))
            except Exception as exc:  # noqa: BLE001 - collected and asserted on below
                errors.append(f"{type(exc).__name__}: {exc}")
            stop.wait(0.1)

    reader_thread = threading.Thread(target=read_loop, daemon=True)
    reader_thread.start()

    (tmp_path / "in").mkdir()
    files = [
        samples.camera_jpeg(tmp_path / "in" / "embedded.jpg", (4800, 3200), preview=(2400, 1600)),
        make_jpeg(tmp_path / "in" / "plain.jpg", (1600, 1200)),
        tmp_path / "in" / "corrupt.jpg",
    ]
    files[2].write_bytes(files[1].read_bytes()[:600] + b"\0" * 50)
    res = cli(settings, "upload", *map(str, files))
    assert res.exit_code == 0, res.output
    embedded, plain, corrupt = (line.split()[0] for line in res.output.splitlines())

    def done() -> bool:
        e, p, c = (timeline(settings, u) for u in (embedded, plain, corrupt))
        return (any(r["trace_type"] == "thumbnail_generation" for r in e)
                and any(r["trace_type"] == "thumbnail_generation" for r in p)
                and any(r["trace_type"] == "dead_letter" for r in c))

    def logs() -> str:
        return "\n".join(p.output()[-2000:] for p in (sink, *workers))

    wait_until(done, 120, lambda: f"trace rows of 3 uploads; logs:\n{logs()}", interval=0.5)
    stop.set()
    reader_thread.join(10)

    e, p, c = (timeline(settings, u) for u in (embedded, plain, corrupt))
    assert attempts(e, "preview_extraction") == [("embedded_preview", 1, True)]
    assert attempts(e, "thumbnail_generation") == [("from_embedded_preview", 1, True)]
    decoder = "turbo_decode" if FAST_DECODER else "pillow_decode"  # the workers' build is ours
    assert attempts(p, "preview_extraction") == [("embedded_preview", 1, False), (decoder, 2, True)]
    assert attempts(p, "thumbnail_generation") == [("from_preview", 1, True)]
    assert attempts(e, "storage") == attempts(p, "storage") == [("local_atomic_write", 1, True)]
    pre = attempts(c, "preview_extraction")
    assert pre and not any(ok for _, _, ok in pre)
    assert [(r["method_tried"], r["success"]) for r in c if r["trace_type"] == "dead_letter"] == [
        ("CorruptImage", False)]
    for rows in (e, p, c):
        assert all(r["job"] == "preview" and r["attempt"] == 1 for r in rows)
        assert {r["source_topic"] for r in rows} == {topics.job(Job.PREVIEW)}
        assert all(str(r["worker_id"]).count(":") >= 1 for r in rows)
    assert e[0]["width"] == 2048 and p[-1]["size_bytes"]

    assert not errors, errors[:5]
    assert len(seen) >= 5 and seen == sorted(seen), seen  # answered all along, never went back

    # The CLI reads through the sink too.
    out = cli(settings, "traces", plain)
    assert out.exit_code == 0, out.output
    assert "embedded_preview" in out.output and decoder in out.output
    assert out.output.splitlines()[-1] == f"({len(p)} rows)"

    # Every query of the pack runs and answers sensibly.
    rep = cli(settings, "traces", "report", "--format", "json")
    assert rep.exit_code == 0, rep.output
    doc = json.loads(rep.output)
    assert all(0 <= r["success_rate"] <= 1 for r in doc["success_rate"])
    fb = {r["trace_type"]: r for r in doc["fallback_rate"]}
    assert fb["preview_extraction"]["produced"] == 2 and fb["preview_extraction"]["by_fallback"] == 1
    lat = doc["upload_to_preview_latency"][0]
    assert lat["images"] == 2 and 0 <= lat["p50_s"] <= lat["p99_s"] <= lat["max_s"]
    assert {r["image_uuid"] for r in doc["slowest_uploads"]} == {embedded, plain, corrupt}
    assert [r["image_uuid"] for r in doc["dead_letters"]] == [corrupt]
    assert sum(r["attempt_count"] for r in doc["throughput_per_minute"]) == len(e) + len(p) + len(c)
    assert any("cannot load" in str(r["reason"]) or "corrupt" in str(r["reason"]).lower()
               for r in doc["top_failures"])
    pct = {(r["trace_type"], r["method_tried"]) for r in doc["duration_percentiles"]}
    assert ("preview_extraction", decoder) in pct

    # One writer per store: a second sink waits for the lock, then says why it cannot start.
    second = start_sink(settings.model_copy(update={"clickhouse": settings.clickhouse.model_copy(
        update={"lock_timeout_s": 1.0})}))
    assert second.proc.wait(60) == 1
    assert "in use by another process" in second.output()
    assert sink.proc.poll() is None and all(w.proc.poll() is None for w in workers)


def _trace(image: str, n: int) -> bytes:
    return TraceEvent(
        image_uuid=image, job="preview", trace_type="preview_extraction", method_tried="pillow_decode",
        method_order=2, success=True, duration_ms=float(n), source_offset=n,
    ).model_dump_json().encode()


def _committed(settings: Settings, topic: str) -> dict[int, int]:
    c = Consumer({**settings.kafka.confluent_config(), "group.id": sink_group(settings),
                  "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        got = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def _ends(settings: Settings, topic: str) -> dict[int, int]:
    c = Consumer({**settings.kafka.confluent_config(), "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        c.close()


def _caught_up(settings: Settings, topic: str) -> bool:
    """The sink's group has committed every partition's end (an empty partition: nothing)."""
    committed = _committed(settings, topic)
    return all(max(committed.get(p, 0), 0) >= end for p, end in _ends(settings, topic).items())


def test_bad_records_dead_lettered_and_redelivery_does_not_double_count(
    make_settings: Callable[..., Settings], topics: Topics, start_sink: Callable[..., WorkerProcess],
) -> None:
    settings = sink_settings(make_settings)
    images = [str(uuid.uuid4()) for _ in range(5)]
    good = [(img.encode(), _trace(img, n)) for n in range(4) for img in images]
    bad: list[tuple[bytes, bytes | None]] = [
        (images[0].encode(), b"\x89PNG not json at all"),
        (images[1].encode(), json.dumps({"image_uuid": images[1], "job": "preview"}).encode()),
        (images[2].encode(), None),
    ]
    p = Producer(settings.kafka.confluent_config())
    for key, value in [*good[:10], *bad, *good[10:]]:
        p.produce(topics.traces, value, key)
    assert p.flush(30) == 0

    sink = start_sink(settings)
    wait_sink_ready(settings, sink)
    reader = open_reader(settings)

    def total() -> int:
        _, rows = reader.query("SELECT count() FROM traces FINAL")
        return int(str(rows[0][0]))

    wait_until(lambda: _caught_up(settings, topics.traces), 60,
               lambda: f"the sink to commit everything; log:\n{sink.output()[-3000:]}")
    assert total() == len(good)
    dead = read_topic(settings, topics.traces_dead_letter, expect=3)
    assert len(dead) == 3 and sink.proc.poll() is None, "bad records must not stop the sink"
    by_key = {m.key().decode(): headers_to_dict(m.headers()) for m in dead}
    assert set(by_key) == set(images[:3])
    assert "undecodable" in by_key[images[0]][H_EXC_MESSAGE]
    assert "missing required field" in by_key[images[1]][H_EXC_MESSAGE]
    assert "empty record" in by_key[images[2]][H_EXC_MESSAGE]
    assert {h[H_TOPIC] for h in by_key.values()} == {topics.traces}
    assert {h[H_REASON] for h in by_key.values()} == {"invalid"}
    assert {m.value() for m in dead} == {v for _, v in bad}

    def numbers() -> tuple[object, ...]:
        per_image = reader.query("SELECT image_uuid, count() FROM traces FINAL GROUP BY image_uuid "
                                 "ORDER BY image_uuid")[1]
        rollup = reader.query("SELECT uniqMerge(attempts), uniqMerge(images) FROM traces_per_minute")[1]
        report = cli(settings, "traces", "report", "--format", "json")
        assert report.exit_code == 0, report.output
        doc = json.loads(report.output)
        return (total(), tuple(per_image), tuple(rollup), json.dumps(doc["success_rate"]),
                json.dumps(doc["duration_percentiles"]))

    before = numbers()
    assert before[0] == 20 and before[2] == ((20, 5),)

    # Force a redelivery: stop the sink, rewind its group to the start, run it again.
    assert sink.stop() == 0, sink.output()[-2000:]
    c = Consumer({**settings.kafka.confluent_config(), "group.id": sink_group(settings),
                  "enable.auto.commit": False})
    parts = c.list_topics(topics.traces, timeout=10).topics[topics.traces].partitions
    c.commit(offsets=[TopicPartition(topics.traces, p_, 0) for p_ in parts], asynchronous=False)
    c.close()
    assert all(o == 0 for o in _committed(settings, topics.traces).values())

    again = start_sink(settings)
    wait_sink_ready(settings, again)
    wait_until(lambda: _caught_up(settings, topics.traces), 60,
               lambda: f"the re-run sink to commit everything; log:\n{again.output()[-3000:]}")
    raw_rows = int(str(reader.query("SELECT count() FROM traces")[1][0][0]))
    assert raw_rows >= 20  # duplicates may sit on disk until a merge; queries see through them
    assert numbers() == before
    assert len(read_topic(settings, topics.traces_dead_letter, expect=6)) == 6  # same dead letters again
