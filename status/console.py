"""The failed-jobs page and its API: list and inspect dead letters, replay or forget them in
two steps (a dry run that answers the count, then a confirm that carries it), and the
history of those actions, kept on the resolution topic.

    GET  /failed                the page (static/failed.html, failed.js)
    GET  /api/session           a CSRF token for this browser session (and who acts)
    GET  /api/failed            ?topic=&error=&since=&uuid=&poison=&page=&per_page=
    GET  /api/failed/{id}       one dead letter: value (clipped), headers, stack, lineage
    POST /api/failed/replay     {"filter": {...} | "ids": [...], "dry_run": true}, then
                                {..., "confirm": {"count": n, "selection": "..."}, "rate": r}
    POST /api/failed/forget     the same two steps; resolves without replay
    GET  /api/actions           the recorded actions, newest first, and the one running
    POST /api/topics/pause      {"topic": "ingest-preview", "reason": "..."}: hold a job topic
                                back on every worker (``pause TOPIC``); /continue lets it run
    POST /api/topics/clear      {"topic": ..., "dry_run": true}, then {"topic": ..., "confirm":
                                {"total": n}}: skip the backlog (``clear TOPIC``); Kafka refuses
                                while workers are in the group, and the answer says so

Replay and forget run ``DeadLetters.replay`` and ``DeadLetters.resolve``, the code behind the
CLI's ``replay`` and ``forget``. POSTs must come from this service's own page: the Origin
(or Referer) must name this host, and the session's CSRF token rides in ``X-CSRF-Token``;
without a token, a loopback service answers its API only by a loopback name (DNS rebinding),
and a service bound beyond loopback takes no actions at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from confluent_kafka import KafkaException
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from streams import pauses
from streams.errors import KafkaUnavailable
from streams.replay import (
    DeadLetterEntry,
    DeadLetters,
    Filter,
    actions,
    record_action,
)
from streams.settings import Settings
from streams.topics import Topics

from . import failed_view as fv
from .failed_view import BadQuery, FailedIndex

log = logging.getLogger("status.console")
STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "prophoto_status_session"
CSRF_HEADER = "X-CSRF-Token"
SHOWN_IDS = 100  # ids a dry run lists; the count and the digest cover the rest
MAX_ACTIONS = 100
_ID = re.compile(r"^[0-9A-Za-z:._-]{1,64}$")
T = TypeVar("T")


class Backend(Protocol):
    """What the console needs of Kafka; ``KafkaBackend`` in service, a fake in unit tests."""

    def refresh(self, max_age_s: float) -> None: ...

    def open(self) -> list[DeadLetterEntry]: ...

    def known(self) -> Mapping[str, DeadLetterEntry]: ...

    def states(self) -> Mapping[str, dict[str, Any]]: ...

    def replay(self, entries: list[DeadLetterEntry], rate: float | None, by: str,
               progress: Callable[[DeadLetterEntry], None]) -> int: ...

    def resolve(self, ids: list[str], by: str) -> int: ...

    def record(self, action: dict[str, Any], key: str | None) -> str: ...

    def pause(self, topics: list[str], paused: bool, by: str, reason: str) -> None: ...

    def clear(self, topic: str, apply: bool) -> dict[int, int]: ...

    def close(self) -> None: ...


class KafkaBackend:
    def __init__(self, settings: Settings) -> None:
        self.kafka = settings.kafka
        self.topics = Topics.from_settings(settings.kafka)
        self.index = FailedIndex(settings.kafka, self.topics)
        self.store = DeadLetters(settings.kafka, self.topics)

    def refresh(self, max_age_s: float) -> None:
        self.index.refresh(max_age_s)

    def open(self) -> list[DeadLetterEntry]:
        return self.index.open()

    def known(self) -> Mapping[str, DeadLetterEntry]:
        return self.index.by_id

    def states(self) -> Mapping[str, dict[str, Any]]:
        return self.index.states

    def replay(self, entries: list[DeadLetterEntry], rate: float | None, by: str,
               progress: Callable[[DeadLetterEntry], None]) -> int:
        return len(self.store.replay(entries, rate=rate, progress=progress, by=by))

    def resolve(self, ids: list[str], by: str) -> int:
        return self.store.resolve(ids, "forget", by=by)

    def record(self, action: dict[str, Any], key: str | None) -> str:
        return record_action(self.kafka, self.topics, action, key=key)

    def pause(self, topics: list[str], paused: bool, by: str, reason: str) -> None:
        pauses.publish(self.kafka, self.topics.pauses, topics, paused=paused, by=by, reason=reason)

    def clear(self, topic: str, apply: bool) -> dict[int, int]:
        return self.store.clear(self.kafka.group_id, topic, apply=apply)

    def close(self) -> None:
        self.index.close()


# -- requests ---------------------------------------------------------------------------------
class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str = Field(min_length=1, max_length=200)
    reason: str = Field("", max_length=500)


class ClearConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    total: int = Field(ge=0)


class ClearRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str = Field(min_length=1, max_length=200)
    dry_run: StrictBool = False
    confirm: ClearConfirm | None = None


class Confirm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=0)
    selection: str = Field(min_length=1, max_length=64)


class ActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filter: dict[str, Any] | None = None
    ids: list[str] | None = None
    dry_run: StrictBool = False
    confirm: Confirm | None = None
    rate: float | None = Field(None, gt=0, le=1000, allow_inf_nan=False)


@dataclass
class Selection:
    action: str
    filter: Filter
    chosen: list[DeadLetterEntry]
    poison: list[str]  # matched, but a replay skips them (as the CLI does without --force)
    unknown: list[str]  # asked for by id, not an unresolved dead letter

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.chosen]

    @property
    def digest(self) -> str:
        return fv.selection_digest(self.ids)

    def answer(self) -> dict[str, Any]:
        return {"action": self.action, "count": len(self.chosen), "selection": self.digest,
                "ids": self.ids[:SHOWN_IDS], "skipped_poison": self.poison[:SHOWN_IDS],
                "unknown": self.unknown[:SHOWN_IDS], "filter": fv.filter_json(self.filter)}


@dataclass
class Running:
    key: str
    body: dict[str, Any]
    done: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Console:
    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings.kafka)
        self.backend: Backend = backend or KafkaBackend(settings)
        # Reads and actions on threads of their own: a slow replay never holds up the list.
        self.reads = ThreadPoolExecutor(1, thread_name_prefix="failed-read")
        self.acts = ThreadPoolExecutor(1, thread_name_prefix="failed-act")
        self.secret = secrets.token_bytes(32)
        self.running: Running | None = None
        token = settings.status.token
        self.by = ("token:" + hashlib.sha256(token.get_secret_value().encode()).hexdigest()[:8]
                   if token is not None else "anonymous")
        self.max_age_s = max(1.0, settings.status.sample_interval_s)
        self.stale = False  # an action ended: the next read catches up whatever its age

    def close(self) -> None:
        self.reads.shutdown(wait=False, cancel_futures=True)
        self.acts.shutdown(wait=False, cancel_futures=True)
        self.backend.close()

    async def read(self, fn: Callable[[], T], refresh: bool = False) -> T:
        """``fn`` on the read thread after the index caught up (at most once per round)."""
        def run() -> T:
            stale, self.stale = self.stale, False
            self.backend.refresh(0.0 if refresh or stale else self.max_age_s)
            return fn()
        return await asyncio.get_running_loop().run_in_executor(self.reads, run)

    def csrf(self, session: str) -> str:
        return hmac.new(self.secret, session.encode(), hashlib.sha256).hexdigest()


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status,
                        content_type="application/json", headers={"Cache-Control": "no-store"})


def _error(message: str, status: int) -> web.Response:
    return _json({"error": message}, status)


def _unavailable(exc: Exception) -> web.Response:
    return _error(f"Kafka is not answering, nothing was done: {exc}", 503)


# KafkaException: what librdkafka raises from calls not yet made through streams.kafka.
KAFKA_ERRORS = (KafkaUnavailable, KafkaException)


# -- safety -----------------------------------------------------------------------------------
def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def foreign_host(request: web.Request, settings: Settings) -> str | None:
    """Without a token the service trusts its loopback interface; a page from another site
    that resolves its own name to 127.0.0.1 (DNS rebinding) would pass the Origin check
    and could read a CSRF token, so a loopback service answers its API only by a loopback
    name."""
    if settings.status.token is not None or not _loopback(settings.status.host):
        return None
    name = urlsplit("//" + request.host).hostname
    if _loopback(name):
        return None
    return (f"refused: this service listens on {settings.status.host} without a token and is "
            f"asked for as {request.host[:100]!r}; open it as http://127.0.0.1:<port>/failed")


def open_to_network(settings: Settings) -> str | None:
    """Without a token, a service that listens beyond loopback would let anything on the
    network replay, forget, pause or clear: the Origin and CSRF checks stop browsers, not
    scripts. Its actions are refused, saying how to open them."""
    if settings.status.token is not None or _loopback(settings.status.host):
        return None
    return (f"refused: this service listens on {settings.status.host} without a token, so it "
            f"takes no actions; set INGEST_STATUS__TOKEN (the chart's status.token Secret, "
            f"compose's STATUS_TOKEN), or bind it to 127.0.0.1")


def cross_site(request: web.Request) -> str | None:
    """Why a POST is not from this service's own page, or None. Browsers send Origin on every
    POST fetch; Referer stands in where a privacy setting drops it."""
    origin = request.headers.get("Origin")
    source = origin if origin and origin != "null" else request.headers.get("Referer")
    if not source:
        return "refused: an action needs the Origin (or Referer) of this service's own page"
    netloc = urlsplit(source).netloc
    if not netloc or netloc.lower() != request.host.lower():
        return (f"refused: cross-site request from {source[:100]!r}; "
                f"actions come only from {request.host}'s own page")
    return None


def csrf_problem(request: web.Request, console: Console) -> str | None:
    session = request.cookies.get(SESSION_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    if not session or not sent:
        return (f"refused: missing CSRF token; the page sends it in {CSRF_HEADER} "
                "(GET /api/session issues one with its session cookie)")
    if not hmac.compare_digest(sent.encode(), console.csrf(session).encode()):
        return "refused: CSRF token does not match this session; reload the page"
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def local(handler: Handler) -> Handler:
    async def check(request: web.Request) -> web.StreamResponse:
        problem = foreign_host(request, request.app[CONSOLE].settings)
        if problem:
            return _error(problem, 403)
        return await handler(request)
    return check


def guarded(handler: Handler) -> Handler:
    async def check(request: web.Request) -> web.StreamResponse:
        console = request.app[CONSOLE]
        problem = (open_to_network(console.settings) or cross_site(request)
                   or csrf_problem(request, console))
        if problem:
            return _error(problem, 403)
        return await handler(request)
    return local(check)


# -- handlers ---------------------------------------------------------------------------------
async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "failed.html", headers={"Cache-Control": "no-cache"})


async def session(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    sid = request.cookies.get(SESSION_COOKIE, "")
    if not re.fullmatch(r"[0-9a-f]{32}", sid):
        sid = secrets.token_hex(16)
    resp = _json({"csrf": console.csrf(sid), "by": console.by})
    resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Strict", path="/")
    return resp


async def list_failed(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    try:
        q = fv.parse_query(request.query, console.topics, datetime.now(UTC))
    except BadQuery as exc:
        return _error(str(exc), 400)
    refresh = request.query.get("refresh", "") in ("1", "true")
    try:
        answer = await console.read(lambda: fv.page_of(console.backend.open(), q), refresh)
    except KAFKA_ERRORS as exc:
        return _unavailable(exc)
    return _json(answer)


async def one_failed(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    dead_letter_id = request.match_info["id"]
    if not _ID.fullmatch(dead_letter_id):
        return _error(f"not a dead-letter id: {dead_letter_id[:70]!r}", 400)

    def find() -> dict[str, Any] | None:
        b = console.backend
        known = b.known()
        e = known.get(dead_letter_id)
        if e is None:
            return None
        b.open()  # sets the poison flags
        return fv.detail(e, known, b.states())

    try:
        found = await console.read(find)
    except KAFKA_ERRORS as exc:
        return _unavailable(exc)
    if found is None:
        return _error(f"no dead letter {dead_letter_id}", 404)
    return _json(found)


async def list_actions(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    try:
        done = await console.read(lambda: actions(dict(console.backend.states())))
    except KAFKA_ERRORS as exc:
        return _unavailable(exc)
    run = console.running
    running = {**run.body, "done": run.done} if run and run.body else None
    current = run.key if run else None
    for a in done:
        if a.get("state") == "running" and a.get("key") != current:
            # Started, never ended: this service stopped (or lost Kafka) during it; what
            # it did is in each entry's own state, and a rerun sends only what is open.
            a["state"] = "unfinished"
    return _json({"actions": done[:MAX_ACTIONS], "running": running})


def _select(console: Console, action: str, req: ActionRequest) -> Selection:
    ids = fv.parse_ids(req.ids)
    if not ids and req.filter is None:
        raise BadQuery('name what to act on: "ids": [...] or "filter": {...} ({} is every entry)')
    flt = fv.parse_filter(req.filter or {}, console.topics, datetime.now(UTC))
    flt = Filter(topics=flt.topics, error=flt.error, since=flt.since, uuid=flt.uuid,
                 poison=flt.poison, ids=ids)
    matched = fv.select(console.backend.open(), flt)
    seen = {e.id for e in matched}
    poison = [e.id for e in matched if e.poison] if action == "replay" else []
    chosen = [e for e in matched if not (action == "replay" and e.poison)]
    return Selection(action, flt, chosen, poison, [i for i in ids if i not in seen])


def action_handler(action: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        console = request.app[CONSOLE]
        try:
            req = ActionRequest.model_validate(await request.json())
        except ValueError as exc:  # JSON and pydantic errors alike
            detail = exc.errors()[0] if isinstance(exc, ValidationError) else None
            where = ".".join(str(x) for x in detail["loc"]) + ": " if detail else ""
            return _error(f"bad request body: {where}{detail['msg'] if detail else exc}", 400)
        if not req.dry_run and req.confirm is None:
            return _error(f"a {action} takes two steps: first send \"dry_run\": true, then confirm "
                          'with the "count" and "selection" it answered', 400)
        if req.rate is not None and action != "replay":
            return _error("rate applies to replay only", 400)
        # An action catches the index up first: the count is the broker's, not a cached one.
        try:
            sel = await console.read(lambda: _select(console, action, req), refresh=True)
        except BadQuery as exc:
            return _error(str(exc), 400)
        except KAFKA_ERRORS as exc:
            return _unavailable(exc)
        if req.dry_run:
            return _json({"dry_run": True, **sel.answer()})
        assert req.confirm is not None
        if (req.confirm.count, req.confirm.selection) != (len(sel.chosen), sel.digest):
            return _json({"error": f"the selection changed since the dry run: {len(sel.chosen)} match "
                                   f"now, {req.confirm.count} were confirmed; run the dry run again",
                          **sel.answer()}, 409)
        if not sel.chosen:
            return _error(f"nothing to {action}: no unresolved dead letter matches", 409)
        if console.running is not None:
            r = console.running
            what = (f"{r.body['action']} of {r.body['count']} by {r.body['by']} since "
                    f"{r.body['started_at']} ({r.done} done)" if r.body else "one is starting")
            return _error(f"another action is running: {what}; wait for it to end", 409)
        # Claimed before the first await: two confirms at once cannot both start.
        console.running = Running("", {})
        return await start(console, sel, req.rate)

    return guarded(handle)


def pause_handler(paused: bool) -> Handler:
    """Pause or continue a job topic on every worker: the code behind ``pause``/``continue``,
    recorded in the action history like a replay."""
    verb = "pause" if paused else "continue"

    async def handle(request: web.Request) -> web.StreamResponse:
        console = request.app[CONSOLE]
        try:
            req = PauseRequest.model_validate(await request.json())
            jobs = console.topics.parse_jobs([req.topic])
        except ValueError as exc:  # JSON, pydantic and unknown topic names alike
            detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            return _error(f"bad request body: {detail}", 400)
        topics = [console.topics.job(j) for j in jobs]
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        action = {"action": verb, "topics": topics, "reason": req.reason, "by": console.by,
                  "count": len(topics), "started_at": now, "finished_at": now, "state": "done"}

        def act() -> None:
            console.backend.pause(topics, paused, console.by, req.reason)
            console.backend.record(action, None)

        try:
            await asyncio.get_running_loop().run_in_executor(console.acts, act)
        except KAFKA_ERRORS as exc:
            return _unavailable(exc)
        return _json({"paused": paused, "topics": topics})

    return guarded(handle)


async def clear_handler(request: web.Request) -> web.StreamResponse:
    """``clear TOPIC`` from the page, in two steps. Moving a group's offsets is refused by
    Kafka while the group has members: that refusal is the answer (409), said plainly."""
    console = request.app[CONSOLE]
    try:
        req = ClearRequest.model_validate(await request.json())
        jobs = console.topics.parse_jobs([req.topic])
    except ValueError as exc:
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        return _error(f"bad request body: {detail}", 400)
    if len(jobs) != 1:
        return _error("clear one topic at a time", 400)
    if not req.dry_run and req.confirm is None:
        return _error('a clear takes two steps: first send "dry_run": true, then confirm with '
                      'the "total" it answered', 400)
    topic = console.topics.job(jobs[0])
    loop = asyncio.get_running_loop()
    try:
        counts = await loop.run_in_executor(console.acts, console.backend.clear, topic, False)
    except KAFKA_ERRORS as exc:
        return _unavailable(exc)
    total = sum(counts.values())
    answer = {"topic": topic, "total": total, "per_partition": counts}
    if req.dry_run:
        return _json({"dry_run": True, **answer})
    assert req.confirm is not None
    if req.confirm.total != total:
        return _json({"error": f"the backlog changed since the dry run: {total} now, "
                               f"{req.confirm.total} confirmed; run the dry run again", **answer}, 409)
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    action = {"action": "clear", "topics": [topic], "count": total, "by": console.by,
              "started_at": now, "finished_at": now, "state": "done"}

    def act() -> dict[int, int]:
        skipped = console.backend.clear(topic, True)
        console.backend.record(action, None)
        return skipped

    try:
        skipped = await loop.run_in_executor(console.acts, act)
    except KafkaUnavailable as exc:
        if "stop them first" in str(exc):
            return _error(f"refused: the workers must be stopped first ({exc})", 409)
        return _unavailable(exc)
    except KAFKA_ERRORS as exc:
        return _unavailable(exc)
    return _json({"cleared": sum(skipped.values()), "topic": topic, "per_partition": skipped})


async def start(console: Console, sel: Selection, rate: float | None) -> web.Response:
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    body: dict[str, Any] = {"action": sel.action, "count": len(sel.chosen), "by": console.by,
                            "filter": fv.filter_json(sel.filter), "ids": sel.ids[:20], "rate": rate,
                            "started_at": now, "state": "running"}
    loop = asyncio.get_running_loop()
    try:
        key = await loop.run_in_executor(console.acts, console.backend.record, body, None)
    except KAFKA_ERRORS as exc:
        console.running = None
        return _unavailable(exc)
    run = Running(key, body)
    console.running = run
    run.task = asyncio.create_task(_run(console, run, sel, rate), name=f"failed-{sel.action}")
    return _json({"started": True, "key": key, **body}, 202)


async def _run(console: Console, run: Running, sel: Selection, rate: float | None) -> None:
    def progress(_: DeadLetterEntry) -> None:
        run.done += 1

    def act() -> int:
        if sel.action == "replay":
            return console.backend.replay(sel.chosen, rate, console.by, progress)
        n = console.backend.resolve(sel.ids, console.by)
        run.done = n
        return n

    loop = asyncio.get_running_loop()
    end: dict[str, Any]
    try:
        n = await loop.run_in_executor(console.acts, act)
        end = {"state": "done", "done": n, "skipped": len(sel.chosen) - n}
    except Exception as exc:
        log.exception("failed-page %s stopped", sel.action)
        end = {"state": "failed", "done": run.done, "error": f"{type(exc).__name__}: {exc}"}
    finished = {**run.body, **end, "finished_at": datetime.now(UTC).isoformat(timespec="milliseconds")}
    try:
        await loop.run_in_executor(console.acts, console.backend.record, finished, run.key)
    except Exception:
        log.exception("could not record the end of %s %s", sel.action, run.key)
    finally:
        console.running = None
        console.stale = True


def setup(app: web.Application, settings: Settings, backend: Backend | None = None) -> None:
    app[CONSOLE] = Console(settings, backend)
    app.router.add_get("/failed", page)
    app.router.add_get("/api/session", local(session))
    app.router.add_get("/api/failed", local(list_failed))
    app.router.add_get("/api/failed/{id}", local(one_failed))
    app.router.add_post("/api/failed/replay", action_handler("replay"))
    app.router.add_post("/api/failed/forget", action_handler("forget"))
    app.router.add_get("/api/actions", local(list_actions))
    app.router.add_post("/api/topics/pause", pause_handler(True))
    app.router.add_post("/api/topics/continue", pause_handler(False))
    app.router.add_post("/api/topics/clear", guarded(clear_handler))

    async def close(app: web.Application) -> None:
        run = app[CONSOLE].running
        if run is not None and run.task is not None:
            run.task.cancel()
        app[CONSOLE].close()

    app.on_cleanup.append(close)
