"""Who may open the chDB store, and the store itself (backend + schema + one lock per call).

chDB opens a data directory from one process at a time (a second one gets an opaque
``Cannot lock file .../status``). We make that rule explicit with an exclusive ``flock`` on
``<path>.lock``, which the kernel drops when its holder dies, so a crashed sink never
leaves the store locked:

* the sink (``prophoto-ingest traces sink``) holds the lock for its whole life and writes
  its query endpoint's URL and secret token into the lock file (mode 0600: only the store's
  own user can read it, and only it may ask the endpoint);
* a reader that finds the lock held reads that URL and token and asks the sink;
* a reader that finds the lock free takes it for one query, opens the store, closes it.

A ClickHouse server needs none of this: every process talks to the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from streams.settings import ClickHouseSettings

from . import schema
from .backends import Backend, ChdbBackend, Rows, ServerBackend
from .errors import StoreBusy, TraceStoreError
from .readonly import check_read_only

TABLE = "traces"


def lock_path(store: Path) -> Path:
    return store.with_name(store.name + ".lock")


class StoreLock:
    def __init__(self, store: Path) -> None:
        self.path = lock_path(store)
        self._f: IO[str] | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        f = os.fdopen(fd, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        self._f = f
        self.publish(None)
        return True

    def acquire(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                owner = read_owner(self.path)
                who = f" (pid {owner.get('pid')})" if owner else ""
                raise StoreBusy(
                    f"the trace store {self.path.with_suffix('')} is in use by another process{who} "
                    f"after waiting {timeout_s:g} s; one sink per store"
                )
            time.sleep(0.05)

    def publish(self, url: str | None, token: str | None = None) -> None:
        """Record who holds the lock and, for a sink, where it answers queries and its token."""
        assert self._f is not None
        fd = self._f.fileno()
        if token is not None:
            # A lock file made before tokens existed may be 0644; one not ours cannot be
            # changed, and is refused just below unless it is private already.
            with contextlib.suppress(PermissionError):
                os.fchmod(fd, 0o600)
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                raise TraceStoreError(
                    f"{self.path} is readable by other users and cannot be made private; "
                    "remove it (no sink is running) and start again"
                )
        self._f.seek(0)
        self._f.truncate()
        self._f.write(json.dumps({"pid": os.getpid(), "url": url, "token": token}))
        self._f.flush()

    def release(self) -> None:
        if self._f is not None:
            self._f.seek(0)
            self._f.truncate()
            fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
            self._f.close()
            self._f = None

    @property
    def held(self) -> bool:
        return self._f is not None


def read_owner(path: Path) -> dict[str, object] | None:
    """The lock file's content if it names a holder (may be mid-write: then None)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Store:
    """An open, up-to-date store; calls are serialized (chDB sessions are not thread-safe)."""

    def __init__(self, backend: Backend, settings: ClickHouseSettings) -> None:
        self.backend = backend
        self.database = settings.database
        self.table = f"{settings.database}.{TABLE}"
        self._lock = threading.Lock()
        with self._lock:
            self.applied = schema.apply(backend, settings.database, settings.ttl_days)
            backend.use(settings.database)

    def insert_json(self, columns: Sequence[str], body: bytes) -> int:
        with self._lock:
            return self.backend.insert_json(self.table, columns, body)

    def query(self, sql: str, params: dict[str, object] | None = None) -> tuple[list[str], Rows]:
        """Our own statements, in the writing session."""
        with self._lock:
            return self.backend.query(sql, params)

    def read(self, sql: str, params: dict[str, object] | None = None) -> tuple[list[str], Rows]:
        """A reader's statement, under ClickHouse's readonly=1 (``Backend.read``)."""
        with self._lock:
            return self.backend.read(sql, params)

    def close(self) -> None:
        with self._lock:
            self.backend.close()


def open_store(settings: ClickHouseSettings) -> Store:
    """Open the configured backend and apply the schema (caller holds the lock for chDB)."""
    backend: Backend = (
        ChdbBackend(settings.path) if settings.backend == "chdb" else ServerBackend(settings)
    )
    try:
        return Store(backend, settings)
    except BaseException:
        backend.close()
        raise


__all__ = ["Store", "StoreLock", "check_read_only", "lock_path", "open_store", "read_owner"]
