"""Malformed events neither crash the agent nor block the next good event."""

from __future__ import annotations

import json
from pathlib import Path

from streams import headers
from streams.producer import EventProducer
from streams.settings import Settings
from streams.storage import LocalStorage
from streams.topics import Job, Topics
from streams.uploads import stage_upload
from tests.conftest import wait_until
from tests.integration.helpers import make_jpeg, read_topic

UID = "0b6f1c2e-9d3a-4f4e-8a1b-2c3d4e5f6a7b"


def test_malformed_events_do_not_stop_the_agent(
    make_settings, start_worker, tmp_path: Path
) -> None:
    settings: Settings = make_settings(kafka={"partitions": 1})  # one partition: strict order
    topics = Topics.from_settings(settings.kafka)
    from streams.topics import ensure_topics

    ensure_topics(settings.kafka, topics.specs())
    st = LocalStorage(settings.storage.root)
    st.ensure()
    good = stage_upload(st, make_jpeg(tmp_path / "good.jpg", (800, 600)))
    good_body = json.loads(good.model_dump_json())
    bad = {
        "not-json": b"{{{ not json",
        "wrong-schema": json.dumps({**good_body, "size": "big"}).encode(),
        "bad-uuid": json.dumps({**good_body, "uuid": "not-a-uuid"}).encode(),
        "path-escape": json.dumps({**good_body, "path": "../../../etc/passwd"}).encode(),
        "absolute-path": json.dumps({**good_body, "path": "/etc/passwd"}).encode(),
    }
    worker = start_worker(settings)
    with EventProducer(settings.kafka) as p:
        for name, body in bad.items():
            p.send(topics.job(Job.PREVIEW), name.encode(), body)
        p.send(topics.job(Job.PREVIEW), good.key, good_body and json.dumps(good_body).encode())
    wait_until(lambda: st.preview_path(good.uuid).exists(), 60,
               lambda: f"the good event after the bad ones; log:\n{worker.output()[-3000:]}")
    dead = read_topic(settings, topics.dead_letter(Job.PREVIEW), expect=len(bad))
    assert sorted(m.key().decode() for m in dead) == sorted(bad)
    for m in dead:
        h = headers.headers_to_dict(m.headers())
        assert m.value() == bad[m.key().decode()], "dead letter must carry the original value"
        assert h[headers.H_EXC_CLASS] == "streams.errors.InvalidEvent"
        assert h[headers.H_TOPIC] == topics.job(Job.PREVIEW)
        assert h[headers.H_REASON] == "permanent"
    assert not (Path("/etc/passwd.jpg")).exists()
    assert worker.proc.poll() is None
    log = worker.output()
    assert log.count("outcome=dead_letter") == len(bad)
    assert "InvalidEvent" in log
