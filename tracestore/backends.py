"""The two places trace rows can live, behind one small interface.

``ChdbBackend``: chDB, ClickHouse in this process, file-backed under the data directory
(the embedded default and the test backend). chDB serves one data directory per process
and refuses a second process on the same one, so who may open it is decided by
``store.StoreLock``, not here.

``ServerBackend``: a ClickHouse server through clickhouse-connect (HTTP).

Both take the same statements (``schema.py``), the same JSONEachRow insert body, and give
query results the same way: JSONCompact, so a reader sees identical values whichever
backend answered (UUIDs and times as strings, 64-bit integers as numbers).

``query`` is for our own statements (schema, tests); ``read`` is for a reader's, and runs
them under ClickHouse's ``readonly=1`` (``readonly.py`` says what that covers).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from streams.settings import ClickHouseSettings

from .errors import QueryFailed, QueryRejected
from .readonly import CANONICAL_SQL, escape_param, local_mode_refusal

Rows = list[tuple[object, ...]]

# Applied to every insert: ISO times with offsets, and an unknown field is an error.
INSERT_SETTINGS: dict[str, Any] = {
    "date_time_input_format": "best_effort",
    "input_format_skip_unknown_fields": 0,
}
QUERY_SETTINGS: dict[str, Any] = {"output_format_json_quote_64bit_integers": 0}
# Readers' statements: refused by ClickHouse if they write, change a setting (readonly=1 also
# forbids lowering readonly itself) or use a table function that reaches files or the network.
READ_SETTINGS: dict[str, Any] = {**QUERY_SETTINGS, "readonly": 1}

# ClickHouse error codes that mean "this data does not fit the table", as opposed to
# "the store is unwell": the sink may dead-letter a record for the first, never the second.
DATA_ERROR_CODES = frozenset({6, 25, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 321, 376})
_CODE = re.compile(r"Code: (\d+)\.")


def error_code(exc: BaseException) -> int | None:
    m = _CODE.search(str(exc))
    return int(m.group(1)) if m else None


class Backend(Protocol):
    def execute(self, sql: str) -> None: ...

    def query(self, sql: str, params: dict[str, object] | None = None) -> tuple[list[str], Rows]: ...

    def read(self, sql: str, params: dict[str, object] | None = None) -> tuple[list[str], Rows]:
        """Run a reader's statement under ClickHouse's readonly=1."""
        ...

    def insert_json(self, table: str, columns: Sequence[str], body: bytes) -> int:
        """Insert a JSONEachRow body; returns rows written."""
        ...

    def use(self, database: str) -> None:
        """Make ``database`` the default for unqualified names in later queries."""
        ...

    def close(self) -> None: ...


def parse_json_compact(data: bytes) -> tuple[list[str], Rows]:
    if not data.strip():
        return [], []
    doc = json.loads(data)
    return [m["name"] for m in doc["meta"]], [tuple(r) for r in doc["data"]]


def _settings_sql(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in settings.items())


class ChdbBackend:
    def __init__(self, path: Path) -> None:
        from chdb import session as chs

        chs_any: Any = chs
        path.mkdir(parents=True, exist_ok=True)
        try:
            self._s: Any = chs_any.Session(str(path))
        except RuntimeError as exc:
            raise QueryFailed(f"cannot open chDB store {path}: {exc}") from None
        self.path = path
        self._database: str | None = None
        self._ro: Any = None
        for k, v in QUERY_SETTINGS.items():
            self._s.query(f"SET {k}={v}")

    def execute(self, sql: str) -> None:
        self._run(sql, "CSV", None)

    def query(self, sql: str, params: dict[str, object] | None = None) -> tuple[list[str], Rows]:
        res = self._run(sql, "JSONCompact", params)
        return parse_json_compact(res.bytes())

    def read(self, sql: str, params: dict[str, object] | None = None) -> tuple[list[str], Rows]:
        """A reader's statement, in a session of its own that is ``readonly=1`` for life.

        The statement that runs is the engine's own formatting of what it parsed (one
        statement, comments gone), after the checks chDB's local mode needs on top of
        readonly (``readonly.local_mode_refusal``).
        """
        ro = self._read_session()
        try:
            canonical = str(self._run(CANONICAL_SQL, "TSVRaw", {"q": escape_param(sql)}, ro).bytes()
                            .decode()).rstrip("\n")
        except QueryFailed as exc:
            raise QueryRejected(f"not one statement ClickHouse can parse: {exc}") from None
        why = local_mode_refusal(canonical, None)
        if why is None:
            ast = self._run(f"EXPLAIN AST {canonical}", "TSVRaw", params, ro).bytes().decode()
            why = local_mode_refusal(canonical, ast)
        if why is not None:
            raise QueryRejected(why)
        return parse_json_compact(self._run(canonical, "JSONCompact", params, ro).bytes())

    def _read_session(self) -> Any:
        # chDB keeps SET and USE per session; several sessions share one engine and one path.
        if self._ro is None:
            from chdb import session as chs

            chs_any: Any = chs
            ro = chs_any.Session(str(self.path))
            try:
                for k, v in QUERY_SETTINGS.items():
                    self._run(f"SET {k}={v}", "CSV", None, ro)
                if self._database is not None:
                    self._run(f"USE {self._database}", "CSV", None, ro)
                self._run("SET readonly=1", "CSV", None, ro)
            except BaseException:
                ro.close()
                raise
            self._ro = ro
        return self._ro

    def _run(self, sql: str, fmt: str, params: dict[str, object] | None, session: Any = None) -> Any:
        s = self._s if session is None else session
        try:
            return s.query(sql, fmt, params=params) if params else s.query(sql, fmt)
        except Exception as exc:  # noqa: BLE001 - chDB raises RuntimeError or ChdbError
            raise QueryFailed(str(exc).strip()) from None

    def insert_json(self, table: str, columns: Sequence[str], body: bytes) -> int:
        stmt = f"INSERT INTO {table} ({', '.join(columns)}) SETTINGS {_settings_sql(INSERT_SETTINGS)}"
        try:
            with self._s.send_insert(stmt, "JSONEachRow") as ins:
                ins.append(body)
                res = ins.finish()
        except Exception as exc:  # noqa: BLE001 - see _run
            raise QueryFailed(str(exc).strip()) from None
        return int(res.rows_written)

    def use(self, database: str) -> None:
        self.execute(f"USE {database}")
        self._database = database
        if self._ro is not None:
            self._run(f"USE {database}", "CSV", None, self._ro)

    def close(self) -> None:
        if self._ro is not None:
            self._ro.close()
            self._ro = None
        self._s.close()


class ServerBackend:
    """clickhouse-connect; ``client`` is injectable so tests can see what would be sent."""

    def __init__(self, settings: ClickHouseSettings, client: Any | None = None) -> None:
        if client is None:
            import clickhouse_connect

            try:
                client = clickhouse_connect.get_client(
                    host=settings.host, port=settings.port, username=settings.username,
                    password=settings.password.get_secret_value(), secure=settings.secure,
                )
            except Exception as exc:  # noqa: BLE001 - connection, auth and TLS errors alike
                raise QueryFailed(
                    f"cannot reach ClickHouse at {settings.host}:{settings.port}: {exc}"
                ) from None
        self._c = client

    def execute(self, sql: str) -> None:
        try:
            self._c.command(sql)
        except Exception as exc:  # noqa: BLE001 - clickhouse-connect's DatabaseError and transport errors
            raise QueryFailed(str(exc).strip()) from None

    def query(self, sql: str, params: dict[str, object] | None = None) -> tuple[list[str], Rows]:
        try:
            data = self._c.raw_query(sql, parameters=params, settings=QUERY_SETTINGS, fmt="JSONCompact")
        except Exception as exc:  # noqa: BLE001 - see execute
            raise QueryFailed(str(exc).strip()) from None
        return parse_json_compact(data)

    def read(self, sql: str, params: dict[str, object] | None = None) -> tuple[list[str], Rows]:
        """The same SQL, with readonly=1 sent along: the server enforces it per query."""
        try:
            data = self._c.raw_query(sql, parameters=params, settings=READ_SETTINGS, fmt="JSONCompact")
        except Exception as exc:  # noqa: BLE001 - see execute
            raise QueryFailed(str(exc).strip()) from None
        return parse_json_compact(data)

    def insert_json(self, table: str, columns: Sequence[str], body: bytes) -> int:
        try:
            summary = self._c.raw_insert(
                table, list(columns), insert_block=body, settings=INSERT_SETTINGS, fmt="JSONEachRow"
            )
        except Exception as exc:  # noqa: BLE001 - see execute
            raise QueryFailed(str(exc).strip()) from None
        written = getattr(summary, "written_rows", None)
        return int(written) if written is not None else body.count(b"\n") + 1

    def use(self, database: str) -> None:
        self._c.database = database

    def close(self) -> None:
        self._c.close()
