"""The aiohttp app: the dashboard at ``/``, ``/status`` JSON, probes, ``/metrics`` and the
lookup of one upload. Everything it serves comes from this package (no CDN).

    GET /                 the dashboard (static/index.html, app.js, app.css)
    GET /status           the status document; ?refresh=1 skips the cache
    GET /healthz          200 while the process runs
    GET /readyz           200 if the last round reached Kafka, else 503
    GET /metrics          Prometheus text
    GET /lookup/{uuid}    that upload's attempts (traces store) and dead letters
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid as uuid_mod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from streams.settings import Settings

from . import metrics
from .service import StatusService

log = logging.getLogger("status.web")
STATIC = Path(__file__).parent / "static"
SERVICE: web.AppKey[StatusService] = web.AppKey("service", StatusService)
LOOKUPS: web.AppKey[ThreadPoolExecutor] = web.AppKey("lookups", ThreadPoolExecutor)


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
    timeout = lookup_timeout_s(svc.settings)
    attempts, dead = await asyncio.gather(
        _attempts(request.app, svc.settings, uuid, timeout), _dead_letters(svc, uuid, timeout)
    )
    return _json({"uuid": uuid, **attempts, **dead})


async def _attempts(app: web.Application, settings: Settings, uuid: str, timeout: float) -> dict[str, Any]:
    """The upload's attempts from the traces store; its absence or failure is said, not raised."""

    def timeline() -> list[dict[str, object]]:
        # Imported here: the store (chDB) is heavy and optional for the service.
        from streams.tracestore.reader import open_reader

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


async def _dead_letters(svc: StatusService, uuid: str, timeout: float) -> dict[str, Any]:
    try:
        found = await asyncio.wait_for(svc.lookup_dead_letters(uuid, timeout), timeout + 1.0)
    except TimeoutError:
        return {"dead_letters": None, "dead_letters_error": f"no answer from Kafka within {timeout:g} s"}
    except Exception as exc:  # noqa: BLE001
        return {"dead_letters": None, "dead_letters_error": f"{type(exc).__name__}: {exc}"}
    return {
        "dead_letters": [asdict(d) for d in found.records],
        "dead_letters_error": None if found.complete else found.note,
        "dead_letters_scanned": found.scanned,
    }


def create_app(
    settings: Settings, service: StatusService | None = None, *, sample: bool = True
) -> web.Application:
    app = web.Application()
    app[SERVICE] = service or StatusService(settings)
    app[LOOKUPS] = ThreadPoolExecutor(2, thread_name_prefix="status-lookup")
    app.router.add_get("/", index)
    app.router.add_get("/status", status)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/lookup/{uuid}", lookup)
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
    log.info("status: http://%s:%d/ watching group %s on %s", host, port,
             settings.kafka.group_id, settings.kafka.bootstrap_servers)
    # No access log: probes and the dashboard poll it every few seconds.
    web.run_app(create_app(settings), host=host, port=port, access_log=None, print=None)
