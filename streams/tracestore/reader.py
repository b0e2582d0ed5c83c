"""The read side of the trace store: what the CLI and the status page use.

``open_reader(settings)`` returns a ``TraceReader``; it talks to the sink's query endpoint
when a sink owns the chDB store, opens the store directly when none does, and uses
clickhouse-connect for a ClickHouse server.
"""

from __future__ import annotations

from typing import Protocol

from ..settings import Settings
from .errors import TraceStoreError

Row = tuple[object, ...]


class TraceReader(Protocol):
    def timeline(self, uuid: str) -> list[dict[str, object]]:
        """Every attempt recorded for one upload, oldest first (deduplicated)."""
        ...

    def query(self, sql: str) -> tuple[list[str], list[Row]]:
        """Run one read-only statement; column names and rows."""
        ...

    def close(self) -> None: ...


def open_reader(settings: Settings) -> TraceReader:
    raise TraceStoreError("trace reader not implemented yet")
