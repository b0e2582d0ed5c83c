"""Search for uploads by image UUID, owner id, gallery id or original file name across the
records still pending (the lag window of the job and retry topics), the dead letters (the
failed page's index) and the traces (by UUID only), each source bounded and saying so.

    GET /search           the page (static/search.html, search.js)
    GET /api/search       ?field=uuid|owner|gallery|filename&q=...

Pending records are read from the group's committed offset to the log end as of the last
status round (no offset queries of its own), at most ``per_partition`` records of each
partition and ``total`` in all, within ``deadline_s``; a UUID reads only its own partition
number (every producer uses murmur2). A capped or late read answers "partial", with how much
was read and left. Hits say where the record is, never the event's payload.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid as uuid_mod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from confluent_kafka import Consumer, KafkaException, TopicPartition

from streams import kafka
from streams.replay import DeadLetterEntry
from streams.settings import Settings
from streams.topics import Job, Topics, partition_for

from . import console as console_mod
from .report import StatusReport
from .service import StatusService

STATIC = Path(__file__).parent / "static"
Field = Literal["uuid", "owner", "gallery", "filename"]
FIELDS: dict[str, str] = {"uuid": "uuid", "owner": "owner_id", "gallery": "gallery_id",
                          "filename": "original_filename"}
MIN_FILENAME = 3  # a substring shorter than this matches nearly everything
MAX_QUERY = 255  # the events' own limit on these fields
MAX_VALUE = 65536  # bytes of a record's value parsed; an event is a few hundred
PER_PARTITION = 2000
TOTAL = 20000
MAX_DEAD = 50000  # dead letters compared per search
MAX_HITS = 100  # per source
MAX_TRACE_ROWS = 50


class BadSearch(ValueError):
    """A search that cannot run; its message says why (HTTP 400)."""


@dataclass(frozen=True)
class Query:
    field: Field
    q: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.field, self.q)


def parse(params: Mapping[str, str]) -> Query:
    extra = sorted(set(params) - {"field", "q"})
    if extra:
        raise BadSearch(f"unknown parameter(s): {', '.join(e[:30] for e in extra)} (known: field, q)")
    name = params.get("field", "").strip()
    if name not in FIELDS:
        raise BadSearch(f"field={name[:30]!r}: search by one of {', '.join(FIELDS)}")
    q = params.get("q", "").strip()
    if len(q) > MAX_QUERY:
        raise BadSearch(f"q: at most {MAX_QUERY} characters")
    if not q:
        raise BadSearch("q: say what to search for")
    if name == "uuid":
        try:
            q = str(uuid_mod.UUID(q))
        except ValueError:
            raise BadSearch(f"q={q[:60]!r} is not a UUID (search by UUID takes the whole UUID)") from None
    elif name == "filename" and len(q) < MIN_FILENAME:
        raise BadSearch(f"q: a file name search needs at least {MIN_FILENAME} characters")
    return Query(name, q)  # type: ignore[arg-type]


def event_fields(value: bytes | None) -> dict[str, str] | None:
    """The searchable fields of an event, or None when the value is not a JSON object (a
    dead letter is often exactly that: undecodable or schema-invalid)."""
    if not value or len(value) > MAX_VALUE:
        return None
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    return {k: v for k in FIELDS.values() if isinstance(v := doc.get(k), str)}


def matches(q: Query, key: bytes | None, value: bytes | None) -> bool:
    if q.field == "uuid" and key is not None and key.decode("utf-8", "replace").strip().lower() == q.q:
        return True
    found = event_fields(value)
    if found is None:
        return False
    got = found.get(FIELDS[q.field])
    if got is None:
        return False
    if q.field == "filename":
        return q.q.casefold() in got.casefold()
    if q.field == "uuid":
        return got.strip().lower() == q.q
    return got == q.q  # owner and gallery ids: exact


# -- pending ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """Records of one partition the group has not committed past: [start, end)."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def windows(report: StatusReport, topics: Topics, q: Query) -> list[Window]:
    """The lag windows of the job and retry topics as of the report's round; for a UUID only
    the partition its key hashes to."""
    names = {topics.job(j) for j in Job} | {topics.retry(j) for j in Job}
    out: list[Window] = []
    for name, t in sorted(report.topics.items()):
        if name not in names or not t.exists:
            continue
        only = partition_for(q.q.encode(), len(t.partitions)) if q.field == "uuid" and t.partitions else None
        for p in t.partitions:
            if only is not None and p.partition != only:
                continue
            start = max(p.committed if p.committed is not None else p.begin, p.begin)
            if p.end > start:
                out.append(Window(name, p.partition, start, p.end))
    return out


def plan(ws: Iterable[Window], per_partition: int, total: int) -> list[Window]:
    """Each window cut to ``per_partition`` records, then to a fair share of ``total``
    (the smallest windows first, what they leave goes to the others). Reads start at the
    committed offset: the oldest waiting records are the ones searched."""
    items = sorted(ws, key=lambda w: (min(w.size, per_partition), w.topic, w.partition))
    out: list[Window] = []
    left = total
    for i, w in enumerate(items):
        share = left // (len(items) - i)
        n = min(w.size, per_partition, share)
        left -= n
        if n > 0:
            out.append(Window(w.topic, w.partition, w.start, w.start + n))
    return sorted(out, key=lambda w: (w.topic, w.partition))


@dataclass
class PendingResult:
    hits: list[dict[str, Any]] = field(default_factory=list)
    read: int = 0
    waiting: int = 0  # records in the lag windows
    planned: int = 0  # of those, what the caps allowed
    partitions: int = 0
    late: bool = False
    error: str | None = None
    as_of: str | None = None
    caps: tuple[int, int] = (PER_PARTITION, TOTAL)  # what the note names

    @property
    def complete(self) -> bool:
        return self.error is None and not self.late and self.read >= self.waiting

    def answer(self) -> dict[str, Any]:
        note = None
        if self.error:
            note = f"pending records not searched: {self.error}"
        elif self.late:
            note = f"partial: the deadline came after {self.read} of {self.waiting} waiting records"
        elif self.read < self.waiting:
            note = (f"partial: read the oldest {self.read} of {self.waiting} waiting records "
                    f"(at most {self.caps[0]} per partition, {self.caps[1]} in all)")
        elif len(self.hits) >= MAX_HITS:
            note = f"the first {MAX_HITS} hits shown"
        return {"read": self.read, "waiting": self.waiting, "partitions": self.partitions,
                "complete": self.complete, "as_of": self.as_of, "note": note, "error": self.error}


class PendingReader:
    """One consumer for the life of the service: it never subscribes (never joins the
    group) and never commits; it is assigned each search's windows and unassigned after."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._c: Consumer | None = None

    def _consumer(self) -> Consumer:
        if self._c is None:
            k = self.settings.kafka
            self._c = kafka.consumer(k, f"{k.group_id}.status-search", {
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50,
                "max.partition.fetch.bytes": 262144, "queued.max.messages.kbytes": 16384,
                "log_level": 2,
            })
        return self._c

    def close(self) -> None:
        if self._c is not None:
            self._c.close()
            self._c = None

    def read(self, planned: list[Window], q: Query, deadline: float, out: PendingResult) -> None:
        todo = {(w.topic, w.partition): w for w in planned}
        if not todo:
            return
        c = self._consumer()
        try:
            c.assign([TopicPartition(w.topic, w.partition, w.start) for w in planned])
            while todo:
                left = deadline - time.monotonic()
                if left <= 0:
                    out.late = True
                    return
                for m in c.consume(500, timeout=min(0.2, left)):
                    if m.error() is not None:
                        continue
                    tp = (m.topic() or "", m.partition() or 0)
                    w = todo.get(tp)
                    off = m.offset() or 0
                    if w is None or off >= w.end:
                        self._done(c, tp, todo)
                        continue
                    out.read += 1
                    if len(out.hits) < MAX_HITS and matches(q, m.key(), m.value()):
                        kind, ms = m.timestamp()
                        out.hits.append(pending_hit(tp[0], tp[1], off, m.key(), m.value(),
                                                    ms / 1000 if kind and ms >= 0 else None))
                    if off + 1 >= w.end:
                        self._done(c, tp, todo)
        except KafkaException as exc:
            self.close()
            out.error = f"Kafka error: {exc}"
        finally:
            if self._c is not None:
                # A pause outlives the assignment in librdkafka: undone before the next search.
                self._c.resume([TopicPartition(w.topic, w.partition) for w in planned])
                self._c.unassign()


    @staticmethod
    def _done(c: Consumer, tp: tuple[str, int], todo: dict[tuple[str, int], Window]) -> None:
        # Paused, not left assigned: a finished partition fetches nothing more meanwhile.
        if todo.pop(tp, None) is not None:
            c.pause([TopicPartition(tp[0], tp[1])])


def _uuid_of(key: bytes | None, value: bytes | None) -> str | None:
    found = event_fields(value) or {}
    if "uuid" in found:
        return found["uuid"][:64]
    return key.decode("utf-8", "replace")[:64] if key else None


def _type_of(value: bytes | None) -> str | None:
    if not value or len(value) > MAX_VALUE:
        return None
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError):
        return None
    t = doc.get("type") if isinstance(doc, dict) else None
    return t[:40] if isinstance(t, str) else None


def pending_hit(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                ts: float | None) -> dict[str, Any]:
    return {"state": "pending", "uuid": _uuid_of(key, value), "type": _type_of(value),
            "topic": topic, "partition": partition, "offset": offset, "timestamp": ts}


# -- dead letters ----------------------------------------------------------------------------
def dead_letter_hits(entries: Iterable[DeadLetterEntry], states: Mapping[str, dict[str, Any]],
                     q: Query, limit: int = MAX_DEAD) -> dict[str, Any]:
    """Every dead letter the failed index knows (resolved ones too: the detail shows them),
    compared on its record's key and value; at most ``limit`` compared."""
    hits: list[dict[str, Any]] = []
    scanned = 0
    total = 0
    for e in entries:
        total += 1
        if scanned >= limit:
            continue
        scanned += 1
        if len(hits) < MAX_HITS and (matches(q, e.key, e.value)
                                     or (q.field == "uuid" and e.uuid == q.q)):
            status = states.get(e.id, {}).get("status") or "open"
            hits.append({"state": "dead letter", "uuid": e.uuid, "id": e.id, "resolution": status,
                         "topic": e.dlq_topic, "partition": e.dlq_partition, "offset": e.dlq_offset,
                         "source": f"{e.source_topic}/{e.source_partition}@{e.source_offset}"
                         if e.source_topic else None,  # a dead letter without its origin headers
                         "error_class": e.error_class.rsplit(".", 1)[-1], "failed_at": e.failed_at,
                         "link": f"/failed#id={e.id}"})
    note = None
    if scanned < total:
        note = f"partial: compared {scanned} of {total} dead letters"
    elif len(hits) >= MAX_HITS:
        note = f"the first {MAX_HITS} hits shown"
    return {"hits": hits, "scanned": scanned, "total": total, "complete": scanned >= total,
            "note": note, "error": None}


# -- traces ----------------------------------------------------------------------------------
def trace_hits(rows: list[dict[str, object]], uuid: str) -> list[dict[str, Any]]:
    return [{"state": "traced", "uuid": uuid, "job": r.get("job"), "attempt": r.get("attempt"),
             "method": r.get("method_tried"), "success": r.get("success"),
             "failure_reason": r.get("failure_reason"), "timestamp": r.get("timestamp"),
             "topic": r.get("source_topic"), "partition": r.get("source_partition"),
             "offset": r.get("source_offset")} for r in rows[:MAX_TRACE_ROWS]]


# -- the service side ------------------------------------------------------------------------
class Searcher:
    """One search at a time; answers kept ``ttl_s`` so a repeated search costs nothing."""

    def __init__(self, settings: Settings, *, per_partition: int = PER_PARTITION, total: int = TOTAL,
                 ttl_s: float = 10.0, size: int = 64,
                 timeline: Callable[[str], list[dict[str, object]]] | None = None) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings.kafka)
        self.per_partition = per_partition
        self.total = total
        self.ttl_s = ttl_s
        self.size = size
        self.deadline_s = max(3.0, 2 * settings.status.kafka_timeout_s)
        self.lock = asyncio.Lock()
        self.pending = PendingReader(settings)
        self.kafka = ThreadPoolExecutor(1, thread_name_prefix="status-search")
        self.traces = ThreadPoolExecutor(1, thread_name_prefix="status-search-traces")
        self._timeline = timeline or self._store_timeline
        self._cache: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()
        self.searches = 0  # searches that ran (not answered from the cache)

    def close(self) -> None:
        self.kafka.shutdown(wait=False, cancel_futures=True)
        self.traces.shutdown(wait=False, cancel_futures=True)
        self.pending.close()

    def cached(self, q: Query) -> dict[str, Any] | None:
        hit = self._cache.get(q.key)
        if hit is None or time.monotonic() - hit[0] > self.ttl_s:
            return None
        return hit[1]

    def _store_timeline(self, uuid: str) -> list[dict[str, object]]:
        from tracestore.reader import open_reader  # heavy (chDB), optional

        reader = open_reader(self.settings)
        try:
            return reader.timeline(uuid)
        finally:
            reader.close()

    async def search(self, q: Query, svc: StatusService, con: console_mod.Console) -> dict[str, Any]:
        started = time.monotonic()
        self.searches += 1
        pending, dead, traces = await asyncio.gather(
            self._pending(q, svc), self._dead(q, con), self._traces(q))
        hits = [*pending.hits, *dead["hits"], *traces["hits"]]
        sources = {"pending": pending.answer(),
                   "dead_letters": {k: v for k, v in dead.items() if k != "hits"},
                   "traces": {k: v for k, v in traces.items() if k != "hits"}}
        answer = {"field": q.field, "q": q.q, "hits": hits, "sources": sources,
                  "partial": not all(s.get("complete", True) for s in sources.values()),
                  "took_s": round(time.monotonic() - started, 3),
                  "limits": {"per_partition": self.per_partition, "total": self.total,
                             "deadline_s": self.deadline_s, "hits_per_source": MAX_HITS}}
        if any(src.get("error") for name, src in sources.items() if name != "traces"):
            return answer  # Kafka failed a source: asking again soon should ask Kafka again
        self._cache[q.key] = (time.monotonic(), answer)
        self._cache.move_to_end(q.key)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return answer

    async def _pending(self, q: Query, svc: StatusService) -> PendingResult:
        out = PendingResult(caps=(self.per_partition, self.total))
        report = await svc.report()
        out.as_of = report.checked_at.isoformat()
        if not report.kafka.reachable:
            out.error = report.kafka.error or "Kafka unreachable"
            return out
        ws = windows(report, self.topics, q)
        out.waiting = sum(w.size for w in ws)
        planned = plan(ws, self.per_partition, self.total)
        out.planned = sum(w.size for w in planned)
        out.partitions = len(planned)
        deadline = time.monotonic() + self.deadline_s
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(
                self.kafka, self.pending.read, planned, q, deadline, out), self.deadline_s + 1.0)
        except TimeoutError:
            out.late = True
        return out

    async def _dead(self, q: Query, con: console_mod.Console) -> dict[str, Any]:
        def find() -> dict[str, Any]:
            b = con.backend
            return dead_letter_hits(list(b.known().values()), b.states(), q)
        try:
            return await asyncio.wait_for(con.read(find), self.deadline_s)
        except TimeoutError:
            problem = f"the failed index did not answer within {self.deadline_s:g} s"
        except console_mod.KAFKA_ERRORS as exc:
            problem = f"Kafka error: {exc}"
        return {"hits": [], "scanned": 0, "total": None, "complete": False,
                "note": f"dead letters not searched: {problem}", "error": problem}

    async def _traces(self, q: Query) -> dict[str, Any]:
        if q.field != "uuid":
            return {"hits": [], "searched": False, "complete": True, "error": None,
                    "note": "traces are searched by image UUID only"}
        loop = asyncio.get_running_loop()
        try:
            rows = await asyncio.wait_for(loop.run_in_executor(self.traces, self._timeline, q.q),
                                          self.deadline_s)
        except TimeoutError:
            problem = f"no answer within {self.deadline_s:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure of the optional store is reported
            problem = f"{type(exc).__name__}: {exc}"
        else:
            many = len(rows) > MAX_TRACE_ROWS
            note = f"the first {MAX_TRACE_ROWS} of {len(rows)} rows shown" if many else None
            return {"hits": trace_hits(rows, q.q), "searched": True, "rows": len(rows),
                    "complete": True, "error": None, "note": note}
        # The store is optional: its absence is said, and does not make the answer partial.
        return {"hits": [], "searched": True, "rows": None, "complete": True,
                "error": f"traces store unavailable: {problem}", "note": None}


SEARCHER: web.AppKey[Searcher] = web.AppKey("searcher", Searcher)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status,
                        content_type="application/json", headers={"Cache-Control": "no-store"})


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "search.html", headers={"Cache-Control": "no-cache"})


async def api_search(request: web.Request, svc_key: web.AppKey[StatusService]) -> web.Response:
    try:
        q = parse(request.query)
    except BadSearch as exc:
        return _json({"error": str(exc)}, 400)
    s = request.app[SEARCHER]
    answer = s.cached(q)
    if answer is not None:
        return _json({**answer, "cached": True})
    try:
        # One at a time: searches queued behind a slow one wait, then are told to come back.
        await asyncio.wait_for(s.lock.acquire(), s.deadline_s)
    except TimeoutError:
        return _json({"error": "another search is still running; try again shortly"}, 429)
    try:
        answer = s.cached(q)
        if answer is not None:
            return _json({**answer, "cached": True})
        answer = await s.search(q, request.app[svc_key], request.app[console_mod.CONSOLE])
    finally:
        s.lock.release()
    return _json({**answer, "cached": False})


def setup(app: web.Application, settings: Settings, svc_key: web.AppKey[StatusService],
          searcher: Searcher | None = None) -> None:
    """Routes; after ``console.setup`` (the dead letters come from its index)."""
    app[SEARCHER] = searcher or Searcher(settings)

    async def handle(request: web.Request) -> web.Response:
        return await api_search(request, svc_key)

    app.router.add_get("/search", page)
    app.router.add_get("/api/search", console_mod.local(handle))

    async def close(app: web.Application) -> None:
        app[SEARCHER].close()

    app.on_cleanup.append(close)


