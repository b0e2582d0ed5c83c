"""The one command line: ``prophoto-ingest`` (or ``python -m streams``): one root group
(``root.main``), one context object (``context.Ctx``), one module per command group, all
registered here and nowhere else.

Exit codes: 0 success, 1 a command failed (the message says why), 2 bad usage,
3 Kafka unreachable.
"""

from __future__ import annotations

from . import pauses, process, publish, replay, search, status, topics, traces, worker
from .root import main

__all__ = ["main"]

for _command in (
    topics.topics,
    worker.worker, worker.restart,
    pauses.pause, pauses.continue_,
    publish.upload, publish.confirm, publish.enhance,
    replay.failed, replay.replay, replay.forget, replay.flush, replay.clear,
    process.process,
    status.status,
    search.search,
    traces.traces,
):
    main.add_command(_command)
