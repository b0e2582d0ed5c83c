"""The failed-jobs page's data: every dead letter and the resolution state, read once from
the start and then only what is new, so a page of 10,000 open dead letters costs no full
topic scan per request. Records become entries, fold into state and are filtered by
streams/replay.py's own code (``entry_from_message``, ``apply_state``, ``open_entries``,
``Filter``), the code the ``failed`` and ``replay`` commands run.

The pure half (query parsing, paging, detail, selection digests) is tested on its own; the
index (``FailedIndex``) is the only part here that talks to Kafka.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid as uuid_mod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from streams import headers as dl
from streams import kafka
from streams.errors import KafkaUnavailable
from streams.kafka import TopicTail
from streams.replay import (
    RESOLVED,
    DeadLetterEntry,
    Filter,
    apply_state,
    entry_from_message,
    open_entries,
)
from streams.settings import KafkaSettings
from streams.topics import JOB_TOPICS, Job, Topics

TP = tuple[str, int]
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
MAX_TEXT = 200  # characters of a filter's free text
MAX_VALUE = 4096  # bytes of the original record shown in a detail view
MAX_HEADER = 4096  # characters of one header value shown
MAX_LINEAGE = 20


class BadQuery(ValueError):
    """A filter or paging parameter that cannot be used; its message says why (HTTP 400)."""


@dataclass(frozen=True)
class Query:
    filter: Filter
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE


# -- parsing ---------------------------------------------------------------------------------
def parse_since(value: str, now: datetime) -> datetime:
    """``2026-11-28T10:00`` (UTC unless it says) or a duration back from ``now``: 30m, 2h, 7d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    v = value.strip()
    if v and v[-1] in units and v[:-1].isdigit():
        try:
            return now - timedelta(seconds=int(v[:-1]) * units[v[-1]])
        except OverflowError:
            raise BadQuery(f"since={value[:40]!r}: further back than any date") from None
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise BadQuery(f"since={value[:40]!r}: use an ISO time or 30m / 2h / 7d") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_topics(value: str | Iterable[str], topics: Topics) -> tuple[str, ...]:
    """Topic names as the page sends them: a job (``preview``), its topic's name with or
    without this deployment's prefix; comma-separated in a query string."""
    raw = value.split(",") if isinstance(value, str) else list(value)
    known: dict[str, str] = {}
    for job in Job:
        full = topics.job(job)
        for alias in (job.value, JOB_TOPICS[job], full):
            known[alias] = full
    out: list[str] = []
    for item in raw:
        if not isinstance(item, str):
            raise BadQuery("topic: a topic name or a list of them")
        name = item.strip()
        if not name:
            continue
        if name not in known:
            jobs = ", ".join(j.value for j in Job)
            raise BadQuery(f"topic={name[:60]!r} is not a job topic (one of {jobs})")
        out.append(known[name])
    return tuple(dict.fromkeys(out))


def _text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadQuery(f"{name}: text expected")
    v = value.strip()
    if len(v) > MAX_TEXT:
        raise BadQuery(f"{name}: at most {MAX_TEXT} characters")
    return v or None


def _uuid(value: object) -> str | None:
    v = _text("uuid", value)
    if v is None:
        return None
    try:
        return str(uuid_mod.UUID(v))
    except ValueError:
        raise BadQuery(f"uuid={v[:60]!r} is not a UUID") from None


def _flag(name: str, value: object) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise BadQuery(f"{name}: use 1 or 0 (true or false)")


def _int(name: str, value: object, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise BadQuery(f"{name}: a whole number expected")
    try:
        n = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise BadQuery(f"{name}={str(value)[:20]!r}: a whole number expected") from None
    if not lo <= n <= hi:
        raise BadQuery(f"{name}={n}: must be between {lo} and {hi}")
    return n


def parse_ids(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise BadQuery("ids: a list of dead-letter ids")
    if len(value) > 10_000:
        raise BadQuery("ids: at most 10000 per request; use a filter for more")
    for i in value:
        if not i or len(i) > 64:
            raise BadQuery(f"ids: {i[:70]!r} is not a dead-letter id")
    return tuple(dict.fromkeys(value))


FILTER_FIELDS = ("topic", "error", "since", "uuid", "poison", "owner", "gallery")


def parse_filter(params: Mapping[str, object], topics: Topics, now: datetime) -> Filter:
    """A ``Filter`` from query parameters or a JSON object; unknown names are refused."""
    extra = sorted(set(params) - set(FILTER_FIELDS) - {"page", "per_page", "refresh"})
    if extra:
        raise BadQuery(f"unknown filter field(s): {', '.join(e[:30] for e in extra)} "
                       f"(known: {', '.join(FILTER_FIELDS)})")
    topic = params.get("topic")
    if topic is not None and not isinstance(topic, str | list):
        raise BadQuery("topic: a topic name or a list of them")
    since = _text("since", params.get("since"))
    return Filter(
        topics=parse_topics(topic, topics) if topic else (),
        error=_text("error", params.get("error")),
        since=parse_since(since, now) if since else None,
        uuid=_uuid(params.get("uuid")),
        poison=_flag("poison", params.get("poison")),
        owner=_text("owner", params.get("owner")),
        gallery=_text("gallery", params.get("gallery")),
    )


def parse_query(params: Mapping[str, str], topics: Topics, now: datetime) -> Query:
    return Query(
        filter=parse_filter(params, topics, now),
        page=_int("page", params.get("page"), 1, 1, 1_000_000),
        per_page=_int("per_page", params.get("per_page"), DEFAULT_PER_PAGE, 1, MAX_PER_PAGE),
    )


def filter_json(f: Filter) -> dict[str, object]:
    """The filter as the page shows it back (what the selection was)."""
    return {"topic": list(f.topics), "error": f.error,
            "since": f.since.isoformat() if f.since else None, "uuid": f.uuid,
            "poison": f.poison, "owner": f.owner, "gallery": f.gallery, "ids": list(f.ids)}


# -- answering -------------------------------------------------------------------------------
def matches(f: Filter, e: DeadLetterEntry) -> bool:
    try:
        return f.match(e)
    except ValueError:  # a failed_at header that is not a time: it cannot be "since" anything
        return False


def select(entries: Iterable[DeadLetterEntry], f: Filter) -> list[DeadLetterEntry]:
    return [e for e in entries if matches(f, e)]


def page_of(entries: list[DeadLetterEntry], q: Query) -> dict[str, Any]:
    """One page, newest failure first (the oldest-first order of ``open_entries`` reversed)."""
    picked = select(entries, q.filter)
    picked.reverse()
    total = len(picked)
    start = (q.page - 1) * q.per_page
    return {
        "total": total, "page": q.page, "per_page": q.per_page,
        "pages": max(1, -(-total // q.per_page)),
        "filter": filter_json(q.filter),
        "items": [row(e) for e in picked[start:start + q.per_page]],
    }


def row(e: DeadLetterEntry) -> dict[str, object]:
    return {**e.summary(), "error_fqcn": e.error_class, "worker": e.worker,
            "first_failed_at": e.first_failed_at, "job": e.job.value}


def selection_digest(ids: Iterable[str]) -> str:
    """What a confirm must carry: the same ids as the dry run the operator saw."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:32]


def _clip(data: bytes | None, limit: int) -> dict[str, object]:
    if data is None:
        return {"text": None, "size": 0, "truncated": False}
    cut = data[:limit]
    return {"text": cut.decode("utf-8", "replace"), "size": len(data), "truncated": len(data) > limit}


def detail(e: DeadLetterEntry, by_id: Mapping[str, DeadLetterEntry],
           states: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Everything the page shows of one dead letter; the record's value clipped to
    ``MAX_VALUE`` bytes and shown as text only."""
    state = states.get(e.id, {})
    lineage: list[dict[str, object]] = []
    seen = {e.id}
    cur = e.replay_of
    while cur and cur not in seen and len(lineage) < MAX_LINEAGE:
        seen.add(cur)
        prev = by_id.get(cur)
        prev_state = states.get(cur, {})
        if prev is None:
            lineage.append({"id": cur, "known": False, "state": prev_state.get("status")})
            break
        lineage.append({"id": cur, "known": True, "failed_at": prev.failed_at,
                        "error_class": prev.error_class, "error_message": prev.error_message[:MAX_TEXT],
                        "state": prev_state.get("status"), "how": prev_state.get("how"),
                        "resolved_at": prev_state.get("at"), "by": prev_state.get("by")})
        cur = prev.replay_of
    replays = sorted(x.id for x in by_id.values() if x.replay_of == e.id)
    return {
        **row(e),
        "state": state.get("status") or "open",
        "resolution": state or None,
        "error_stack": e.headers.get(dl.H_EXC_STACK, "")[:MAX_HEADER],
        "source": {"topic": e.source_topic, "partition": e.source_partition, "offset": e.source_offset},
        "key": _clip(e.key, 200),
        "value": _clip(e.value, MAX_VALUE),
        "headers": {k: v[:MAX_HEADER] for k, v in sorted(e.headers.items())},
        "lineage": lineage,
        "replayed_as": replays,
    }


# -- the index -------------------------------------------------------------------------------
class FailedIndex:
    """Every dead letter (newest copy per id) and the resolution state, caught up to the end
    offsets each ``refresh`` sees. Not thread-safe by itself: one thread calls it at a time
    (the console's executor has one)."""

    def __init__(self, kafka: KafkaSettings, topics: Topics) -> None:
        self.kafka = kafka
        self.topics = topics
        self.jobs = {topics.dead_letter(j): j for j in Job}
        self.by_id: dict[str, DeadLetterEntry] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self._next: dict[TP, int] = {}
        self.refreshed_at = 0.0  # monotonic
        self.version = 0
        self._open: tuple[int, list[DeadLetterEntry]] | None = None
        self._t: TopicTail | None = None
        self.lock = threading.Lock()

    def _tail(self) -> TopicTail:
        if self._t is None:
            self._t = TopicTail(kafka.reader_config(
                self.kafka, f"prophoto-ingest-failed-page-{uuid_mod.uuid4().hex[:8]}"),
                [*self.jobs, self.topics.dead_letter_state])
            self._t.next = self._next
        return self._t

    def close(self) -> None:
        if self._t is not None:
            self._t.close()
            self._t = None

    def refresh(self, max_age_s: float = 0.0, timeout_s: float = 30.0) -> bool:
        """Catch up unless the last catch-up is younger than ``max_age_s``; True if it read."""
        with self.lock:
            if max_age_s > 0 and time.monotonic() - self.refreshed_at < max_age_s:
                return False
            try:
                self._catch_up(timeout_s)
            except KafkaUnavailable:
                self.close()  # a client that lived through a broker restart may never answer
                raise
            self.refreshed_at = time.monotonic()
            return True

    def _catch_up(self, timeout_s: float) -> None:
        tail = self._tail()
        names = tail.topics
        if not tail.read(time.monotonic() + timeout_s, lambda m: self._apply(m.topic() or "", m)):
            raise KafkaUnavailable(f"timed out reading {sorted(names)}")

    def _apply(self, topic: str, m: Any) -> None:
        self.version += 1
        if topic == self.topics.dead_letter_state:
            apply_state(self.states, m)
            return
        e = entry_from_message(m, self.jobs[topic])
        self.by_id[e.id] = e

    def open(self) -> list[DeadLetterEntry]:
        """Unresolved entries, oldest first (``open_entries``), sorted once per change."""
        if self._open is None or self._open[0] != self.version:
            self._open = (self.version, open_entries(self.by_id, self.states))
        return self._open[1]

    def is_resolved(self, dead_letter_id: str) -> bool:
        return self.states.get(dead_letter_id, {}).get("status") == RESOLVED
