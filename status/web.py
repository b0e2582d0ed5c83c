"""The aiohttp app: the dashboard at ``/``, ``/status`` JSON, probes, ``/metrics`` and the
lookup of one upload. Everything it serves comes from this package (no CDN).

    GET /                 the dashboard (static/index.html, app.js, app.css)
    GET /status           the status document; ?refresh=1 skips the cache
    GET /healthz          200 while the process runs
    GET /readyz           200 if the last round reached Kafka, else 503
    GET /metrics          Prometheus text
    GET /lookup/{uuid}    that upload's attempts (traces store) and dead letters
    GET /failed           the failed-jobs page and its /api/* (status/console.py)
    GET /search           search pending events, dead letters and traces (status/search.py)
    GET /charts           charts of the trace store and /api/trace-metrics (status/trace_metrics.py)

With ``status.token`` set, everything but /healthz, /readyz, the page's own static files
and (while ``metrics_public``) /metrics needs ``Authorization: Bearer <token>``; the
dashboard asks for it once per browser session.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid as uuid_mod
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from streams.settings import Settings

from . import console, metrics, search, trace_metrics
from .service import StatusService

log = logging.getLogger("status.web")
STATIC = Path(__file__).parent / "static"
SERVICE: web.AppKey[StatusService] = web.AppKey("service", StatusService)
LOOKUPS: web.AppKey[ThreadPoolExecutor] = web.AppKey("lookups", ThreadPoolExecutor)
LOOKUP_CACHE: web.AppKey[LookupCache] = web.AppKey("lookup_cache")
OPEN_PATHS = ("/healthz", "/readyz", "/", "/failed", "/search", "/charts", "/favicon.ico")


class LookupCache:
    """One lookup at a time, answers kept a little while: a person looks an upload up,
    a script that asks in a loop gets the same answer without new queries."""

    def __init__(self, ttl_s: float = 10.0, size: int = 256) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self.lock = asyncio.Lock()
        self._items: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self.misses = 0

    def get(self, uuid: str) -> dict[str, Any] | None:
        hit = self._items.get(uuid)
        if hit is None or time.monotonic() - hit[0] > self.ttl_s:
            return None
        self._items.move_to_end(uuid)
        return hit[1]

    def put(self, uuid: str, answer: dict[str, Any]) -> None:
        self._items[uuid] = (time.monotonic(), answer)
        self._items.move_to_end(uuid)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def _authorized(request: web.Request, token: str) -> bool:
    got = request.headers.get("Authorization", "")
    scheme, _, value = got.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def auth_middleware(settings: Settings) -> Any:
    secret = settings.status.token
    token = secret.get_secret_value() if secret is not None else ""

    @web.middleware
    async def check(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        path = request.path
        open_path = (path in OPEN_PATHS or path.startswith("/static/")
                     or (path == "/metrics" and settings.status.metrics_public))
        if token and not open_path and not _authorized(request, token):
            return web.json_response(
                {"error": "this status service needs its token: Authorization: Bearer <token>"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="prophoto-ingest status"',
                                     "Cache-Control": "no-store"})
        return await handler(request)

    return check


def lookup_timeout_s(settings: Settings) -> float:
    # A person waits on a lookup; scans get more room than the 2-second status answer.
    return max(3.0, 2 * settings.status.kafka_timeout_s)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status,
                        content_type="application/json", headers={"Cache-Control": "no-store"})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def status(request: web.Request) -> web.Response:
    refresh = request.query.get("refresh", "") in ("1", "true", "yes")
    body = await request.app[SERVICE].report_json(refresh=refresh)
    return web.Response(body=body, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    report = await request.app[SERVICE].report()
    k = report.kafka
    if k.reachable:
        return _json({"status": "ready", "kafka": k.bootstrap})
    return _json({"status": "not ready", "kafka": k.bootstrap, "error": k.error}, status=503)


async def metrics_page(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    report = await svc.report()
    return web.Response(body=metrics.render(report, svc.rounds, svc.late).encode(),
                        headers={"Content-Type": metrics.CONTENT_TYPE})


async def lookup(request: web.Request) -> web.Response:
    raw = request.match_info["uuid"].strip()
    try:
        uuid = str(uuid_mod.UUID(raw))
    except ValueError:
        return _json({"error": f"not a UUID: {raw!r}"}, status=400)
    svc = request.app[SERVICE]
    cache = request.app[LOOKUP_CACHE]
    timeout = lookup_timeout_s(svc.settings)
    answer = cache.get(uuid)
    if answer is None:
        try:
            # One at a time: a queue of lookups must not pile trace-store queries up.
            await asyncio.wait_for(cache.lock.acquire(), timeout)
        except TimeoutError:
            return _json({"error": "another lookup is still running; try again shortly"}, status=429)
        try:
            answer = cache.get(uuid)
            if answer is None:
                cache.misses += 1
                attempts, dead = await asyncio.gather(
                    _attempts(request.app, svc.settings, uuid, timeout), _dead_letters(svc, uuid)
                )
                answer = {"uuid": uuid, **attempts, **dead}
                cache.put(uuid, answer)
        finally:
            cache.lock.release()
    return _json(answer)


async def _attempts(app: web.Application, settings: Settings, uuid: str, timeout: float) -> dict[str, Any]:
    """The upload's attempts from the traces store; its absence or failure is said, not raised."""

    def timeline() -> list[dict[str, object]]:
        # Imported here: the store (chDB) is heavy and optional for the service.
        from tracestore.reader import open_reader

        reader = open_reader(settings)
        try:
            return reader.timeline(uuid)
        finally:
            reader.close()

    loop = asyncio.get_running_loop()
    try:
        rows = await asyncio.wait_for(loop.run_in_executor(app[LOOKUPS], timeline), timeout)
    except TimeoutError:
        problem = f"no answer within {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure of the optional store is reported
        problem = f"{type(exc).__name__}: {exc}"
    else:
        return {"attempts": rows, "attempts_error": None}
    return {"attempts": None, "attempts_error": f"traces store unavailable: {problem}"}


async def _dead_letters(svc: StatusService, uuid: str) -> dict[str, Any]:
    try:
        found = svc.lookup_dead_letters(uuid)
    except Exception as exc:  # noqa: BLE001
        return {"dead_letters": None, "dead_letters_error": f"{type(exc).__name__}: {exc}"}
    return {
        "dead_letters": [asdict(d) for d in found.records],
        "dead_letters_error": None if found.complete else found.note,
    }


def create_app(
    settings: Settings, service: StatusService | None = None, *, sample: bool = True,
    failed_backend: console.Backend | None = None, searcher: search.Searcher | None = None,
) -> web.Application:
    app = web.Application(middlewares=[auth_middleware(settings)])
    app[SERVICE] = service or StatusService(settings)
    app[LOOKUPS] = ThreadPoolExecutor(1, thread_name_prefix="status-lookup")
    app[LOOKUP_CACHE] = LookupCache()
    app.router.add_get("/", index)
    app.router.add_get("/status", status)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/lookup/{uuid}", lookup)
    console.setup(app, settings, failed_backend)
    search.setup(app, settings, SERVICE, searcher)
    trace_metrics.setup(app, settings)
    app.router.add_static("/static/", STATIC, show_index=False)

    async def start_sampling(app: web.Application) -> None:
        # The first round opens the connections (up to a second cold): before anyone asks.
        app[SERVICE].start()

    async def close(app: web.Application) -> None:
        await app[SERVICE].stop()
        app[SERVICE].close()
        app[LOOKUPS].shutdown(wait=False, cancel_futures=True)

    if sample:
        app.on_startup.append(start_sampling)
    app.on_cleanup.append(close)
    return app


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve until interrupted (``prophoto-ingest status serve``)."""
    host = host or settings.status.host
    port = port if port is not None else settings.status.port
    # the checks that depend on the bind (status.console) see the one the CLI chose
    settings = settings.model_copy(update={"status": settings.status.model_copy(
        update={"host": host, "port": port})})
    log.info("status: http://%s:%d/ watching group %s on %s", host, port,
             settings.kafka.group_id, settings.kafka.bootstrap_servers)
    if console.open_to_network(settings):
        log.warning("status: listening on %s without a token: anyone who can reach it reads "
                    "dead letters (owners, galleries, file names) and worker state, and the "
                    "console's actions are refused; set INGEST_STATUS__TOKEN", host)
    # No access log: probes and the dashboard poll it every few seconds.
    web.run_app(create_app(settings), host=host, port=port, access_log=None, print=None)
