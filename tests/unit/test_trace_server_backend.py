"""The clickhouse-connect backend sends the statements chDB runs, from the same DDL files."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from streams.settings import ClickHouseSettings
from streams.traces import TraceEvent
from tracestore import codec, schema
from tracestore.backends import INSERT_SETTINGS, ChdbBackend, ServerBackend
from tracestore.errors import QueryFailed
from tracestore.sink import Batch, TraceSink
from tracestore.store import Store


def _compact(columns: list[str], rows: list[list[object]]) -> bytes:
    return json.dumps({"meta": [{"name": c, "type": "String"} for c in columns], "data": rows}).encode()


class FakeClient:
    """Records what clickhouse-connect would send; answers like an empty server."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.queries: list[dict[str, Any]] = []
        self.inserts: list[dict[str, Any]] = []
        self.database: str | None = None

    def command(self, cmd: str, **kw: Any) -> int:
        self.commands.append(cmd)
        return 0

    def raw_query(
        self, query: str, parameters: Any = None, settings: Any = None, fmt: str | None = None
    ) -> bytes:
        self.queries.append({"query": query, "parameters": parameters, "settings": settings, "fmt": fmt})
        if "system.tables" in query:
            return _compact(["name", "engine_full"], [["traces", "... TTL x + toIntervalDay(90) ..."]])
        return _compact(["version", "name", "checksum"], [])

    def raw_insert(self, table: str, column_names: Any = None, insert_block: Any = None,
                   settings: Any = None, fmt: str | None = None) -> Any:
        self.inserts.append({"table": table, "columns": list(column_names), "body": insert_block,
                             "settings": settings, "fmt": fmt})
        return type("Summary", (), {"written_rows": insert_block.count(b"\n") + 1})()

    def close(self) -> None:
        pass


class RecordingChdb(ChdbBackend):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.executed: list[str] = []

    def execute(self, sql: str) -> None:
        self.executed.append(sql)
        super().execute(sql)


def test_server_backend_gets_the_statements_chdb_runs(tmp_path: Path) -> None:
    settings = ClickHouseSettings(backend="server", database="photos", ttl_days=30)  # type: ignore[call-arg]
    client = FakeClient()
    Store(ServerBackend(settings, client=client), settings)

    expected = [s for f in schema.files() for s in schema.statements(f, "photos", 30)]
    ddl = [c for c in client.commands if not c.startswith("INSERT INTO photos.schema_migrations")]
    # The fake server reports traces with a 90-day TTL: the setting says 30, so it is altered.
    assert ddl == [*expected, "ALTER TABLE photos.traces MODIFY TTL toDateTime(timestamp) + INTERVAL 30 DAY"]
    ledger = [c for c in client.commands if c.startswith("INSERT INTO photos.schema_migrations")]
    assert len(ledger) == len(schema.files()) - 1
    assert client.database == "photos"  # pack queries name tables unqualified
    assert all("TTL" not in s or "INTERVAL 30 DAY" in s for s in expected)

    chdb = RecordingChdb(tmp_path / "traces.chdb")
    try:
        Store(chdb, settings.model_copy(update={"backend": "chdb"}))
        assert [s for s in chdb.executed if not s.startswith(("INSERT INTO", "USE "))] == expected
    finally:
        chdb.close()


def test_server_backend_inserts_json_rows_and_queries_json_compact() -> None:
    settings = ClickHouseSettings(backend="server")  # type: ignore[call-arg]
    client = FakeClient()
    store = Store(ServerBackend(settings, client=client), settings)
    img = str(uuid.uuid4())
    values: list[bytes | None] = [
        TraceEvent(image_uuid=img, job="preview", trace_type="storage", method_tried="m",
                   success=True).model_dump_json().encode()
        for _ in range(3)
    ]
    res = TraceSink(store).write(Batch([*values, b"junk"], [0, 1, 2, 3]))
    assert res.written == 3 and [r for r, _ in res.rejected] == [3]
    (ins,) = client.inserts
    assert ins["table"] == "prophoto.traces" and ins["columns"] == list(codec.COLUMNS)
    assert ins["fmt"] == "JSONEachRow" and ins["settings"] == INSERT_SETTINGS
    assert ins["body"] == b"\n".join(v for v in values if v)

    store.query("SELECT * FROM traces FINAL WHERE image_uuid = {uuid:UUID}", {"uuid": img})
    last = client.queries[-1]
    assert last["fmt"] == "JSONCompact" and last["parameters"] == {"uuid": img}
    assert last["settings"] == {"output_format_json_quote_64bit_integers": 0}


def test_unreachable_server_is_a_clear_error() -> None:
    settings = ClickHouseSettings(backend="server", host="127.0.0.1", port=9)  # type: ignore[call-arg]
    with pytest.raises(QueryFailed, match=r"cannot reach ClickHouse at 127\.0\.0\.1:9"):
        ServerBackend(settings)
