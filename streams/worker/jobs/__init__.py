"""The jobs, one module per job topic: ``handle(event, services)`` does the work and returns
its attempt records; ``runner.JobRunner`` wraps it with decoding, timeouts and failure routing.
What they share lives here.
"""

from __future__ import annotations

import time

from imaging import Attempt


def store_attempt(method: str, start: float, size: int) -> Attempt:
    return Attempt("storage", method, 1, True, round((time.perf_counter() - start) * 1000, 3),
                   size_bytes=size)
