"""Readers run under the engine's read-only rules, not under the guard's pattern.

The two attacks of the issue (a ``file()`` read and a second statement hidden behind
comments), through the sink's endpoint and through a reader that opens a free store, with
the friendly guard in place and with it switched off: the engine must refuse them either way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracestore.endpoint as endpoint_mod
import tracestore.reader as reader_mod
from streams.settings import ClickHouseSettings, Settings
from streams.traces import TraceEvent
from tracestore import pack
from tracestore.endpoint import QueryServer, new_token
from tracestore.errors import QueryFailed, QueryRejected, TraceStoreError
from tracestore.reader import TraceReader, open_reader
from tracestore.sink import Batch, TraceSink
from tracestore.store import Store, StoreLock, check_read_only, open_store

FILE_READ = "SELECT * FROM file('{path}','LineAsString')"
HIDDEN_DDL = "SELECT 1 /* ' */ ; CREATE TABLE zz (a Int32) ENGINE=Memory /* ' */"


@pytest.fixture
def ch(tmp_path: Path) -> ClickHouseSettings:
    return ClickHouseSettings(path=tmp_path / "traces.chdb", lock_timeout_s=0.5)  # type: ignore[call-arg]


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file no reader may see: its content is a fresh random word."""
    p = tmp_path / "secret.csv"
    p.write_text(f"secret_{uuid.uuid4().hex},n\nx,1\n", encoding="utf-8")
    return p


@pytest.fixture
def sink_store(ch: ClickHouseSettings) -> Iterator[Store]:
    """What ``traces sink`` does before it consumes: the lock, the store, the endpoint."""
    lock = StoreLock(ch.path)
    lock.acquire(1)
    store = open_store(ch)
    token = new_token()
    server = QueryServer(store, token).start()
    try:
        lock.publish(server.url, token)
        yield store
    finally:
        server.stop()
        store.close()
        lock.release()


@pytest.fixture(params=["endpoint", "direct"])
def reader(request: pytest.FixtureRequest, ch: ClickHouseSettings) -> Iterator[TraceReader]:
    """A reader through a running sink's endpoint, or one that opens the free store itself."""
    if request.param == "endpoint":
        request.getfixturevalue("sink_store")
    yield open_reader(Settings(clickhouse=ch))  # type: ignore[arg-type]


@pytest.fixture(params=["guard on", "guard off"])
def guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """With the guard off, only the engine stands between a reader and the host."""
    if request.param == "guard off":
        def no_guard(sql: str) -> str:
            return sql.strip()

        monkeypatch.setattr(endpoint_mod, "check_read_only", no_guard)
        monkeypatch.setattr(reader_mod, "check_read_only", no_guard)
    return str(request.param)


def tables(ch: ClickHouseSettings) -> set[str]:
    store = open_store(ch)
    try:
        _, rows = store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
        return {str(r[0]) for r in rows}
    finally:
        store.close()


def test_file_table_function_is_refused_by_the_engine(
    reader: TraceReader, guard: str, secret: Path
) -> None:
    with pytest.raises(TraceStoreError) as err:
        reader.query(FILE_READ.format(path=secret))
    assert secret.read_text().split(",")[0] not in str(err.value)
    # ClickHouse's own refusal (readonly=1), not a pattern of ours.
    assert "READONLY" in str(err.value) and "Code: 164" in str(err.value), str(err.value)


def test_statement_hidden_behind_comments_never_runs(
    reader: TraceReader, guard: str, ch: ClickHouseSettings, request: pytest.FixtureRequest
) -> None:
    with pytest.raises(TraceStoreError) as err:
        reader.query(HIDDEN_DDL)
    if guard == "guard on":
        assert isinstance(err.value, QueryRejected) and "one statement" in str(err.value)
    else:
        assert "Multi-statements are not allowed" in str(err.value) or "READONLY" in str(err.value)
    if "sink_store" in request.fixturenames:
        store: Store = request.getfixturevalue("sink_store")
        _, rows = store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
        names = {str(r[0]) for r in rows}
    else:
        names = tables(ch)
    assert "zz" not in names and "traces" in names


# chDB runs ClickHouse in its "local" mode, where readonly=1 leaves these open: the scalar
# file() skips its access check, INTO OUTFILE is written by the embedded client, DESCRIBE
# reads a table function's file to infer its columns, and EXPLAIN folds file() into a constant.
# (One test per reader, not one per statement: every chDB store opened and closed costs the
# process a dozen file descriptors that chDB never gives back.)
LOCAL_MODE_GAPS = [
    "SELECT file('{path}') AS f",
    "SELECT arrayMap(x -> file(x), ['{path}']) AS f",
    "EXPLAIN SELECT file('{path}')",
    "DESCRIBE TABLE file('{path}', 'CSVWithNames')",
    "SELECT 1 FORMAT TSV",
    "SELECT 42 INTO OUTFILE '{out}'",
]


def test_local_mode_gaps_are_closed(reader: TraceReader, secret: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    for sql in LOCAL_MODE_GAPS:
        stmt = sql.format(path=secret, out=out)
        try:
            cols, rows = reader.query(stmt)
        except TraceStoreError as exc:
            assert secret.read_text().split(",")[0] not in str(exc), stmt
        else:
            pytest.fail(f"{stmt} answered: {cols} {rows}")
    assert not out.exists(), "INTO OUTFILE wrote a file"


def _rows(image: str) -> list[bytes | None]:
    return [
        TraceEvent(image_uuid=image, job="preview", trace_type="preview_extraction", method_tried=m,
                   method_order=o, success=ok, failure_reason=None if ok else "no embedded preview",
                   duration_ms=d).model_dump_json().encode()
        for m, o, ok, d in [("embedded_preview", 1, False, 2.0), ("pillow_decode", 2, True, 80.0)]
    ]


OWN_READS = ["SHOW TABLES", "DESCRIBE TABLE traces", "EXISTS TABLE traces", "EXPLAIN SELECT 1",
             "WITH 2 AS x SELECT x", "SELECT 'a;b', '/* c */' -- note"]


def test_the_projects_own_reads_answer_as_in_the_writing_session(
    sink_store: Store, ch: ClickHouseSettings
) -> None:
    """Every query of the SQL pack, the timeline with its parameter and a few others, through
    the sink's endpoint, give what the writing session gives."""
    img = str(uuid.uuid4())
    assert TraceSink(sink_store).write(Batch(_rows(img), [0, 1])).written == 2
    reader = open_reader(Settings(clickhouse=ch))  # type: ignore[arg-type]
    assert [(r["method_tried"], r["success"]) for r in reader.timeline(img)] == [
        ("embedded_preview", False), ("pillow_decode", True)]
    for q in pack.load().values():
        params: dict[str, object] | None = {"uuid": img} if q.params else None
        assert reader.query(q.sql, params) == sink_store.query(q.sql, params), q.name
    for ok in OWN_READS:
        assert reader.query(ok)[1], ok
        assert reader.query(ok) == sink_store.query(ok), ok


def test_a_reader_of_a_free_store_reads_it(ch: ClickHouseSettings) -> None:
    # The direct reader opens the store per query (each open costs chDB file descriptors),
    # so a few reads here; the statements themselves are those of the test above.
    img = str(uuid.uuid4())
    store = open_store(ch)
    try:
        assert TraceSink(store).write(Batch(_rows(img), [0, 1])).written == 2
        expected = store.query(pack.load()["success_rate"].sql)
    finally:
        store.close()
    reader = open_reader(Settings(clickhouse=ch))  # type: ignore[arg-type]
    assert len(reader.timeline(img)) == 2
    assert reader.query(pack.load()["success_rate"].sql) == expected
    assert reader.query("SHOW TABLES")[1]


def test_the_writer_keeps_writing_after_reads(sink_store: Store, ch: ClickHouseSettings) -> None:
    reader = open_reader(Settings(clickhouse=ch))  # type: ignore[arg-type]
    with pytest.raises(QueryFailed):
        reader.query(FILE_READ.format(path="/etc/hostname"))
    img = str(uuid.uuid4())
    assert TraceSink(sink_store).write(Batch(_rows(img), [0, 1])).written == 2
    assert len(reader.timeline(img)) == 2


# -- the friendly guard knows comments; security never depends on it ---------------------------
@pytest.mark.parametrize("sql", [
    HIDDEN_DDL,
    "SELECT 1 -- ;\n; DROP TABLE traces",
    "SELECT '--' ; DROP TABLE traces",
    "SELECT 1 # c\n; DROP TABLE traces",
    'SELECT "a;" ; DROP TABLE traces',
    "/* SELECT */ DROP TABLE traces",
    "-- SELECT\nDROP TABLE traces",
    "SELECT 1 /* unterminated ; DROP",
])
def test_guard_sees_through_comments(sql: str) -> None:
    with pytest.raises(QueryRejected):
        check_read_only(sql)


@pytest.mark.parametrize("sql", [
    "SELECT 1 /* ; */", "SELECT ';' -- ;", "SELECT `a;b` FROM (SELECT 1 AS `a;b`);",
    "/* x */ -- y\nSELECT 'it''s; fine'", "SELECT 'a\\';b'",
])
def test_guard_accepts_one_statement_with_comments(sql: str) -> None:
    assert check_read_only(sql)


# -- the server backend: the server enforces readonly=1, sent with every reader's query ---------
def test_server_reads_carry_readonly_and_the_same_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_trace_server_backend import FakeClient
    from tracestore.backends import ServerBackend

    settings = ClickHouseSettings(backend="server")  # type: ignore[call-arg]
    client = FakeClient()
    monkeypatch.setattr(reader_mod, "open_store",
                        lambda ch: Store(ServerBackend(ch, client=client), ch))
    reader = open_reader(Settings(clickhouse=settings))  # type: ignore[arg-type]
    schema_queries = len(client.queries)
    img = str(uuid.uuid4())
    reader.timeline(img)
    reader.query(FILE_READ.format(path="/etc/hostname"))  # the fake answers; a server would refuse
    reads = client.queries[schema_queries:]
    sent = [pack.load()["timeline"].sql, FILE_READ.format(path="/etc/hostname")]
    assert [q["query"] for q in reads] == [check_read_only(s) for s in sent]  # as given, not rewritten
    assert reads[0]["parameters"] == {"uuid": img}
    for q in reads:
        assert q["settings"]["readonly"] == 1, q
        assert q["settings"]["output_format_json_quote_64bit_integers"] == 0
    # The schema's own statements and reads keep the writing session's settings.
    assert all("readonly" not in (q["settings"] or {}) for q in client.queries[:schema_queries])


# -- the endpoint's token ------------------------------------------------------------------------
def _post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{url}/query", json.dumps({"sql": "SELECT 1 AS one"}).encode(),
                                 {"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_endpoint_answers_only_with_the_token_from_the_lock_file(
    sink_store: Store, ch: ClickHouseSettings
) -> None:
    import os
    import stat

    from tracestore.endpoint import remote_query
    from tracestore.store import lock_path, read_owner

    owner = read_owner(lock_path(ch.path))
    assert owner is not None
    url, token = str(owner["url"]), str(owner["token"])
    assert len(token) >= 40
    assert stat.S_IMODE(os.stat(lock_path(ch.path)).st_mode) == 0o600  # only the store's user reads it
    status, doc = _post(url, {})
    assert status == 401 and "token" in str(doc["error"])
    wrong = token[:-1] + ("x" if token[-1] != "x" else "y")
    assert _post(url, {"Authorization": f"Bearer {wrong}"})[0] == 403
    assert _post(url, {"Authorization": token})[0] == 401  # not a Bearer header
    assert _post(url, {"Authorization": f"Bearer {token}"}) == (200, {"columns": ["one"], "rows": [[1]]})
    with pytest.raises(QueryFailed, match="token"):
        remote_query(url, "SELECT 1", token=None)
    assert remote_query(url, "SELECT 1 AS one", token=token) == (["one"], [(1,)])
    # Each sink start makes a new one: a token seen once is worth nothing after a restart.
    assert new_token() != token


def test_a_lock_file_others_can_read_is_made_private(ch: ClickHouseSettings) -> None:
    import os
    import stat

    from tracestore.store import lock_path

    path = lock_path(ch.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    path.chmod(0o644)  # as an older sink left it
    lock = StoreLock(ch.path)
    lock.acquire(1)
    try:
        lock.publish("http://127.0.0.1:1", "t0ken")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        lock.release()
