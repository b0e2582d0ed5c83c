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

from ...errors import SourceMissing
from ...events import ImageRecord, IngestRequested
from ...storage import sha256_file
from ..runner import JobResult, Output, Services
from . import store_attempt


def handle(event: IngestRequested, s: Services) -> JobResult:
    st = s.storage
    src = st.source_for(event.uuid, event.path)
    # Not the upload: the image's own permanent original, in place already. It is the
    # destination, whatever extension this request's file name has (else a copy under
    # another name, and the original deleted as if it were the upload).
    dest = st.original_path(event.uuid, event.original_filename) if st.is_upload(src) else src
    start = time.perf_counter()
    note = ""
    done = _already_ingested(s, event, dest) if src == dest else None
    if done is not None:
        # A redelivery after the job finished: publish the very same record again.
        st.sweep(dest, st.metadata_path(event.uuid))
        return _duplicate(s, event, done, "original and metadata already stored")
    if src == dest:
        sha = sha256_file(dest)
        note = "original already in permanent storage (redelivery)"
    else:
        try:
            sha = st.copy_in(src, dest)
        except SourceMissing:
            # A concurrent run of the same request (a rebalance, two deliveries in flight)
            # finished and removed the upload while this one opened it.
            done = _already_ingested(s, event, dest)
            if done is None:
                raise
            return _duplicate(s, event, done, "a concurrent run ingested it first")
        # ... or finished while this one copied: its record stands (one ingested_at).
        done = _already_ingested(s, event, dest)
        if done is not None:
            src.unlink(missing_ok=True)
            return _duplicate(s, event, done, "a concurrent run ingested it first")
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
    stored = st.write_once(st.metadata_path(event.uuid), payload)
    if stored != payload:
        if _describes(stored, sha):
            # a concurrent run wrote its record first: that one stands, byte for byte
            if src != dest:
                src.unlink(missing_ok=True)
            return _duplicate(s, event, stored, "a concurrent run ingested it first")
        st.write_bytes(st.metadata_path(event.uuid), payload)  # a stale record of other bytes
    if src != dest:
        src.unlink(missing_ok=True)  # only now: the permanent copy and metadata are durable
    return JobResult(
        attempts=attempts,
        outputs=[Output(s.topics.images, event.key, payload)],
        note=note,
    )


def _duplicate(s: Services, event: IngestRequested, stored: bytes, why: str) -> JobResult:
    return JobResult(attempts=[Attempt("storage", "already_stored", 1, True, 0.0)],
                     outputs=[Output(s.topics.images, event.key, stored)],
                     note=f"duplicate delivery: {why}")


def _describes(payload: bytes, sha: str) -> bool:
    try:
        return ImageRecord.model_validate_json(payload).sha256 == sha
    except ValueError:
        return False


def _already_ingested(s: Services, event: IngestRequested, dest: Path) -> bytes | None:
    """The stored metadata record, if it describes the original now in place."""
    path = s.storage.metadata_path(event.uuid)
    try:
        payload = path.read_bytes()
        record = ImageRecord.model_validate_json(payload)
    except (OSError, ValueError):
        return None
    return payload if record.sha256 == sha256_file(dest) else None
