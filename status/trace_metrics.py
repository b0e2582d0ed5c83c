"""Charts of the trace store: the ``/charts`` page and ``GET /api/trace-metrics?window=1h|24h``.

One query set (``tracestore/sql/metrics_*.sql``, each answering both windows) runs on a thread
of its own through ``open_reader``, one set at a time, under a timeout, and its answer is
kept ``ttl_s``; ``shape`` turns its rows into the series the page draws. A store that does
not answer is said in the JSON (``available: false``), never a 500: the rest of the
service does not depend on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from streams.settings import Settings

log = logging.getLogger("status.trace_metrics")
STATIC = Path(__file__).parent / "static"
QUERIES = ("metrics_jobs", "metrics_methods", "metrics_fallback", "metrics_failures",
           "metrics_preview_latency")
Rows = list[dict[str, object]]
Raw = dict[str, Rows]


@dataclass(frozen=True)
class Window:
    name: str
    seconds: int
    bucket_s: int  # what the SQL buckets by for this window (its `span` column)

    def buckets(self, now: float) -> list[int]:
        """Bucket starts, oldest first; one more than fits, since the oldest is partial."""
        last = int(now) // self.bucket_s * self.bucket_s
        n = self.seconds // self.bucket_s
        return [last - i * self.bucket_s for i in range(n, -1, -1)]


WINDOWS = {w.name: w for w in (Window("1h", 3600, 60), Window("24h", 86400, 900))}


class Queryable(Protocol):
    def query(self, sql: str, params: dict[str, object] | None = None
              ) -> tuple[list[str], list[tuple[object, ...]]]: ...


def run_queries(reader: Queryable) -> Raw:
    """Every metrics query once, as lists of row dicts (both windows in each)."""
    from tracestore import pack

    queries = pack.load()
    out: Raw = {}
    for name in QUERIES:
        cols, rows = reader.query(queries[name].sql)
        out[name] = [dict(zip(cols, r, strict=True)) for r in rows]
    return out


def collect(settings: Settings) -> Raw:
    # Imported here: the store (chDB) is heavy and optional for the service.
    from tracestore.reader import open_reader

    reader = open_reader(settings)
    try:
        return run_queries(reader)
    finally:
        reader.close()


# -- shaping (pure) ---------------------------------------------------------------------------
def _num(v: object) -> float | None:
    """A JSON-typed value (ClickHouse sends 64-bit integers as strings) as a float."""
    if v is None:
        return None
    try:
        f = float(str(v))
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _in(rows: Rows, window: Window) -> Rows:
    return [r for r in rows if r.get("span") == window.name]


Row = dict[str, object]


def _series(rows: Rows, axis: list[int], *, name: Callable[[Row], str],
            value: Callable[[Row], float | None], fill: float | None = None) -> list[dict[str, Any]]:
    """One series per name, a value per bucket of ``axis`` (``fill`` where it has no row)."""
    at = {b: i for i, b in enumerate(axis)}
    out: dict[str, list[float | None]] = {}
    for r in rows:
        i = at.get(int(_num(r.get("bucket")) or -1))
        if i is None:
            continue
        values = out.setdefault(name(r), [fill] * len(axis))
        values[i] = value(r)
    # A name with no value anywhere (a rate of nothing produced) has nothing to draw.
    return [{"name": n, "values": v} for n, v in sorted(out.items())
            if any(x is not None for x in v)]


def _line(cid: str, title: str, unit: str, series: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": cid, "title": title, "kind": "line", "unit": unit, "series": series}


def _bars(cid: str, title: str, unit: str, legend: list[str],
          groups: Iterable[tuple[str, list[float | None]]]) -> dict[str, Any]:
    return {"id": cid, "title": title, "kind": "bar", "unit": unit, "legend": legend,
            "groups": [{"label": label, "values": values} for label, values in groups]}


def shape(raw: Mapping[str, Rows], window: Window, now: float) -> dict[str, Any]:
    """The document the page draws: a shared time axis and one entry per chart."""
    axis = window.buckets(now)
    per_minute = window.bucket_s / 60
    jobs = _in(raw.get("metrics_jobs", []), window)
    methods = _in(raw.get("metrics_methods", []), window)
    fallback = _in(raw.get("metrics_fallback", []), window)
    failures = _in(raw.get("metrics_failures", []), window)
    latency = _in(raw.get("metrics_preview_latency", []), window)

    def job_name(r: dict[str, object]) -> str:
        return str(r.get("job"))

    def rate(r: dict[str, object]) -> float | None:
        produced, by_fallback = _num(r.get("produced")) or 0.0, _num(r.get("by_fallback")) or 0.0
        return None if produced == 0 else round(100 * by_fallback / produced, 2)

    def runtime(q: str) -> Callable[[dict[str, object]], float | None]:
        return lambda r: _num(r.get(q))

    by_class: dict[str, list[float]] = {}
    for r in failures:
        totals = by_class.setdefault(str(r.get("error_class")), [0.0, 0.0])
        totals[0] += _num(r.get("retried")) or 0.0
        totals[1] += _num(r.get("dead_lettered")) or 0.0
    classes = sorted(by_class.items(), key=lambda kv: (-sum(kv[1]), kv[0]))

    charts = [
        _line("jobs", "Jobs per minute", "jobs/min", _series(
            jobs, axis, name=job_name, fill=0.0,
            value=lambda r: round((_num(r.get("runs")) or 0.0) / per_minute, 3))),
        _line("job_failures", "Failed job runs per minute (retry or dead letter)", "jobs/min", _series(
            jobs, axis, name=job_name, fill=0.0,
            value=lambda r: round((_num(r.get("failed")) or 0.0) / per_minute, 3))),
        _line("job_runtime", "Job runtime p50 / p95", "ms", [
            *_series(jobs, axis, name=lambda r: f"{r.get('job')} p50", value=runtime("p50_ms")),
            *_series(jobs, axis, name=lambda r: f"{r.get('job')} p95", value=runtime("p95_ms")),
        ]),
        _bars("method_runtime", "Runtime per method, p50 / p95", "ms", ["p50", "p95"], (
            (f"{r.get('job')} · {r.get('trace_type')} · {r.get('method_tried')}",
             [_num(r.get("p50_ms")), _num(r.get("p95_ms"))]) for r in methods)),
        _line("fallback", "Fallback rate (outputs made by a fallback method)", "%", _series(
            fallback, axis, name=lambda r: str(r.get("trace_type")), value=rate)),
        _bars("failures", "Failures by error class", "runs", ["retried", "dead-lettered"],
              ((c, [t[0], t[1]]) for c, t in classes)),
        _line("preview_latency", "Upload to preview latency p50 / p95", "s", [
            *_series(latency, axis, name=lambda r: "p50", value=runtime("p50_s")),
            *_series(latency, axis, name=lambda r: "p95", value=runtime("p95_s")),
        ]),
    ]
    return {"available": True, "window": window.name, "bucket_s": window.bucket_s,
            "buckets": axis, "charts": charts}


# -- the bounded, cached runner ---------------------------------------------------------------
def metrics_timeout_s(settings: Settings) -> float:
    # Five queries through the sink, a cold chDB open when no sink runs: more room than a lookup.
    return max(10.0, 4 * settings.status.kafka_timeout_s)


class TraceMetrics:
    """One query set at a time; its answer (or its failure, for less long) is kept a while,
    so a page left open, or many, cost one query set per ``ttl_s``."""

    def __init__(self, settings: Settings, collect_fn: Callable[[], Raw] | None = None, *,
                 ttl_s: float = 30.0, failure_ttl_s: float = 5.0, timeout_s: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.collect = collect_fn or (lambda: collect(settings))
        self.ttl_s = ttl_s
        self.failure_ttl_s = failure_ttl_s
        self.timeout_s = timeout_s if timeout_s is not None else metrics_timeout_s(settings)
        self.clock = clock
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="trace-metrics")
        self.lock = asyncio.Lock()
        self.runs = 0
        self._cached: tuple[float, Raw | str] | None = None
        self._running: Future[Raw] | None = None

    def _fresh(self) -> Raw | str | None:
        if self._cached is None:
            return None
        at, got = self._cached
        ttl = self.ttl_s if isinstance(got, dict) else self.failure_ttl_s
        return got if time.monotonic() - at <= ttl else None

    async def raw(self) -> Raw | str:
        """The rows of the query set, or why there are none."""
        got = self._fresh()
        if got is not None:
            return got
        async with self.lock:
            got = self._fresh()
            if got is not None:
                return got
            if self._running is not None and not self._running.done():
                # A set that outlived its timeout still holds the thread: no second one.
                return f"the last query set is still running after {self.timeout_s:g} s"
            self.runs += 1
            fut = self.executor.submit(self.collect)
            self._running = fut
            inner = asyncio.wrap_future(fut)
            inner.add_done_callback(_quiet)
            try:
                got = await asyncio.wait_for(asyncio.shield(inner), self.timeout_s)
            except TimeoutError:
                got = f"no answer within {self.timeout_s:g} s"
            except Exception as exc:  # noqa: BLE001 - any failure of the optional store is reported
                got = f"{type(exc).__name__}: {exc}"[:500]
            if isinstance(got, str):
                log.warning("trace metrics: %s", got)
            self._cached = (time.monotonic(), got)
            return got

    async def answer(self, window: Window) -> dict[str, Any]:
        got = await self.raw()
        if isinstance(got, str):
            return {"available": False, "window": window.name,
                    "error": f"trace store unavailable: {got}"}
        doc = shape(got, window, self.clock())
        doc["generated_at"] = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="seconds")
        return doc

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _quiet(fut: asyncio.Future[Raw]) -> None:
    # A set that timed out ends later with nobody awaiting it: take its exception here.
    if not fut.cancelled():
        fut.exception()


TRACE_METRICS: web.AppKey[TraceMetrics] = web.AppKey("trace_metrics", TraceMetrics)


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "metrics.html", headers={"Cache-Control": "no-cache"})


async def api(request: web.Request) -> web.Response:
    name = request.query.get("window", "1h")
    window = WINDOWS.get(name)
    if window is None:
        body: dict[str, Any] = {"error": f"window must be one of {', '.join(WINDOWS)}, not {name[:20]!r}"}
        status = 400
    else:
        body, status = await request.app[TRACE_METRICS].answer(window), 200
    return web.Response(text=json.dumps(body), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def setup(app: web.Application, settings: Settings, metrics: TraceMetrics | None = None) -> None:
    app[TRACE_METRICS] = metrics or TraceMetrics(settings)
    app.router.add_get("/charts", page)
    app.router.add_get("/api/trace-metrics", api)

    async def close(app: web.Application) -> None:
        app[TRACE_METRICS].close()

    app.on_cleanup.append(close)
