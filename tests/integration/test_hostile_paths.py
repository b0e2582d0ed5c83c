"""Crafted events that point a job at files that are not its image's own: each is a
dead letter naming the path, and no other image's file changes by a byte."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from streams.events import EnhanceRequested, IngestRequested, UploadReceived
from streams.replay import DeadLetters
from streams.topics import Job
from streams.uploads import ingest_request
from tests.conftest import wait_until
from tests.integration.test_worker_runtime import _publish, _setup, _uploads


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def test_crafted_paths_are_dead_letters_and_touch_nothing(
    make_settings, start_worker, tmp_path: Path
) -> None:
    settings, topics, st = _setup(make_settings)
    b, a, c = _uploads(st, tmp_path, 3)
    _publish(settings, topics.job(Job.PREVIEW), [b])
    _publish(settings, topics.job(Job.INGEST), [ingest_request(b)])
    w = start_worker(settings)
    wait_until(lambda: st.metadata_path(b.uuid).exists() and st.preview_path(b.uuid).exists(), 60,
               lambda: w.output()[-2000:])
    b_original = st.relative(st.original_path(b.uuid, b.original_filename))
    b_preview = st.relative(st.preview_path(b.uuid))
    # C's upload slot is a symlink to B's permanent original (inside the root, still not C's)
    c_upload = st.resolve(c.path)
    c_upload.unlink()
    os.symlink(st.original_path(b.uuid, b.original_filename), c_upload)
    before = _snapshot(st.root)

    crafted = {
        Job.INGEST: [IngestRequested(uuid=a.uuid, path=b_original, original_filename="x.jpg")],
        Job.PREVIEW: [UploadReceived(uuid=a.uuid, path=b_preview, original_filename="x.jpg", size=1),
                      UploadReceived(uuid=c.uuid, path=c.path, original_filename="x.jpg", size=1)],
        Job.ENHANCE: [EnhanceRequested(uuid=a.uuid, path=b_original)],
    }
    for job, events in crafted.items():
        _publish(settings, topics.job(job), events)
    store = DeadLetters(settings.kafka, topics)
    entries = wait_until(lambda: (lambda e: e if len(e) == 4 else None)(store.entries()), 60,
                         lambda: f"{len(store.entries())} of 4 dead letters\n{w.output()[-3000:]}")
    for e in entries:
        assert e.error_class.endswith("UnsafePath"), (e.error_class, e.error_message)
    messages = sorted(e.error_message for e in entries)
    assert sum("not the upload of" in m for m in messages) == 3, messages
    assert sum("symlink" in m for m in messages) == 1, messages
    assert any(b_original in m for m in messages) and any(b_preview in m for m in messages)
    assert _snapshot(st.root) == before, "another image's files changed"
    assert not st.preview_path(a.uuid).exists() and not st.metadata_path(a.uuid).exists()
    assert not st.preview_path(c.uuid).exists() and not st.enhanced_path(a.uuid).exists()
