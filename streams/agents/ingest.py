"""Ingest job: move a confirmed original into permanent storage and record its metadata.

Idempotent: a redelivered request finds the original already in place (the upload is
removed only after the permanent copy and its metadata are durable) and writes the same
metadata file and ``images`` record again, keyed by UUID.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from imaging import Attempt

from ..events import ImageRecord, IngestRequested
from ..storage import sha256_file
from .base import JobResult, Output, Services
from .preview import store_attempt


def handle(event: IngestRequested, s: Services) -> JobResult:
    st = s.storage
    src = st.source_for(event.uuid, event.path)
    dest = st.original_path(event.uuid, event.original_filename)
    start = time.perf_counter()
    note = ""
    done = _already_ingested(s, event, dest) if src == dest else None
    if done is not None:
        # A redelivery after the job finished: publish the very same record again.
        st.sweep(dest, st.metadata_path(event.uuid))
        return JobResult(attempts=[Attempt("storage", "already_stored", 1, True, 0.0)],
                         outputs=[Output(s.topics.images, event.key, done)],
                         note="duplicate delivery: original and metadata already stored")
    if src == dest:
        sha = sha256_file(dest)
        note = "original already in permanent storage (redelivery)"
    else:
        sha = st.copy_in(src, dest)
    attempts = [store_attempt("permanent_copy", start, dest.stat().st_size)]
    meta = s.imager.metadata(dest)
    attempts.extend(meta.attempts)
    record = ImageRecord(
        uuid=event.uuid,
        original_path=st.relative(dest),
        metadata_path=st.relative(st.metadata_path(event.uuid)),
        original_filename=event.original_filename,
        size=dest.stat().st_size,
        sha256=sha,
        ingested_at=datetime.now(UTC),
        owner_id=event.owner_id,
        gallery_id=event.gallery_id,
        metadata=meta.metadata.as_json(),
    )
    payload = record.model_dump_json().encode()
    st.write_bytes(st.metadata_path(event.uuid), payload)
    if src != dest:
        src.unlink(missing_ok=True)  # only now: the permanent copy and metadata are durable
    return JobResult(
        attempts=attempts,
        outputs=[Output(s.topics.images, event.key, payload)],
        note=note,
    )


def _already_ingested(s: Services, event: IngestRequested, dest: Path) -> bytes | None:
    """The stored metadata record, if it describes the original now in place."""
    path = s.storage.metadata_path(event.uuid)
    try:
        payload = path.read_bytes()
        record = ImageRecord.model_validate_json(payload)
    except (OSError, ValueError):
        return None
    return payload if record.sha256 == sha256_file(dest) else None
