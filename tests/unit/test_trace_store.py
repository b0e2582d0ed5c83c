"""The trace store on chDB: schema as code, the batching sink, dedup, the lock, readers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.settings import ClickHouseSettings, Settings
from streams.traces import TraceEvent
from tracestore import schema
from tracestore.endpoint import QueryServer, new_token, remote_query
from tracestore.errors import QueryFailed, QueryRejected, SchemaError, StoreBusy
from tracestore.reader import ChdbReader, open_reader
from tracestore.sink import Batch, TraceSink
from tracestore.store import Store, StoreLock, check_read_only, lock_path, open_store


@pytest.fixture
def ch(tmp_path: Path) -> ClickHouseSettings:
    return ClickHouseSettings(path=tmp_path / "traces.chdb", lock_timeout_s=0.5)  # type: ignore[call-arg]


@pytest.fixture
def store(ch: ClickHouseSettings) -> Iterator[Store]:
    s = open_store(ch)
    yield s
    s.close()


def tr(image: str, trace_type: str, method: str, order: int, ok: bool, **over: Any) -> bytes:
    fields: dict[str, Any] = dict(
        image_uuid=image, job="preview", trace_type=trace_type, method_tried=method,
        method_order=order, success=ok, failure_reason=None if ok else f"{method} failed",
        duration_ms=10.0, worker_id="w:1", source_topic="ingest-preview",
    )
    fields.update(over)
    return TraceEvent(**fields).model_dump_json().encode()


def count(store: Store, sql: str = "SELECT count() FROM traces FINAL") -> int:
    _, rows = store.query(sql)
    return int(str(rows[0][0]))


# -- schema -------------------------------------------------------------------------------
def test_schema_files_are_versioned_and_split() -> None:
    files = schema.files()
    assert [f.version for f in files] == sorted(f.version for f in files) and files[0].version == 0
    stmts = schema.statements(files[1], "db1", 7)
    assert len(stmts) == 1 and stmts[0].startswith("CREATE TABLE IF NOT EXISTS db1.traces")
    assert "INTERVAL 7 DAY" in stmts[0] and "{" not in stmts[0]
    assert all(";" not in s for f in files for s in schema.statements(f, "db", 1))
    with pytest.raises(SchemaError):
        schema.render("x", "bad-name; DROP", 1)
    with pytest.raises(SchemaError):
        schema.split("CREATE TABLE x (a Int8)")


def test_schema_applied_once_and_idempotently(ch: ClickHouseSettings, store: Store) -> None:
    versions = [f.version for f in schema.files()[1:]]
    assert store.applied == versions
    assert schema.apply(store.backend, ch.database, ch.ttl_days) == []
    _, rows = store.query("SELECT version, checksum FROM schema_migrations FINAL ORDER BY version")
    assert [r[0] for r in rows] == versions
    _, rows = store.query("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
    names = {r[0] for r in rows}
    assert {"traces", "traces_per_minute", "traces_per_minute_mv", "schema_migrations"} <= names


def test_changed_applied_file_is_refused(ch: ClickHouseSettings, store: Store) -> None:
    store.backend.execute(
        f"INSERT INTO {ch.database}.schema_migrations (version, name, checksum) VALUES (1, 'traces', 'x')"
    )
    with pytest.raises(SchemaError, match="changed after it was applied"):
        schema.apply(store.backend, ch.database, ch.ttl_days)


def test_ttl_follows_the_setting(ch: ClickHouseSettings) -> None:
    def ttl_of(s: Store) -> str:
        _, rows = s.query("SELECT engine_full FROM system.tables WHERE name = 'traces' "
                          "AND database = currentDatabase()")
        return str(rows[0][0])

    s = open_store(ch)
    try:
        assert "toIntervalDay(90)" in ttl_of(s)
        assert schema.sync_ttl(s.backend, ch.database, 90) == []
    finally:
        s.close()
    s = open_store(ch.model_copy(update={"ttl_days": 14}))
    try:
        assert "toIntervalDay(14)" in ttl_of(s)
        assert "PARTITION BY toDate(timestamp)" in ttl_of(s)
    finally:
        s.close()


# -- sink -----------------------------------------------------------------------------------
def test_sink_writes_good_records_and_returns_bad_ones(store: Store) -> None:
    sink = TraceSink(store)
    img = str(uuid.uuid4())
    good = [tr(img, "preview_extraction", "embedded_preview", 1, True) for _ in range(3)]
    sink.add(good[0], "r0")
    sink.add(b"{not json", "r1")
    sink.add(good[1], "r2")
    sink.add(json.dumps({"trace_id": str(uuid.uuid4())}).encode(), "r3")
    sink.add(good[2], "r4")
    res = sink.flush()
    assert res.written == 3
    assert [ref for ref, _ in res.rejected] == ["r1", "r3"]
    assert "undecodable" in res.rejected[0][1] and "missing required field" in res.rejected[1][1]
    assert len(sink) == 0 and sink.flush().written == 0
    assert count(store) == 3


def test_redelivered_batch_does_not_double_count(store: Store) -> None:
    sink = TraceSink(store)
    imgs = [str(uuid.uuid4()) for _ in range(10)]
    values: list[bytes | None] = [tr(i, "preview_extraction", "pillow_decode", 2, True) for i in imgs]
    batch = Batch(values, list(range(10)))
    assert sink.write(batch).written == 10
    assert sink.write(batch).written == 10  # the same records again, as after a crash
    assert sink.write(Batch(values[:4], list(range(4)))).written == 4
    assert count(store) == 10
    assert count(store, "SELECT uniqMerge(attempts) FROM traces_per_minute") == 10
    assert count(store, "SELECT uniqMerge(images) FROM traces_per_minute") == 10
    from tracestore import pack

    _, rows = store.query(pack.load()["success_rate"].sql)
    assert rows == [("preview_extraction", "pillow_decode", 10, 10, 1)]


def test_record_clickhouse_refuses_is_found_and_rejected(store: Store) -> None:
    sink = TraceSink(store)
    img = str(uuid.uuid4())
    doc = json.loads(tr(img, "storage", "local_move", 1, True))
    doc["image_uuid"] = "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"  # the right shape, not a UUID
    values: list[bytes | None] = [tr(img, "storage", "local_move", 1, True) for _ in range(6)]
    values.insert(4, json.dumps(doc).encode())
    res = sink.write(Batch(values, list(range(7))))
    assert res.written == 6
    assert [r for r, _ in res.rejected] == [4] and "refused by ClickHouse" in res.rejected[0][1]
    assert count(store) == 6


class _DownStore:
    def __init__(self) -> None:
        self.calls = 0

    def insert_json(self, columns: object, body: bytes) -> int:
        self.calls += 1
        if self.calls == 1:
            raise QueryFailed("Code: 241. DB::Exception: Memory limit exceeded. (MEMORY_LIMIT_EXCEEDED)")
        return body.count(b"\n") + 1


def test_store_failure_raises_and_the_batch_can_be_written_again() -> None:
    down = _DownStore()
    sink = TraceSink(down)  # type: ignore[arg-type]
    batch = Batch([tr(str(uuid.uuid4()), "storage", "m", 1, True) for _ in range(3)], [0, 1, 2])
    with pytest.raises(QueryFailed, match="Memory limit"):
        sink.write(batch)  # not dead-lettered: the store is unwell, not the records
    assert down.calls == 1
    assert sink.write(batch).written == 3


# -- the SQL pack on known data -----------------------------------------------------------
def test_pack_queries_answer_on_known_data(store: Store) -> None:
    from tracestore import pack

    t0 = datetime.now(UTC).replace(microsecond=0)
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    up = t0 - timedelta(seconds=2)
    rows = [
        tr(a, "preview_extraction", "embedded_preview", 1, True, duration_ms=5, uploaded_at=up, timestamp=t0),
        tr(a, "thumbnail_generation", "from_embedded_preview", 1, True, duration_ms=2, timestamp=t0),
        tr(b, "preview_extraction", "embedded_preview", 1, False, duration_ms=3, uploaded_at=up,
           timestamp=t0, failure_reason="no embedded preview"),
        tr(b, "preview_extraction", "pillow_decode", 2, True, duration_ms=400, uploaded_at=up,
           timestamp=t0 + timedelta(seconds=2)),
        tr(b, "thumbnail_generation", "from_preview", 1, True, duration_ms=20,
           timestamp=t0 + timedelta(seconds=3)),
        tr(c, "preview_extraction", "file_check", 0, False, duration_ms=1, timestamp=t0,
           failure_reason="truncated file"),
        tr(c, "dead_letter", "CorruptImage", 1, False, duration_ms=1, timestamp=t0,
           failure_reason="truncated file"),
    ]
    assert TraceSink(store).write(Batch(list(rows), list(range(len(rows))))).written == len(rows)
    queries = pack.load()
    assert {"timeline", "duration_percentiles", "success_rate", "fallback_rate", "top_failures",
            "throughput_per_minute", "slowest_uploads", "upload_to_preview_latency"} <= set(queries)

    def q(name: str) -> list[dict[str, object]]:
        cols, rs = store.query(queries[name].sql, {"uuid": b} if name == "timeline" else None)
        return [dict(zip(cols, r, strict=True)) for r in rs]

    tl = q("timeline")
    assert [(r["method_tried"], r["method_order"], r["success"]) for r in tl] == [
        ("embedded_preview", 1, False), ("pillow_decode", 2, True), ("from_preview", 1, True)]
    rate = {r["method_tried"]: r["success_rate"] for r in q("success_rate")}
    assert rate["embedded_preview"] == 0.5 and rate["pillow_decode"] == 1 and rate["file_check"] == 0
    fb = {r["trace_type"]: r for r in q("fallback_rate")}
    assert fb["preview_extraction"]["produced"] == 2 and fb["preview_extraction"]["fallback_rate"] == 0.5
    pct = {(r["trace_type"], r["method_tried"]): r for r in q("duration_percentiles")}
    assert pct[("preview_extraction", "pillow_decode")]["p50_ms"] == 400
    assert ("dead_letter", "CorruptImage") not in pct
    top = q("top_failures")
    assert {r["reason"] for r in top} == {"no embedded preview", "truncated file"}
    assert sum(int(str(r["attempt_count"])) for r in q("throughput_per_minute")) == len(rows)
    slow = q("slowest_uploads")
    assert slow[0]["image_uuid"] == b and slow[0]["attempts"] == 3 and slow[0]["failed_attempts"] == 1
    lat = q("upload_to_preview_latency")[0]
    assert lat["images"] == 2 and lat["max_s"] == 4 and lat["p50_s"] in (2, 4)
    dl = q("dead_letters")
    assert [(r["image_uuid"], r["error_class"]) for r in dl] == [(c, "CorruptImage")]


# -- read-only guard, lock, readers ---------------------------------------------------------
@pytest.mark.parametrize("sql", [
    "SELECT 1", "  select 1;", "WITH x AS (SELECT 1) SELECT * FROM x", "-- why\nSELECT 1",
    "/* c */ SHOW TABLES", "DESCRIBE traces", "EXPLAIN SELECT 1", "SELECT 'a;b'",
])
def test_read_only_guard_accepts(sql: str) -> None:
    assert check_read_only(sql)


@pytest.mark.parametrize("sql", [
    "", ";", "INSERT INTO traces VALUES (1)", "DROP TABLE traces", "SELECT 1; DROP TABLE traces",
    "ALTER TABLE traces DELETE WHERE 1", "OPTIMIZE TABLE traces FINAL", "SET readonly=0",
])
def test_read_only_guard_rejects(sql: str) -> None:
    with pytest.raises(QueryRejected):
        check_read_only(sql)


def test_one_holder_per_store(ch: ClickHouseSettings) -> None:
    a, b = StoreLock(ch.path), StoreLock(ch.path)
    a.acquire(1)
    try:
        assert not b.try_acquire()
        with pytest.raises(StoreBusy, match=r"in use by another process \(pid \d+\)"):
            b.acquire(0.2)
    finally:
        a.release()
    assert b.try_acquire()
    b.release()


def test_reader_opens_a_free_store_for_one_query(ch: ClickHouseSettings) -> None:
    reader = open_reader(Settings(clickhouse=ch))  # type: ignore[arg-type]
    assert isinstance(reader, ChdbReader)
    assert reader.timeline(str(uuid.uuid4())) == []  # a store nobody opened yet reads as empty
    assert reader.query("SELECT count() FROM traces FINAL") == (["count()"], [(0,)])
    lock = StoreLock(ch.path)
    assert lock.try_acquire(), "the reader kept the store's lock"
    lock.release()
    with pytest.raises(QueryRejected):
        reader.query("INSERT INTO traces (job) VALUES ('x')")
    with pytest.raises(QueryRejected):
        reader.timeline("not-a-uuid")


def test_reader_asks_the_sink_that_holds_the_store(ch: ClickHouseSettings) -> None:
    lock = StoreLock(ch.path)
    lock.acquire(1)
    store = open_store(ch)
    token = new_token()
    server = QueryServer(store, token).start()
    try:
        lock.publish(server.url, token)
        img = str(uuid.uuid4())
        TraceSink(store).write(Batch([tr(img, "storage", "local_move", 1, True)], [0]))
        reader = open_reader(Settings(clickhouse=ch))  # type: ignore[arg-type]
        # The lock is held, so only the endpoint can answer (a direct open would be StoreBusy).
        rows = reader.timeline(img)
        assert [(r["trace_type"], r["success"]) for r in rows] == [("storage", True)]
        with pytest.raises(QueryRejected):
            reader.query("DROP TABLE traces")
        with pytest.raises(QueryFailed, match="only one SELECT"):  # the endpoint guards itself too
            remote_query(server.url, "DROP TABLE traces", token=token)
        with pytest.raises(QueryFailed, match=r"UNKNOWN_IDENTIFIER|Unknown expression"):
            remote_query(server.url, "SELECT nonsense FROM traces", token=token)
        assert count(store) == 1
    finally:
        server.stop()
        store.close()
        lock.release()


def test_reader_survives_a_stale_endpoint(ch: ClickHouseSettings) -> None:
    # A sink killed with SIGKILL leaves its URL behind, but not its lock.
    lock_path(ch.path).write_text(json.dumps({"pid": 1, "url": "http://127.0.0.1:9"}))
    reader = open_reader(Settings(clickhouse=ch))  # type: ignore[arg-type]
    assert reader.query("SELECT 1 AS one") == (["one"], [(1,)])


def test_reader_gives_up_on_a_silent_holder(ch: ClickHouseSettings) -> None:
    lock = StoreLock(ch.path)
    lock.acquire(1)
    try:
        with pytest.raises(StoreBusy, match="stayed locked"):
            open_reader(Settings(clickhouse=ch)).query("SELECT 1")  # type: ignore[arg-type]
    finally:
        lock.release()
