"""Preview job: a 2048 px preview and a 400x400 thumbnail for each upload."""

from __future__ import annotations

import time

from imaging import Attempt

from ...events import UploadReceived
from ..runner import JobResult, Services
from . import store_attempt


def handle(event: UploadReceived, s: Services) -> JobResult:
    preview, thumb = s.storage.preview_path(event.uuid), s.storage.thumbnail_path(event.uuid)
    if preview.is_file() and thumb.is_file():
        # Redelivered after a crash between the write and the offset commit: the outputs
        # are whole (atomic renames) and deterministic, so the job is already done; only a
        # write the crash cut off may have left its temp file.
        s.storage.sweep(preview, thumb)
        return JobResult(attempts=[Attempt("storage", "already_stored", 1, True, 0.0)],
                         note="duplicate delivery: outputs already stored")
    src = s.storage.source_for(event.uuid, event.path)
    result = s.imager.preview(src)

    def store() -> list[Attempt]:
        start = time.perf_counter()
        s.storage.write_bytes(preview, result.preview.data)
        s.storage.write_bytes(thumb, result.thumbnail.data)
        size = len(result.preview.data) + len(result.thumbnail.data)
        return [store_attempt("local_atomic_write", start, size)]

    # the writes (two fsyncs) run while the next image decodes (runner.JobResult.after)
    return JobResult(attempts=list(result.attempts), after=store)
