"""Upload -> Kafka -> faust agents -> previews, ingest and enhance, on the real broker."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from streams.events import ImageRecord
from streams.settings import Settings
from streams.storage import LocalStorage
from streams.topics import Job, Topics, partition_for
from tests.conftest import wait_until
from tests.integration.helpers import cli, make_jpeg, read_topic


def test_upload_confirm_enhance(settings: Settings, topics: Topics, start_worker, tmp_path: Path) -> None:
    worker = start_worker(settings)
    sizes = [(3000 + 37 * i, 2000) if i % 3 else (1200, 1600 + i) for i in range(20)]
    files = [make_jpeg(tmp_path / "in" / f"img{i:02d}.jpg", s) for i, s in enumerate(sizes)]
    res = cli(settings, "upload", *map(str, files))
    assert res.exit_code == 0, res.output
    uuids = [line.split()[0] for line in res.output.splitlines()]
    assert len(uuids) == 20
    st = LocalStorage(settings.storage.root)

    def previews_done() -> bool:
        return all(st.thumbnail_path(u).exists() and st.preview_path(u).exists() for u in uuids)

    wait_until(previews_done, 120, lambda: f"20 previews; worker log:\n{worker.output()[-3000:]}")
    for u, size in zip(uuids, sizes, strict=True):
        with Image.open(st.preview_path(u)) as p:
            assert max(p.size) == min(2048, max(size))
            assert p.format == "JPEG"
        with Image.open(st.thumbnail_path(u)) as t:
            assert t.size == (400, 400)

    confirmed = uuids[:5]
    res = cli(settings, "confirm", *confirmed)
    assert res.exit_code == 0, res.output
    wait_until(lambda: all(st.metadata_path(u).exists() for u in confirmed), 60, "5 ingests")
    for u in confirmed:
        meta = json.loads(st.metadata_path(u).read_text())
        original = settings.storage.root / meta["original_path"]
        assert original.is_file() and original.parent == st.original_dir(u)
        assert meta["uuid"] == u and meta["size"] == original.stat().st_size
        assert not list((settings.storage.root / "uploads").rglob(f"{u}.jpg")), "upload not moved"
    records = read_topic(settings, topics.images, expect=5)
    by_key = {m.key().decode(): ImageRecord.model_validate_json(m.value()) for m in records}
    assert set(by_key) == set(confirmed)
    for rec in by_key.values():
        assert rec.sha256 and rec.original_path.endswith(".jpg")

    enhanced = [uuids[1], uuids[7]]  # one confirmed (reads the permanent original), one not
    res = cli(settings, "enhance", *enhanced)
    assert res.exit_code == 0, res.output
    wait_until(lambda: all(st.enhanced_path(u).exists() for u in enhanced), 60, "2 enhanced")
    for u in enhanced:
        i = uuids.index(u)
        with Image.open(st.enhanced_path(u)) as e:
            assert max(e.size) == min(4096, max(sizes[i]))
            assert max(e.size) > 2048
    assert worker.proc.poll() is None, "worker died"


def test_same_uuid_same_partition_on_every_topic(settings: Settings, topics: Topics) -> None:
    from streams.producer import EventProducer

    producer = EventProducer(settings.kafka)
    keys = [f"0b6f{i:04d}-aaaa-4bbb-8ccc-0123456789ab" for i in range(40)]
    for job in Job:
        for k in keys:
            producer.send(topics.job(job), k.encode(), b"{}")
    assert len(producer.flush()) == 3 * len(keys)
    by_key: dict[str, set[int]] = {}
    for job in Job:
        for m in read_topic(settings, topics.job(job), expect=len(keys)):
            by_key.setdefault(m.key().decode(), set()).add(m.partition())
    assert set(by_key) == set(keys)
    for k, parts in by_key.items():
        # the same partition on all three topics, and the one murmur2 (faust's partitioner) picks
        assert parts == {partition_for(k.encode(), settings.kafka.partitions)}
    assert len({p for s in by_key.values() for p in s}) > 1  # really spread over partitions


def test_upload_with_the_broker_down_fails_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    from tests.conftest import settings_env
    from tests.integration.helpers import CliRunner, main

    settings = Settings(kafka={"bootstrap_servers": "127.0.0.1:1", "request_timeout_s": 2},  # type: ignore[arg-type]
                        storage={"root": tmp_path / "st"})  # type: ignore[arg-type]
    src = make_jpeg(tmp_path / "a.jpg", (100, 80))
    res = CliRunner().invoke(main, ["upload", str(src)], env=settings_env(settings))
    assert res.exit_code == 3
    assert "no Kafka broker answered at 127.0.0.1:1; nothing was staged" in res.output
    assert [p for p in (tmp_path / "st" / "uploads").rglob("*") if p.is_file()] == []
    assert src.exists()


def test_the_cli_prints_one_line_per_kafka_condition_not_librdkafkas_raw_log(tmp_path: Path) -> None:
    """With the broker down librdkafka logs a connect failure every few hundred ms; the CLI
    shows it once, through our logging, then its own error. (Raw lines look like
    ``%3|1796154790.358|FAIL|rdkafka#producer-1| ...`` and bypass Python entirely.)"""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, settings_env

    settings = Settings(kafka={"bootstrap_servers": "127.0.0.1:1", "request_timeout_s": 3},  # type: ignore[arg-type]
                        storage={"root": tmp_path / "st"})  # type: ignore[arg-type]
    src = make_jpeg(tmp_path / "a.jpg", (100, 80))
    proc = subprocess.run([sys.executable, "-m", "streams", "upload", str(src)], cwd=ROOT,
                          env={**os.environ, **settings_env(settings)}, capture_output=True,
                          text=True, timeout=60, check=False)
    err = proc.stderr.splitlines()
    assert proc.returncode == 3, proc.stderr
    assert not [line for line in err if line.startswith("%")], proc.stderr
    refused = [line for line in err if "Connection refused" in line]
    assert len(refused) <= 1, proc.stderr
    assert sum("no Kafka broker answered at 127.0.0.1:1" in line for line in err) == 1, proc.stderr


def test_partition_mismatch_is_reported_clearly(settings: Settings) -> None:
    import pytest
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from streams.topics import TopicMismatch, ensure_topics

    topics = Topics.from_settings(settings.kafka)
    admin = AdminClient(settings.kafka.confluent_config())
    wrong = topics.job(Job.INGEST)
    admin.create_topics([NewTopic(wrong, settings.kafka.partitions + 1, 1)])[wrong].result(10)
    with pytest.raises(TopicMismatch) as exc:
        ensure_topics(settings.kafka, topics.specs())
    assert f"topic {wrong!r} has {settings.kafka.partitions + 1} partitions" in str(exc.value)
    assert "INGEST_KAFKA__PARTITIONS" in str(exc.value)


def test_confirm_twice_is_idempotent(
    settings: Settings, topics: Topics, start_worker, tmp_path: Path
) -> None:
    worker = start_worker(settings)
    res = cli(settings, "upload", str(make_jpeg(tmp_path / "a.jpg", (800, 600))))
    uid = res.output.split()[0]
    st = LocalStorage(settings.storage.root)
    assert cli(settings, "confirm", uid).exit_code == 0
    wait_until(lambda: st.metadata_path(uid).exists(), 60, lambda: worker.output()[-2000:])
    first = st.metadata_path(uid).read_bytes()
    assert cli(settings, "confirm", uid).exit_code == 0  # the web app sends it again
    wait_until(lambda: "duplicate delivery" in worker.output(), 60, lambda: worker.output()[-2000:])
    assert st.metadata_path(uid).read_bytes() == first
    originals = [p for p in st.original_dir(uid).iterdir() if p.name.startswith("original")]
    assert len(originals) == 1
    records = read_topic(settings, topics.images, expect=2)
    assert len(records) == 2 and records[0].value() == records[1].value() == first


def test_dead_letters_are_kept_until_resolved(settings: Settings) -> None:
    """Read back from the broker: the dead-letter topics never expire their records and
    the resolution topic is compacted; a dead-letter topic made with the broker's default
    retention is reported at start with the command that fixes it."""
    import pytest
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

    from streams.topics import TopicMismatch, ensure_topics

    topics = Topics.from_settings(settings.kafka)
    admin = AdminClient(settings.kafka.confluent_config())
    wrong = topics.dead_letter(Job.ENHANCE)
    ensure_topics(settings.kafka, [s for s in topics.specs() if s.name != wrong])
    admin.create_topics([NewTopic(wrong, settings.kafka.partitions, 1)])[wrong].result(10)
    with pytest.raises(TopicMismatch) as exc:
        ensure_topics(settings.kafka, topics.specs())
    msg = str(exc.value)
    assert f"topic {wrong!r} has retention.ms=604800000" in msg
    assert f"--entity-name {wrong} --add-config retention.ms=-1" in msg
    names = [topics.dead_letter(j) for j in Job if j is not Job.ENHANCE] + [topics.dead_letter_state]
    res = admin.describe_configs([ConfigResource("topic", n) for n in names])
    for r, fut in res.items():
        conf = fut.result(10)
        if r.name == topics.dead_letter_state:
            assert conf["cleanup.policy"].value == "compact"
        else:
            assert conf["retention.ms"].value == "-1" and conf["retention.bytes"].value == "-1"
            assert conf["cleanup.policy"].value == "delete"


def test_topics_another_process_just_created_serve_when_ensure_topics_returns(settings: Settings) -> None:
    """Workers started together: one creates the topics, the others find them in the
    metadata a moment later, before their leaders serve. ensure_topics returns only once
    every partition answers an offset query, whoever created it (three workers started at
    once under load died on NOT_LEADER_FOR_PARTITION at their first watermark query)."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from streams.topics import ensure_topics

    topics = Topics.from_settings(settings.kafka)
    specs = [s for s in topics.specs() if not s.enforced]
    admin = AdminClient(settings.kafka.confluent_config())
    futures = admin.create_topics([NewTopic(s.name, s.partitions, 1, config=s.kafka_config())
                                   for s in specs])
    for fut in futures.values():
        fut.result(10)  # created: in the metadata, leaders perhaps not yet serving
    assert ensure_topics(settings.kafka, specs) == []  # none left for this process to create
    c = Consumer({**settings.kafka.confluent_config(), "group.id": "probe", "log_level": 2})
    try:
        for s in specs:
            for p in range(s.partitions):
                c.get_watermark_offsets(TopicPartition(s.name, p), timeout=10, cached=False)
    finally:
        c.close()
