"""Search without Kafka: query checks, matching on hostile values, the read caps and the
deadline over fake records, and /api/search through the real app (fake probe, in-memory
failed index, fake trace timeline)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaException, TopicPartition

from status import search, web
from status.search import BadSearch, PendingReader, PendingResult, Query, Window
from status.service import StatusService
from streams.settings import Settings
from streams.topics import Job, Topics, partition_for
from tests.unit.test_failed_console import FakeBackend
from tests.unit.test_failed_view import entry
from tests.unit.test_status_web import FakeProbe, make_settings

UUID = "5d0c1e2a-7b3f-4c8d-9e1f-00000000abcd"


def event(uuid: str = UUID, owner: str = "owner-7", gallery: str = "gal-1",
          name: str = "Wedding_0042.CR3") -> bytes:
    return json.dumps({"schema_version": 1, "type": "upload.received", "uuid": uuid,
                       "path": "uploads/5d/x.cr3", "original_filename": name, "size": 10,
                       "owner_id": owner, "gallery_id": gallery}).encode()


# -- the query -------------------------------------------------------------------------------
@pytest.mark.parametrize("params, says", [
    ({"field": "colour", "q": "red"}, "search by one of uuid, owner, gallery, filename"),
    ({"q": "abc"}, "field=''"),
    ({"field": "owner"}, "say what to search for"),
    ({"field": "owner", "q": "   "}, "say what to search for"),
    ({"field": "filename", "q": "ab"}, "at least 3 characters"),
    ({"field": "filename", "q": "x" * 256}, "at most 255 characters"),
    ({"field": "uuid", "q": "5d0c1e2a"}, "is not a UUID"),
    ({"field": "owner", "q": "o", "limit": "5"}, "unknown parameter(s): limit"),
])
def test_bad_queries_say_why(params: dict[str, str], says: str) -> None:
    with pytest.raises(BadSearch) as err:
        search.parse(params)
    assert says in str(err.value)


def test_a_uuid_is_made_canonical() -> None:
    assert search.parse({"field": "uuid", "q": f" {UUID.upper()} "}) == Query("uuid", UUID)
    assert search.parse({"field": "owner", "q": " o "}) == Query("owner", "o")


# -- matching --------------------------------------------------------------------------------
def test_each_field_matches_its_own_event_field() -> None:
    v = event()
    assert search.matches(Query("owner", "owner-7"), b"k", v)
    assert not search.matches(Query("owner", "owner-"), b"k", v)  # ids match whole
    assert not search.matches(Query("owner", "gal-1"), b"k", v)  # not another field's value
    assert search.matches(Query("gallery", "gal-1"), b"k", v)
    assert search.matches(Query("filename", "wedding_00"), b"k", v)  # part, any case
    assert not search.matches(Query("filename", "0043"), b"k", v)
    assert search.matches(Query("uuid", UUID), b"other", v)
    assert search.matches(Query("uuid", UUID), UUID.encode(), b"not json")  # the key alone


@pytest.mark.parametrize("value", [
    None, b"", b"\xff\xfe", b"[1, 2]", b'"owner-7"', b"[" * 100_000, b"{" + b" " * 70_000 + b"}",
    json.dumps({"owner_id": ["owner-7"]}).encode(), json.dumps({"owner_id": 7}).encode(),
])
def test_values_that_are_not_events_match_nothing(value: bytes | None) -> None:
    assert search.matches(Query("owner", "owner-7"), b"k", value) is False
    assert search.matches(Query("owner", "7"), b"k", value) is False


# -- windows and caps ------------------------------------------------------------------------
def test_caps_cut_each_partition_then_share_the_total() -> None:
    ws = [Window("t", 0, 100, 110), Window("t", 1, 0, 5000), Window("t", 2, 50, 3050), Window("t", 3, 7, 7)]
    planned = search.plan(ws, per_partition=1000, total=1500)
    assert [(w.partition, w.start, w.size) for w in planned] == [(0, 100, 10), (1, 0, 745), (2, 50, 745)]
    assert sum(w.size for w in planned) == 1500 - 0  # every record the total allows is used
    assert search.plan(ws, per_partition=1000, total=1_000_000)[1].size == 1000


def test_windows_start_at_the_committed_offset_and_a_uuid_reads_one_partition() -> None:
    topics = Topics.from_settings(make_settings().kafka)

    class R:  # the two fields windows() reads
        def __init__(self, parts: dict[str, list[tuple[int, int, int, int | None]]]) -> None:
            self.topics = {name: T(ps) for name, ps in parts.items()}

    class T:
        exists = True

        def __init__(self, ps: list[tuple[int, int, int, int | None]]) -> None:
            self.partitions = [P(*p) for p in ps]

    class P:
        def __init__(self, partition: int, begin: int, end: int, committed: int | None) -> None:
            self.partition, self.begin, self.end, self.committed = partition, begin, end, committed

    rep: Any = R({topics.job(Job.PREVIEW): [(0, 0, 10, 4), (1, 0, 3, 3)],
                  topics.retry(Job.PREVIEW): [(0, 5, 9, None), (1, 6, 8, 2)],
                  topics.dead_letter(Job.PREVIEW): [(0, 0, 9, None), (1, 0, 9, None)]})
    got = search.windows(rep, topics, Query("owner", "o"))
    assert [(w.topic, w.partition, w.start, w.end) for w in got] == [
        (topics.job(Job.PREVIEW), 0, 4, 10),
        (topics.retry(Job.PREVIEW), 0, 5, 9),  # never committed: from the log start
        (topics.retry(Job.PREVIEW), 1, 6, 8),  # committed before the log start
    ]  # nothing of the dead-letter topic, nothing of a partition without lag
    only = partition_for(UUID.encode(), 2)
    by_uuid = search.windows(rep, topics, Query("uuid", UUID))
    assert by_uuid and {w.partition for w in by_uuid} == {only}


# -- the read --------------------------------------------------------------------------------
class Rec:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes, key: bytes = b"k") -> None:
        self.t, self.p, self.o, self.v, self.k = topic, partition, offset, value, key

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def key(self) -> bytes:
        return self.k

    def value(self) -> bytes:
        return self.v

    def timestamp(self) -> tuple[int, int]:
        return (TIMESTAMP_CREATE_TIME, 1_700_000_000_000 + self.o)


class FakeConsumer:
    """Hands out each assigned partition's records from its assigned offset, two at a time."""

    def __init__(self, logs: dict[tuple[str, int], list[bytes]], fail: bool | str = False) -> None:
        self.logs = logs
        self.pos: dict[tuple[str, int], int] = {}
        self.handed = 0
        self.fail = fail
        self.unassigned = 0
        self.resumed = 0

    def assign(self, tps: list[TopicPartition]) -> None:
        if self.fail == "assign":
            raise KafkaException("unknown partition")
        self.pos = {(tp.topic, tp.partition): tp.offset for tp in tps}

    def pause(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self.pos.pop((tp.topic, tp.partition), None)

    def resume(self, tps: list[TopicPartition]) -> None:
        self.resumed = len(tps)

    def unassign(self) -> None:
        self.unassigned += 1
        self.pos = {}

    def consume(self, n: int, timeout: float) -> list[Rec]:
        if self.fail is True:
            raise KafkaException("broker went away")
        out: list[Rec] = []
        for tp, at in self.pos.items():
            log = self.logs.get(tp, [])
            for off in range(at, min(at + 2, len(log))):
                out.append(Rec(tp[0], tp[1], off, log[off]))
            self.pos[tp] = min(at + 2, len(log))
        self.handed += len(out)
        return out

    def close(self) -> None:
        pass


def reader(consumer: FakeConsumer) -> PendingReader:
    r = PendingReader(make_settings())
    r._c = consumer  # type: ignore[assignment]
    return r


def test_the_read_stops_at_each_window_end_and_finds_the_match() -> None:
    logs = {("t", 0): [event(owner=f"o{i}") for i in range(50)], ("t", 1): [event(owner="o3")] * 9}
    c = FakeConsumer(logs)
    out = PendingResult(waiting=59)
    reader(c).read([Window("t", 0, 2, 6), Window("t", 1, 0, 9)], Query("owner", "o3"),
                   time.monotonic() + 60, out)
    assert out.read == 4 + 9  # not one record past a window's end counted
    assert [(h["partition"], h["offset"]) for h in out.hits] == [(0, 3), *[(1, i) for i in range(9)]]
    assert out.hits[0] == {"state": "pending", "uuid": UUID, "type": "upload.received", "topic": "t",
                           "partition": 0, "offset": 3, "timestamp": 1_700_000_000.003}
    assert c.handed <= 4 + 9 + 2  # a finished partition is paused: one fetch beyond its end
    assert c.unassigned == 1 and c.resumed == 2
    answer = out.answer()
    assert answer["complete"] is False and answer["note"].startswith("partial: read the oldest 13 of 59")


def test_a_past_deadline_is_partial_and_says_so() -> None:
    out = PendingResult(waiting=10)
    reader(FakeConsumer({("t", 0): [event()] * 10})).read(
        [Window("t", 0, 0, 10)], Query("owner", "owner-7"), time.monotonic() - 1, out)
    assert out.late and out.read == 0
    assert out.answer()["note"] == "partial: the deadline came after 0 of 10 waiting records"


@pytest.mark.parametrize("fail, says", [(True, "broker went away"), ("assign", "unknown partition")])
def test_a_kafka_error_is_reported_not_raised(fail: bool | str, says: str) -> None:
    out = PendingResult(waiting=3)
    reader(FakeConsumer({}, fail=fail)).read([Window("t", 0, 0, 3)], Query("owner", "x"),
                                             time.monotonic() + 60, out)
    assert out.error is not None and says in out.error
    assert out.answer()["complete"] is False


def test_dead_letters_match_on_their_record_and_link_to_their_detail() -> None:
    es = [entry(i, value=event(owner=f"o{i % 3}", name=f"IMG_{i}.jpg")) for i in range(9)]
    es.append(entry(20, value=b"\x00 not json at all"))
    got = search.dead_letter_hits(es, {"id0003": {"status": "resolved"}}, Query("owner", "o0"))
    assert [h["id"] for h in got["hits"]] == ["id0000", "id0003", "id0006"]
    assert got["hits"][1]["resolution"] == "resolved" and got["hits"][0]["resolution"] == "open"
    assert got["hits"][0]["link"] == "/failed#id=id0000"
    assert got["hits"][0]["source"] == f"{es[0].source_topic}/0@0"
    assert (got["scanned"], got["total"], got["complete"]) == (10, 10, True)
    capped = search.dead_letter_hits(es, {}, Query("filename", "img_"), limit=4)
    assert len(capped["hits"]) == 4 and capped["complete"] is False
    assert capped["note"] == "partial: compared 4 of 10 dead letters"


# -- through the app -------------------------------------------------------------------------
Client = Callable[..., Any]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    made: list[TestClient[Any, Any]] = []

    async def make(settings: Settings, backend: FakeBackend,
                   searcher: search.Searcher) -> TestClient[Any, Any]:
        app = web.create_app(settings, StatusService(settings, FakeProbe(settings)), sample=False,
                             failed_backend=backend, searcher=searcher)
        c: TestClient[Any, Any] = TestClient(TestServer(app))
        await c.start_server()
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


def searcher(s: Settings, logs: dict[tuple[str, int], list[bytes]],
             timeline: Callable[[str], list[dict[str, object]]] | None = None) -> search.Searcher:
    def no_store(uuid: str) -> list[dict[str, object]]:
        raise ConnectionError("trace store down")

    out = search.Searcher(s, per_partition=3, total=100, timeline=timeline or no_store)
    out.pending._c = FakeConsumer(logs)  # type: ignore[assignment]
    return out


async def test_api_search_across_the_three_sources(client: Client) -> None:
    s = make_settings()
    t = Topics.from_settings(s.kafka)
    preview = t.job(Job.PREVIEW)  # FakeProbe: partition 0 committed 4 of 10
    logs = {(preview, 0): [event(name="other.jpg")] * 5 + [event(name="Wedding_0042.CR3")] * 5,
            (t.job(Job.INGEST), 0): [event(name="x.jpg")] * 7}  # committed 5 of 7
    dead = [entry(1, value=event(name="wedding_0042.cr3")), entry(2, value=event(name="x.jpg"))]
    c = await client(s, FakeBackend(dead), searcher(s, logs))
    r = await c.get("/api/search", params={"field": "filename", "q": "wedding_0042"})
    assert r.status == 200
    body = await r.json()
    assert [(h["state"], h["offset"]) for h in body["hits"]] == [
        ("pending", 5), ("pending", 6), ("dead letter", 1)]
    pending = body["sources"]["pending"]
    # 6 waiting on preview/0 and 2 on ingest/0; at most 3 per partition read
    assert (pending["read"], pending["waiting"], pending["complete"]) == (5, 8, False)
    assert body["partial"] is True
    assert pending["note"] == ("partial: read the oldest 5 of 8 waiting records "
                               "(at most 3 per partition, 100 in all)")  # this searcher's caps
    assert body["sources"]["traces"]["searched"] is False
    assert body["cached"] is False
    assert "Wedding" not in json.dumps(body["hits"])  # where it is, not what it says
    again = await (await c.get("/api/search", params={"field": "filename", "q": "wedding_0042"})).json()
    assert again["cached"] is True and c.server.app[search.SEARCHER].searches == 1


async def test_api_search_by_uuid_asks_the_traces_and_a_store_down_is_said(client: Client) -> None:
    s = make_settings()
    seen: list[str] = []

    def timeline(uuid: str) -> list[dict[str, object]]:
        seen.append(uuid)
        return [{"job": "preview", "attempt": 1, "method_tried": "pillow", "success": True,
                 "source_topic": "u-ingest-preview", "source_partition": 1, "source_offset": 3}]

    c = await client(s, FakeBackend([]), searcher(s, {}, timeline))
    body = await (await c.get("/api/search", params={"field": "uuid", "q": UUID.upper()})).json()
    assert seen == [UUID]
    assert [(h["state"], h["partition"], h["offset"]) for h in body["hits"]] == [("traced", 1, 3)]

    down = await client(s, FakeBackend([]), searcher(s, {}))
    body = await (await down.get("/api/search", params={"field": "uuid", "q": UUID})).json()
    assert body["sources"]["traces"]["error"] == "traces store unavailable: ConnectionError: trace store down"
    assert body["hits"] == []


async def test_api_search_400s_and_the_token(client: Client) -> None:
    s = make_settings(token="tok-S1")
    c = await client(s, FakeBackend([]), searcher(s, {}))
    auth = {"Authorization": "Bearer tok-S1"}
    assert (await c.get("/api/search", params={"field": "owner", "q": "o"})).status == 401
    for params, says in [({"field": "nope", "q": "abc"}, "search by one of"),
                         ({"field": "filename", "q": "a"}, "at least 3"),
                         ({"field": "owner", "q": "o" * 300}, "at most 255")]:
        r = await c.get("/api/search", params=params, headers=auth)
        assert r.status == 400 and says in (await r.json())["error"]
    assert (await c.get("/api/search", params={"field": "owner", "q": "o"}, headers=auth)).status == 200
    page = await c.get("/search")  # the page asks for the token itself
    assert page.status == 200 and "search.js" in await page.text()


async def test_kafka_down_is_said_and_not_kept_in_the_cache(client: Client) -> None:
    s = make_settings()
    backend = FakeBackend([])
    backend.fail = "no broker answered"
    c = await client(s, backend, searcher(s, {}))
    c.server.app[web.SERVICE].probe.fail = "no answer from 127.0.0.1:1"  # type: ignore[attr-defined]
    for _ in range(2):
        body = await (await c.get("/api/search", params={"field": "owner", "q": "o"})).json()
        assert body["cached"] is False and body["partial"] is True
        assert body["sources"]["pending"]["error"] == "no answer from 127.0.0.1:1"
        assert "no broker answered" in body["sources"]["dead_letters"]["note"]
    assert c.server.app[search.SEARCHER].searches == 2


async def test_one_search_at_a_time_the_next_is_told_to_come_back(client: Client) -> None:
    s = make_settings()
    srch = searcher(s, {})
    srch.deadline_s = 0.05  # how long a second search waits for the first
    c = await client(s, FakeBackend([]), srch)
    await srch.lock.acquire()  # a search is running
    try:
        r = await c.get("/api/search", params={"field": "owner", "q": "o"})
        assert r.status == 429 and "another search is still running" in (await r.json())["error"]
        assert srch.searches == 0
    finally:
        srch.lock.release()
    assert (await c.get("/api/search", params={"field": "owner", "q": "o"})).status == 200
    assert srch.searches == 1
