"""The read side of the trace store: what the CLI and the status page use.

``open_reader(settings)`` returns a ``TraceReader``. For a ClickHouse server it queries
the server. For chDB it decides on every call, since a sink may start or stop while a
long-lived reader (the status page) runs: if a sink holds the store it asks the sink's
query endpoint (with the token from the lock file); if nobody does it takes the store's
lock for the one query (see ``store.py``). Either way the statement runs under
ClickHouse's readonly=1 (``readonly.py``); ``check_read_only`` only words the error early.
"""

from __future__ import annotations

import time
import uuid as uuid_mod
from typing import Protocol

from streams.settings import ClickHouseSettings, Settings

from . import pack
from .backends import Rows
from .endpoint import remote_query
from .errors import QueryRejected, StoreBusy
from .store import Store, StoreLock, check_read_only, lock_path, open_store, read_owner

Row = tuple[object, ...]


class TraceReader(Protocol):
    def timeline(self, uuid: str) -> list[dict[str, object]]:
        """Every attempt recorded for one upload, oldest first (deduplicated)."""
        ...

    def query(self, sql: str, params: dict[str, object] | None = None) -> tuple[list[str], list[Row]]:
        """Run one read-only statement; column names and rows (JSON-typed values)."""
        ...

    def close(self) -> None: ...


def _timeline(reader: TraceReader, uuid: str) -> list[dict[str, object]]:
    try:
        canonical = str(uuid_mod.UUID(uuid))
    except ValueError:
        raise QueryRejected(f"not a UUID: {uuid!r}") from None
    columns, rows = reader.query(pack.load()["timeline"].sql, {"uuid": canonical})
    return [dict(zip(columns, r, strict=True)) for r in rows]


class ServerReader:
    def __init__(self, settings: ClickHouseSettings) -> None:
        self._store = open_store(settings)

    def timeline(self, uuid: str) -> list[dict[str, object]]:
        return _timeline(self, uuid)

    def query(self, sql: str, params: dict[str, object] | None = None) -> tuple[list[str], Rows]:
        return self._store.read(check_read_only(sql), params)

    def close(self) -> None:
        self._store.close()


class ChdbReader:
    """Through the sink when it runs, else the store itself for one query at a time."""

    def __init__(self, settings: ClickHouseSettings) -> None:
        self.settings = settings
        self._lock_file = lock_path(settings.path)

    def timeline(self, uuid: str) -> list[dict[str, object]]:
        return _timeline(self, uuid)

    def query(self, sql: str, params: dict[str, object] | None = None) -> tuple[list[str], Rows]:
        stmt = check_read_only(sql)
        deadline = time.monotonic() + self.settings.lock_timeout_s
        while True:
            owner = read_owner(self._lock_file)
            url = owner.get("url") if owner else None
            token = owner.get("token") if owner else None
            if isinstance(url, str):
                try:
                    return remote_query(url, stmt, params, token=token if isinstance(token, str) else None)
                except ConnectionError:
                    pass  # the sink just stopped: its lock is gone or going; look again
            lock = StoreLock(self.settings.path)
            if lock.try_acquire():
                try:
                    return self._direct(stmt, params)
                finally:
                    lock.release()
            if time.monotonic() >= deadline:
                raise StoreBusy(
                    f"trace store {self.settings.path} stayed locked for "
                    f"{self.settings.lock_timeout_s:g} s and nobody answered queries"
                )
            time.sleep(0.05)

    def _direct(self, stmt: str, params: dict[str, object] | None) -> tuple[list[str], Rows]:
        store = open_store(self.settings)
        try:
            # A store the sink has never opened is created here, empty: a reader sees no
            # rows rather than an error about missing tables.
            return store.read(stmt, params)
        finally:
            store.close()

    def close(self) -> None:
        pass


def open_reader(settings: Settings) -> TraceReader:
    ch = settings.clickhouse
    return ChdbReader(ch) if ch.backend == "chdb" else ServerReader(ch)


__all__ = ["ChdbReader", "ServerReader", "Store", "TraceReader", "open_reader"]
