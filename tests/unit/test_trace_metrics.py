"""The charts' metrics: the metrics_* SQL on a real chDB store shaped per window, and the
API's bounded, cached runner when the store answers, hangs or is held by someone silent."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from status import trace_metrics as tm
from status import web
from status.service import StatusService
from streams.settings import ClickHouseSettings, Settings
from tests.unit.test_status_web import FakeProbe
from tests.unit.test_trace_store import tr
from tracestore.sink import Batch, TraceSink
from tracestore.store import StoreLock, open_store


def chart(doc: dict[str, Any], cid: str) -> dict[str, Any]:
    found = [c for c in doc["charts"] if c["id"] == cid]
    assert len(found) == 1, cid
    return found[0]


def series(doc: dict[str, Any], cid: str) -> dict[str, list[float | None]]:
    return {s["name"]: s["values"] for s in chart(doc, cid)["series"]}


def groups(doc: dict[str, Any], cid: str) -> dict[str, list[float | None]]:
    return {g["label"]: g["values"] for g in chart(doc, cid)["groups"]}


def at(doc: dict[str, Any], when: datetime) -> int:
    """The index of the bucket holding ``when``."""
    b = doc["bucket_s"]
    return int(doc["buckets"].index(int(when.timestamp()) // b * b))


@pytest.fixture
def ch(tmp_path: Path) -> ClickHouseSettings:
    return ClickHouseSettings(path=tmp_path / "traces.chdb", lock_timeout_s=0.5)  # type: ignore[call-arg]


def test_metrics_from_a_real_store_per_window(ch: ClickHouseSettings) -> None:
    now = datetime.now(UTC)
    recent, earlier, older, too_old = (now - timedelta(minutes=5), now - timedelta(minutes=20),
                                       now - timedelta(hours=3), now - timedelta(hours=30))
    a, b, c, d, e = (str(uuid.uuid4()) for _ in range(5))
    rows = [
        # a: no embedded preview, Pillow's fallback made it; 460 ms in all; uploaded 2 s before
        tr(a, "preview_extraction", "embedded_preview", 1, False, timestamp=recent),
        tr(a, "preview_extraction", "pillow_decode", 2, True, duration_ms=400, timestamp=recent,
           uploaded_at=recent - timedelta(seconds=2)),
        tr(a, "thumbnail_generation", "from_preview", 1, True, duration_ms=50, timestamp=recent),
        # b: the embedded preview, 30 ms; uploaded 4 s before
        tr(b, "preview_extraction", "embedded_preview", 1, True, duration_ms=30, timestamp=recent,
           uploaded_at=recent - timedelta(seconds=4)),
        # d: an ingest run that failed and will be retried
        tr(d, "metadata_extraction", "exiftool", 1, False, job="ingest", timestamp=earlier),
        tr(d, "retry", "ExiftoolTimeout", 1, False, job="ingest", duration_ms=900, timestamp=earlier),
        # c: a corrupt upload, three hours ago: only in the 24-hour window
        tr(c, "preview_extraction", "pillow_decode", 2, False, timestamp=older),
        tr(c, "dead_letter", "CorruptImage", 1, False, duration_ms=70, timestamp=older),
        # e: older than a day: in neither
        tr(e, "dead_letter", "OldError", 1, False, timestamp=too_old),
    ]
    store = open_store(ch)
    try:
        assert TraceSink(store).write(Batch(rows, list(range(len(rows))))).written == len(rows)
    finally:
        store.close()

    # Through the reader the service uses (a free store: opened read-only for each query).
    raw = tm.collect(Settings(clickhouse=ch))  # type: ignore[arg-type]
    hour = tm.shape(raw, tm.WINDOWS["1h"], now.timestamp())
    day = tm.shape(raw, tm.WINDOWS["24h"], now.timestamp())

    assert hour["bucket_s"] == 60 and len(hour["buckets"]) == 61
    assert day["bucket_s"] == 900 and len(day["buckets"]) == 97
    assert hour["buckets"][-1] == int(now.timestamp()) // 60 * 60

    jobs = series(hour, "jobs")
    assert set(jobs) == {"preview", "ingest"}
    assert jobs["preview"][at(hour, recent)] == 2 and sum(v or 0 for v in jobs["preview"]) == 2
    assert jobs["ingest"][at(hour, earlier)] == 1 and sum(v or 0 for v in jobs["ingest"]) == 1
    assert series(hour, "job_failures")["ingest"][at(hour, earlier)] == 1
    assert sum(v or 0 for v in series(hour, "job_failures")["preview"]) == 0
    # per minute in 15-minute buckets: three preview runs over the day, a, b and c
    day_jobs = series(day, "jobs")
    assert sum(round((v or 0) * 15) for v in day_jobs["preview"]) == 3
    assert day_jobs["preview"][at(day, older)] == round(1 / 15, 3)

    runtime = series(hour, "job_runtime")
    assert runtime["preview p95"][at(hour, recent)] == 460
    assert runtime["ingest p95"][at(hour, earlier)] == 900  # a failed run: its retry's timing
    assert runtime["preview p95"][at(hour, earlier)] is None  # a gap, not a zero
    assert series(day, "job_runtime")["preview p95"][at(day, older)] == 70

    methods = groups(hour, "method_runtime")
    assert methods["preview · preview_extraction · pillow_decode"] == [400, 400]
    # quantileExact takes the element at floor(level * n): of two, the larger for p50 too
    assert methods["preview · preview_extraction · embedded_preview"] == [30, 30]
    assert not any("retry" in k or "dead_letter" in k for k in methods)

    fallback = series(hour, "fallback")
    assert fallback["preview_extraction"][at(hour, recent)] == 50.0  # a by Pillow, b embedded
    assert fallback["thumbnail_generation"][at(hour, recent)] == 0.0
    assert "metadata_extraction" not in fallback  # nothing produced: no rate to draw

    assert groups(hour, "failures") == {"ExiftoolTimeout": [1, 0]}
    assert groups(day, "failures") == {"ExiftoolTimeout": [1, 0], "CorruptImage": [0, 1]}

    latency = series(hour, "preview_latency")
    assert latency["p95"][at(hour, recent)] == 4 and latency["p50"][at(hour, recent)] in (2, 4)
    assert sum(1 for v in latency["p95"] if v is not None) == 1


def test_an_empty_store_gives_empty_charts(ch: ClickHouseSettings) -> None:
    raw = tm.collect(Settings(clickhouse=ch))  # type: ignore[arg-type]
    doc = tm.shape(raw, tm.WINDOWS["24h"], time.time())
    assert doc["available"] is True and len(doc["charts"]) == 7
    assert all(not c.get("series") and not c.get("groups") for c in doc["charts"])


# -- the runner -------------------------------------------------------------------------------
async def test_a_hanging_store_answers_unavailable_and_runs_one_set_at_a_time() -> None:
    release = threading.Event()
    calls: list[int] = []

    def collect() -> tm.Raw:
        calls.append(1)
        if len(calls) == 1:
            release.wait(30)
            raise ConnectionError("the sink did not answer")
        return {}

    metrics = tm.TraceMetrics(Settings(), collect, timeout_s=0.2, failure_ttl_s=0.0)
    try:
        first = await asyncio.gather(*(metrics.answer(tm.WINDOWS["1h"]) for _ in range(5)))
        assert first[0] == {"available": False, "window": "1h",
                            "error": "trace store unavailable: no answer within 0.2 s"}
        # the others waited for that set, then found it still holding the thread
        assert all(d["available"] is False and "still running" in d["error"] for d in first[1:])
        # the failure is not kept (ttl 0), but the hung set still holds the thread: no second set
        again = await metrics.answer(tm.WINDOWS["24h"])
        assert again["available"] is False and "still running" in again["error"]
        assert len(calls) == 1 and metrics.runs == 1
        release.set()
        while metrics._running is not None and not metrics._running.done():
            await asyncio.sleep(0.01)
        back = await metrics.answer(tm.WINDOWS["24h"])
        assert back["available"] is True and back["window"] == "24h" and len(calls) == 2
    finally:
        release.set()
        metrics.close()


async def test_answers_are_kept_so_an_open_page_does_not_hammer_the_store() -> None:
    calls: list[int] = []

    def collect() -> tm.Raw:
        calls.append(1)
        return {"metrics_jobs": [{"span": "1h", "bucket": time.time() // 60 * 60, "job": "preview",
                                  "runs": "3", "failed": "0", "p50_ms": 1, "p95_ms": 2}]}

    metrics = tm.TraceMetrics(Settings(), collect, ttl_s=3600)
    try:
        docs = [await metrics.answer(tm.WINDOWS[w]) for w in ("1h", "24h", "1h", "1h")]
        assert len(calls) == 1
        assert series(docs[0], "jobs")["preview"][-1] == 3  # UInt64 sent as a string
        assert series(docs[1], "jobs") == {}  # that row is of the other window
    finally:
        metrics.close()


# -- the API ----------------------------------------------------------------------------------
@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Settings]]:
    settings = Settings(
        kafka={"topic_prefix": "u-", "group_id": "u-group", "partitions": 2},  # type: ignore[arg-type]
        status={"sample_interval_s": 3600, "token": "tok-m1"},  # type: ignore[arg-type]
        clickhouse={"path": tmp_path / "traces.chdb", "lock_timeout_s": 0.3},  # type: ignore[arg-type]
    )
    app = web.create_app(settings, StatusService(settings, FakeProbe(settings)), sample=False)
    c: TestClient[Any, Any] = TestClient(TestServer(app))
    await c.start_server()
    yield c, settings
    await c.close()


async def test_a_store_nobody_answers_for_is_said_not_a_500(
    served: tuple[TestClient[Any, Any], Settings],
) -> None:
    c, settings = served
    auth = {"Authorization": "Bearer tok-m1"}
    # Someone holds the store and publishes no endpoint (a sink that hangs, say).
    lock = StoreLock(settings.clickhouse.path)
    lock.acquire(1)
    try:
        r = await c.get("/api/trace-metrics?window=24h", headers=auth)
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        doc = await r.json()
        assert doc["available"] is False and doc["window"] == "24h"
        assert doc["error"].startswith("trace store unavailable: StoreBusy")
        assert "stayed locked" in doc["error"]
        # the rest of the service does not depend on it
        assert (await c.get("/status", headers=auth)).status == 200
        page = await c.get("/charts")  # open: the page asks for the token itself
        assert page.status == 200 and 'src="/static/metrics.js"' in await page.text()
        assert (await c.get("/")).status == 200
    finally:
        lock.release()


async def test_the_metrics_api_needs_the_token_and_a_known_window(
    served: tuple[TestClient[Any, Any], Settings],
) -> None:
    c, _ = served
    assert (await c.get("/api/trace-metrics?window=1h")).status == 401
    r = await c.get("/api/trace-metrics?window=7d", headers={"Authorization": "Bearer tok-m1"})
    assert r.status == 400 and "1h, 24h" in (await r.json())["error"]
