"""Enhance job: a higher-resolution preview, made on demand."""

from __future__ import annotations

import time

from imaging import Attempt

from ...events import EnhanceRequested
from ..runner import JobResult, Services
from . import store_attempt


def handle(event: EnhanceRequested, s: Services) -> JobResult:
    src = s.storage.source_for(event.uuid, event.path)
    result = s.imager.enhance(src, event.long_edge)

    def store() -> list[Attempt]:
        start = time.perf_counter()
        s.storage.write_bytes(s.storage.enhanced_path(event.uuid), result.image.data)
        return [store_attempt("local_atomic_write", start, len(result.image.data))]

    # the write runs while the next job does (runner.JobResult.after)
    return JobResult(attempts=list(result.attempts), after=store)
