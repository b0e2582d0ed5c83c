"""Retries, dead letters and the operator's failed / replay / forget / flush / clear,
against the real broker and a real worker process."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from streams import headers as dl
from streams.kafka import describe_group
from streams.producer import EventProducer
from streams.replay import DeadLetters
from streams.settings import Settings
from streams.storage import PREVIEWS, LocalStorage
from streams.topics import Job, Topics, ensure_topics
from streams.traces import TraceEvent
from streams.uploads import stage_upload
from tests.conftest import wait_until
from tests.integration.helpers import cli, make_jpeg, read_topic


def _setup(make_settings, **worker: object) -> tuple[Settings, Topics, LocalStorage]:
    settings: Settings = make_settings(worker=worker) if worker else make_settings()
    topics = Topics.from_settings(settings.kafka)
    ensure_topics(settings.kafka, topics.specs())
    st = LocalStorage(settings.storage.root)
    st.ensure()
    return settings, topics, st


def _break_previews(st: LocalStorage) -> None:
    """Root ignores permissions, so make the previews area a file: every write fails."""
    shutil.rmtree(st.root / PREVIEWS)
    (st.root / PREVIEWS).write_text("not a directory")


def _repair_previews(st: LocalStorage) -> None:
    (st.root / PREVIEWS).unlink()
    (st.root / PREVIEWS).mkdir()


def _publish_uploads(settings: Settings, topics: Topics, events: list) -> None:
    with EventProducer(settings.kafka) as p:
        for ev in events:
            p.send(topics.job(Job.PREVIEW), ev.key, ev.model_dump_json().encode())


def test_corrupt_image_dead_letters_with_full_headers(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings)
    whole = make_jpeg(tmp_path / "whole.jpg", (1600, 1200)).read_bytes()
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(whole[: len(whole) // 3])  # a truncated JPEG
    bad = stage_upload(st, corrupt)
    good = stage_upload(st, make_jpeg(tmp_path / "good.jpg", (640, 480)))
    worker = start_worker(settings)
    _publish_uploads(settings, topics, [bad, good])
    wait_until(lambda: st.preview_path(good.uuid).exists(), 60, lambda: worker.output()[-3000:])
    [m] = read_topic(settings, topics.dead_letter(Job.PREVIEW), expect=1)
    assert m.key().decode() == bad.uuid and m.value() == bad.model_dump_json().encode()
    h = dl.headers_to_dict(m.headers())
    assert h[dl.H_TOPIC] == topics.job(Job.PREVIEW)
    assert int(h[dl.H_PARTITION]) == m.partition()
    assert int(h[dl.H_OFFSET]) >= 0 and int(h[dl.H_TIMESTAMP]) > 0
    assert h[dl.H_GROUP] == settings.kafka.group_id
    assert h[dl.H_EXC_CLASS].endswith("CorruptImage")
    assert "corrupt" in h[dl.H_EXC_MESSAGE].lower() or "truncated" in h[dl.H_EXC_MESSAGE].lower()
    assert "Traceback" in h[dl.H_EXC_STACK] and len(h[dl.H_EXC_STACK]) <= dl.STACK_LIMIT
    assert h[dl.H_ATTEMPTS] == "1" and h[dl.H_REASON] == "permanent"
    assert h[dl.H_WORKER].endswith(f":{worker.proc.pid}")
    assert h[dl.H_FIRST_FAILURE] <= h[dl.H_LAST_FAILURE]
    assert h[dl.H_ID] == dl.dead_letter_id(h[dl.H_TOPIC], int(h[dl.H_PARTITION]), int(h[dl.H_OFFSET]))
    assert "Restarting dead" not in worker.output()


def test_transient_failure_twice_then_cleared(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings, tries=6, backoff_base_s=4.0, backoff_max_s=8.0)
    # the third attempt waits at least 2 s (a quarter of its 8 s cap): time to repair storage
    ev = stage_upload(st, make_jpeg(tmp_path / "a.jpg", (900, 600)))
    _break_previews(st)
    worker = start_worker(settings)
    _publish_uploads(settings, topics, [ev])
    retries = re.compile(rf"uuid={ev.uuid} .*attempt=(\d) outcome=retry")
    wait_until(lambda: len(retries.findall(worker.output())) >= 2, 60, lambda: worker.output()[-3000:])
    _repair_previews(st)
    wait_until(lambda: st.preview_path(ev.uuid).exists(), 30, lambda: worker.output()[-3000:])
    # The job's line is logged once the broker has acknowledged what it owes, a moment
    # after its files exist.
    ok = re.compile(rf"uuid={ev.uuid} .*attempt=(\d) outcome=ok")
    wait_until(lambda: ok.search(worker.output()), 30, lambda: worker.output()[-3000:])
    out = worker.output()
    assert retries.findall(out) == ["1", "2"]
    assert ok.findall(out) == ["3"]
    traces = [TraceEvent.model_validate_json(m.value())
              for m in read_topic(settings, topics.traces, expect=5, timeout=10)]
    mine = [t for t in traces if t.image_uuid == ev.uuid]
    assert sorted(t.attempt for t in mine if t.trace_type == "retry") == [1, 2]
    assert any(t.attempt == 3 and t.trace_type == "storage" and t.success for t in mine)
    assert all("StorageUnavailable" in t.method_tried for t in mine if t.trace_type == "retry")
    assert read_topic(settings, topics.dead_letter(Job.PREVIEW), expect=1, timeout=2) == []


def test_retries_exhausted_then_replay_round_trip(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings, tries=2, backoff_base_s=0.1, backoff_max_s=0.2)
    events = [stage_upload(st, make_jpeg(tmp_path / f"r{i}.jpg", (500 + i, 400))) for i in range(4)]
    _break_previews(st)
    worker = start_worker(settings)
    _publish_uploads(settings, topics, events)
    store = DeadLetters(settings.kafka, topics)
    wait_until(lambda: len(store.entries()) == 4, 60, lambda: worker.output()[-3000:])
    entries = store.entries()
    assert {e.uuid for e in entries} == {e.uuid for e in events}
    assert all(e.attempts == 2 and e.reason == "retries-exhausted" for e in entries)
    assert all(e.error_class.endswith("StorageUnavailable") for e in entries)

    listing = cli(settings, "failed", "--json")
    assert listing.exit_code == 0
    assert {row["uuid"] for row in json.loads(listing.output)} == {e.uuid for e in events}

    _repair_previews(st)
    dry = cli(settings, "replay", "all", "--dry-run")
    assert dry.exit_code == 0 and "4 would be replayed, nothing sent" in dry.output
    assert len(store.entries()) == 4  # a dry run resolves nothing

    done = cli(settings, "replay", "all")
    assert done.exit_code == 0 and "replayed 4" in done.output, done.output
    wait_until(lambda: all(st.preview_path(e.uuid).exists() for e in events), 60,
               lambda: worker.output()[-3000:])
    assert store.entries() == []
    again = cli(settings, "replay", "all")
    assert "replayed 0" in again.output
    replayed = read_topic(settings, topics.job(Job.PREVIEW), expect=8)
    assert len(replayed) == 8  # 4 uploads + 4 replays, and no more
    links = [dl.headers_to_dict(m.headers()).get(dl.H_REPLAY_OF) for m in replayed]
    assert sorted(x for x in links if x) == sorted(e.id for e in entries)
    # the attempt count carried on (logged once its records are acknowledged)
    wait_until(lambda: worker.output().count("attempt=3 outcome=ok") >= 4, 30,
               lambda: worker.output()[-3000:])


def test_forget_flush_and_poison(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings)
    bad = []
    for i in range(3):
        p = tmp_path / f"bad{i}.jpg"
        p.write_bytes(b"not an image at all %d" % i)
        bad.append(stage_upload(st, p))
    worker = start_worker(settings)
    _publish_uploads(settings, topics, bad)
    store = DeadLetters(settings.kafka, topics)
    wait_until(lambda: len(store.entries()) == 3, 60, lambda: worker.output()[-3000:])
    first = store.entries()[0]

    # Replaying a record that is bad in itself dead-letters it again: flagged poison.
    assert cli(settings, "replay", first.id).exit_code == 0
    wait_until(lambda: any(e.poison for e in store.entries()), 60, lambda: worker.output()[-3000:])
    poison = next(e for e in store.entries() if e.poison)
    assert poison.uuid == first.uuid and poison.replay_of == first.id
    assert "[poison]" in cli(settings, "failed").output
    skipped = cli(settings, "replay", "all", "--dry-run")
    assert f"skip {poison.id}: poison" in skipped.output

    assert cli(settings, "forget", poison.id).output.strip() == "forgot 1"
    assert poison.id not in {e.id for e in store.entries()}
    assert cli(settings, "forget", "0000000000000000").exit_code == 1
    assert len(store.entries()) == 2
    flushed = cli(settings, "flush", "--yes")
    assert "flushed 2" in flushed.output
    assert store.entries() == []
    assert cli(settings, "failed").output.strip() == "no unresolved dead letters"


def test_clear_skips_exactly_the_pending_records(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings)
    done = [stage_upload(st, make_jpeg(tmp_path / f"d{i}.jpg", (300, 200))) for i in range(3)]
    worker = start_worker(settings)
    _publish_uploads(settings, topics, done)
    wait_until(lambda: all(st.preview_path(e.uuid).exists() for e in done), 60,
               lambda: worker.output()[-3000:])
    assert worker.stop() == 0
    pending = [stage_upload(st, make_jpeg(tmp_path / f"p{i}.jpg", (300, 200))) for i in range(7)]
    _publish_uploads(settings, topics, pending)
    res = cli(settings, "clear", "ingest-preview", "--yes")
    assert res.exit_code == 0, res.output
    assert f"{topics.job(Job.PREVIEW)}: skipped 7 records" in res.output
    per_partition = sum(int(n) for n in re.findall(r"\]: skipped (\d+)", res.output))
    assert per_partition == 7
    assert "nothing pending" in cli(settings, "clear", "ingest-preview", "--yes").output
    worker2 = start_worker(settings)
    extra = stage_upload(st, make_jpeg(tmp_path / "after.jpg", (300, 200)))
    _publish_uploads(settings, topics, [extra])
    wait_until(lambda: st.preview_path(extra.uuid).exists(), 60, lambda: worker2.output()[-3000:])
    assert not any(st.preview_path(e.uuid).exists() for e in pending)


def test_reconciliation_every_upload_processed_or_failed(make_settings, start_worker, tmp_path: Path) -> None:
    settings, topics, st = _setup(make_settings)
    events = []
    for i in range(24):
        if i % 4 == 3:
            p = tmp_path / f"bad{i}.jpg"
            p.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * (i + 1))
        else:
            p = make_jpeg(tmp_path / f"ok{i}.jpg", (400 + i, 300))
        events.append(stage_upload(st, p))
    worker = start_worker(settings, "--concurrency", "3")
    _publish_uploads(settings, topics, events)
    store = DeadLetters(settings.kafka, topics)

    def settled() -> bool:
        failed = {e.uuid for e in store.entries()}
        return sum(st.preview_path(e.uuid).exists() or e.uuid in failed for e in events) == 24

    wait_until(settled, 90, lambda: worker.output()[-3000:])
    failed = {e.uuid for e in store.entries()}
    processed = {e.uuid for e in events if st.preview_path(e.uuid).exists()}
    assert processed.isdisjoint(failed)
    assert processed | failed == {e.uuid for e in events}
    assert failed == {e.uuid for i, e in enumerate(events) if i % 4 == 3}


def test_replay_killed_halfway_then_rerun_sends_each_once_and_a_forget_holds(
    make_settings, tmp_path: Path
) -> None:
    """20 dead letters replayed at --rate 5; the replay is SIGKILLed after about two
    seconds, and one entry not replayed yet is forgotten meanwhile. A second replay sends
    the rest: every entry reaches its source topic exactly once, the forgotten one never."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import uuid as uuid_mod

    from tests.conftest import ROOT, settings_env

    settings, topics, _ = _setup(make_settings)
    base_ms = 1_790_000_000_000
    ids: list[str] = []
    with EventProducer(settings.kafka) as p:
        for i in range(20):
            key = str(uuid_mod.uuid4()).encode()
            origin = dl.Origin(topic=topics.job(Job.PREVIEW), partition=0, offset=i, timestamp_ms=base_ms)
            headers = dl.build_headers(origin=origin, group=settings.kafka.group_id,
                                       exc=RuntimeError("boom"), reason="permanent", attempts=1,
                                       worker="w:1", first_failure_ms=base_ms,
                                       last_failure_ms=base_ms + i * 1000, replay_of=None)
            p.send(topics.dead_letter(Job.PREVIEW), key, b"{}", headers=headers)
            ids.append(dl.dead_letter_id(origin.topic, 0, i))
    env = {**os.environ, **settings_env(settings)}
    replay = [sys.executable, "-m", "streams", "replay", "all", "--rate", "5"]
    first = subprocess.Popen(replay, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    assert cli(settings, "forget", ids[-1]).exit_code == 0  # the last one: not replayed yet
    time.sleep(1.5)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    replayed_before = _replays(settings, topics)
    assert 0 < len(replayed_before) < 19, f"the kill should land mid-replay: {len(replayed_before)} sent"
    second = subprocess.run(replay, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    counts = _replays(settings, topics)
    assert set(counts) == set(ids[:-1]), sorted(set(ids) ^ set(counts))
    assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}
    assert DeadLetters(settings.kafka, topics).entries() == []
    assert DeadLetters(settings.kafka, topics).resolved()[ids[-1]]["how"] == "forget"


def _replays(settings: Settings, topics: Topics) -> dict[str, int]:
    """Replayed records on the preview topic, counted per dead-letter id."""
    from collections import Counter

    from streams.kafka import read_to_end

    return dict(Counter(dl.headers_to_dict(m.headers()).get(dl.H_REPLAY_OF)
                        for m in read_to_end(settings.kafka, [topics.job(Job.PREVIEW)])))


def test_clear_while_a_worker_runs_is_refused_and_moves_nothing(
    make_settings, start_worker, tmp_path: Path
) -> None:
    # Seen from the dashboard: with two workers in the group, clear answered "cleared 6"
    # though Kafka had refused every partition (the errors were per partition, unread).
    settings, topics, st = _setup(make_settings)
    worker = start_worker(settings, "--topics", "ingest-preview")
    assert cli(settings, "pause", "ingest-preview").exit_code == 0
    first = stage_upload(st, make_jpeg(tmp_path / "first.jpg", (300, 200)))
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka.confluent_config())
    group = settings.kafka.group_id

    def a_member() -> bool:
        desc = describe_group(admin, group, 10)
        return bool(desc.members) and desc.state.name == "STABLE"

    wait_until(a_member, 60, lambda: worker.output()[-3000:])
    pending = [stage_upload(st, make_jpeg(tmp_path / f"p{i}.jpg", (300, 200))) for i in range(4)]
    _publish_uploads(settings, topics, [first, *pending])
    res = cli(settings, "clear", "ingest-preview", "--yes")
    assert res.exit_code != 0, res.output
    assert "stop them first" in res.output, res.output
    assert cli(settings, "continue", "ingest-preview").exit_code == 0
    # Nothing was skipped: every upload still gets its preview.
    wait_until(lambda: all(st.preview_path(e.uuid).exists() for e in [first, *pending]), 90,
               lambda: worker.output()[-3000:])
