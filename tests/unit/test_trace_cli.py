"""``prophoto-ingest traces``: timeline, sql and report against a chDB store, no broker."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from streams.cli import main
from streams.cli.traces import render
from streams.settings import Settings
from streams.traces import TraceEvent
from tests.conftest import ROOT, settings_env
from tracestore import pack
from tracestore.sink import Batch, TraceSink
from tracestore.store import open_store


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(clickhouse={"path": tmp_path / "traces.chdb", "lock_timeout_s": 1})  # type: ignore[arg-type]


def run(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, ["traces", *args], env=settings_env(settings))


def seed(settings: Settings) -> str:
    img = str(uuid.uuid4())
    rows: list[bytes | None] = [
        TraceEvent(image_uuid=img, job="preview", trace_type="preview_extraction", method_tried=m,
                   method_order=o, success=ok, failure_reason=None if ok else "no embedded preview",
                   duration_ms=d).model_dump_json().encode()
        for m, o, ok, d in [("embedded_preview", 1, False, 2.0), ("pillow_decode", 2, True, 80.0)]
    ]
    store = open_store(settings.clickhouse)
    try:
        assert TraceSink(store).write(Batch(rows, [0, 1])).written == 2
    finally:
        store.close()
    return img


def test_uuid_shows_that_uploads_timeline(settings: Settings) -> None:
    img = seed(settings)
    res = run(settings, img)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    header = ["timestamp", "job", "attempt", "trace_type", "method_order", "method_tried"]
    assert lines[0].split()[:6] == header
    assert "embedded_preview" in lines[2] and "no embedded preview" in lines[2] and " no " in lines[2]
    assert "pillow_decode" in lines[3] and " yes " in lines[3]
    assert lines[-1] == "(2 rows)"
    res = run(settings, "timeline", img, "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(res.output)))
    assert [(r["method_tried"], r["method_order"], r["success"]) for r in parsed] == [
        ("embedded_preview", "1", "false"), ("pillow_decode", "2", "true")]


def test_unknown_uuid_exits_1(settings: Settings) -> None:
    res = run(settings, str(uuid.uuid4()))
    assert res.exit_code == 1 and "no traces for" in res.output


def test_sql_formats_file_and_params(settings: Settings) -> None:
    img = seed(settings)
    res = run(settings, "sql", "SELECT method_tried, success FROM traces FINAL ORDER BY method_order",
              "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == [{"method_tried": "embedded_preview", "success": False},
                                      {"method_tried": "pillow_decode", "success": True}]
    res = run(settings, "sql", "--file", str(ROOT / "tracestore/sql/timeline.sql"), "--param", f"uuid={img}",
              "--format", "csv")
    assert res.exit_code == 0, res.output
    assert len(list(csv.DictReader(io.StringIO(res.output)))) == 2


def test_sql_refuses_writes_and_bad_usage(settings: Settings) -> None:
    res = run(settings, "sql", "DROP TABLE traces")
    assert res.exit_code == 1 and "only one SELECT" in res.output
    res = run(settings, "sql", "SELECT nonsense FROM traces")
    assert res.exit_code == 1 and "nonsense" in res.output
    assert run(settings, "sql").exit_code == 2
    assert run(settings, "sql", "SELECT 1", "--param", "novalue").exit_code == 2


def test_report_runs_every_headline_query(settings: Settings) -> None:
    seed(settings)
    res = run(settings, "report", "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert set(doc) == {q.name for q in pack.headline()} and len(doc) >= 7
    assert doc["success_rate"][0]["attempts"] == 1
    assert doc["fallback_rate"] == [{"trace_type": "preview_extraction", "produced": 1, "by_fallback": 1,
                                     "fallback_rate": 1, "fallback_attempts": 1}]
    res = run(settings, "report")
    assert res.exit_code == 0 and "== success_rate" in res.output


def test_every_pack_file_documents_what_it_answers() -> None:
    queries = pack.load()
    files = sorted(p.stem for p in (ROOT / "tracestore/sql").glob("*.sql"))
    assert sorted(queries) == files
    for q in queries.values():
        assert len(q.answers) > 30 and q.answers.endswith((".", ")")), q.name
    assert queries["timeline"].params == ("uuid",) and not queries["timeline"].headline


def test_render_table_clips_wide_cells() -> None:
    out = render(["a", "b"], [("x" * 100, None), (True, [1, 2])], "table")
    lines = out.splitlines()
    assert len(lines[2]) <= 60 + 2 + 1 and lines[2].rstrip().endswith("…  -")
    assert "yes" in lines[3] and "[1, 2]" in lines[3] and lines[-1] == "(2 rows)"
