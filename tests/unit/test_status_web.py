"""The status service without Kafka: a fake probe behind the real cache, app and routes."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from status import web
from status.errors import KafkaUnreachable
from status.probe import DeadLetter, DeadLetterDepth, DeadLetterLookup, KafkaRound, Member, PartitionOffsets
from status.service import StatusService
from streams.settings import Settings
from streams.topics import Job, Topics

UUID = "0b6f0001-aaaa-4bbb-8ccc-0123456789ab"


def make_settings(**status: Any) -> Settings:
    return Settings(kafka={"topic_prefix": "u-", "group_id": "u-group", "partitions": 2},  # type: ignore[arg-type]
                    status={"sample_interval_s": 3600, **status})


class FakeProbe:
    """Answers rounds from ``lags`` ({topic: [(end, committed), ...]}); can hang or fail."""

    def __init__(self, settings: Settings) -> None:
        self.topics = Topics.from_settings(settings.kafka)
        self.rounds = 0
        self.gate: threading.Event | None = None
        self.fail: str | None = None
        self.lags: dict[str, list[tuple[int, int | None]]] = {
            self.topics.job(Job.PREVIEW): [(10, 4), (3, 3)],
            self.topics.job(Job.INGEST): [(7, 5), (0, None)],
        }
        self.members = (Member("m1", "worker-1", "/10.0.0.5", ((self.topics.job(Job.PREVIEW), 0),)),)
        self.dead = {self.topics.dead_letter(Job.PREVIEW): 2}
        self.closed = False
        self.lookups = 0

    def round(self) -> KafkaRound:
        self.rounds += 1
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail:
            raise KafkaUnreachable(self.fail)
        now = time.time()
        parts = tuple(
            PartitionOffsets(t, p, 0, end, committed, now - 2.0 if end > (committed or 0) else None)
            for t, offs in self.lags.items() for p, (end, committed) in enumerate(offs)
        )
        return KafkaRound(
            taken_at=now, duration_s=0.01, cluster_id="c1", brokers=1, group_state="STABLE",
            members=self.members, partitions=parts, missing_topics=(),
            dead_letters=DeadLetterDepth(sum(self.dead.values()), dict(self.dead), "not yet subtracted"),
            calls=6,
        )

    def lookup_dead_letters(self, uuid: str) -> DeadLetterLookup:
        self.lookups += 1
        rec = DeadLetter(self.topics.dead_letter(Job.PREVIEW), 1, 0, time.time(),
                         {"kafka_dlt-exception-fqcn": "SourceMissing"})
        return DeadLetterLookup(records=[rec] if uuid == UUID else [])

    def close(self) -> None:
        self.closed = True


ClientFactory = Callable[..., Any]


@pytest.fixture
async def client() -> AsyncIterator[ClientFactory]:
    made: list[TestClient[Any, Any]] = []

    async def make(settings: Settings, probe: FakeProbe, sample: bool = False) -> TestClient[Any, Any]:
        svc = StatusService(settings, probe)
        c: TestClient[Any, Any] = TestClient(TestServer(web.create_app(settings, svc, sample=sample)))
        await c.start_server()
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


async def test_status_document_in_the_shape_operators_know(client: ClientFactory) -> None:
    s = make_settings()
    probe = FakeProbe(s)
    c = await client(s, probe)
    r = await c.get("/status")
    assert r.status == 200
    doc = await r.json()
    assert set(doc) >= {"kafka", "group", "topics", "jobs", "worker", "checked_at", "sample_age_s"}
    last_good = doc["kafka"].pop("last_good_at")
    assert doc["kafka"] == {"reachable": True, "bootstrap": s.kafka.bootstrap_servers, "cluster_id": "c1",
                            "brokers": 1, "error": None, "round_s": 0.01, "last_good_age_s": 0.0}
    assert last_good == doc["checked_at"]
    assert 0 <= doc["sample_age_s"] < 3600  # filled in per request, not the serialized blank
    assert doc["group"]["members"][0]["client_id"] == "worker-1"
    assert doc["group"]["members"][0]["assigned"] == [{"topic": "u-ingest-preview", "partitions": [0]}]
    preview = doc["topics"]["u-ingest-preview"]
    assert [p["lag"] for p in preview["partitions"]] == [6, 0]
    assert preview["totals"]["lag"] == 6
    jobs = doc["jobs"]
    assert jobs == {"driver": "kafka", "pending": 8, "ingest_pending": 2, "failed": 2,
                    "failed_by_topic": {"u-ingest-preview.dlq": 2}, "note": "not yet subtracted"}
    # Young lag (2 s) on the held partition, and on ingest/0 which no member holds: pending.
    assert doc["worker"]["status"] == "pending"
    assert doc["worker"]["likely_running"] is True
    assert "u-ingest/0" in doc["worker"]["partitions"]["pending"]
    assert "8 waiting" in doc["worker"]["hint"]


async def test_one_round_per_cache_period_whatever_the_request_rate(client: ClientFactory) -> None:
    s = make_settings()
    probe = FakeProbe(s)
    c = await client(s, probe)
    answers = await asyncio.gather(*(c.get("/status") for _ in range(50)))
    assert {a.status for a in answers} == {200}
    await asyncio.gather(*(c.get(p) for p in ("/metrics", "/readyz") for _ in range(10)))
    assert probe.rounds == 1
    await c.get("/status?refresh=1")
    assert probe.rounds == 2


async def test_without_a_sampler_a_stale_answer_starts_a_round(client: ClientFactory) -> None:
    s = make_settings(sample_interval_s=0.05)
    probe = FakeProbe(s)
    c = await client(s, probe)
    for _ in range(3):
        await c.get("/status")
        await asyncio.sleep(0.06)
    assert probe.rounds == 3


async def test_concurrent_requests_share_one_round(client: ClientFactory) -> None:
    s = make_settings()
    probe = FakeProbe(s)
    probe.gate = threading.Event()
    c = await client(s, probe)
    pending = [asyncio.ensure_future(c.get("/status")) for _ in range(20)]
    await asyncio.sleep(0.2)
    probe.gate.set()
    answers = await asyncio.gather(*pending)
    assert probe.rounds == 1
    assert {(await a.json())["checked_at"] for a in answers} == {(await answers[0].json())["checked_at"]}


async def test_hanging_broker_gives_unknown_and_no_pile_of_rounds(client: ClientFactory) -> None:
    s = make_settings(kafka_timeout_s=0.2, sample_interval_s=0.001)
    probe = FakeProbe(s)
    probe.gate = threading.Event()
    c = await client(s, probe)
    try:
        doc = await (await c.get("/status")).json()
        assert doc["worker"]["status"] == "unknown"
        assert doc["kafka"]["reachable"] is False
        assert "did not answer within 0.2 s" in doc["kafka"]["error"]
        assert doc["worker"]["likely_running"] is None
        doc = await (await c.get("/status")).json()
        assert "still waiting" in doc["kafka"]["error"]
        assert probe.rounds == 1  # the stuck round was not joined by another
        r = await c.get("/readyz")
        assert r.status == 503
    finally:
        probe.gate.set()


async def test_unreachable_broker(client: ClientFactory) -> None:
    s = make_settings(sample_interval_s=0.05)
    probe = FakeProbe(s)
    probe.fail = "no answer from 127.0.0.1:1 within 1.5 s"
    c = await client(s, probe)
    doc = await (await c.get("/status")).json()
    assert doc["worker"]["status"] == "unknown"
    assert doc["worker"]["hint"] == ("cannot reach Kafka: no answer from 127.0.0.1:1 within 1.5 s; "
                                     "no round has answered since the service started")
    assert doc["kafka"]["last_good_at"] is None
    assert (await c.get("/healthz")).status == 200
    r = await c.get("/readyz")
    assert r.status == 503 and "127.0.0.1:1" in (await r.json())["error"]
    text = await (await c.get("/metrics")).text()
    assert "ingest_kafka_reachable 0" in text and "ingest_worker_status 4" in text
    probe.fail = None
    await asyncio.sleep(0.06)  # the unknown answer is older than an interval: asked again
    assert (await c.get("/readyz")).status == 200
    good = (await (await c.get("/status")).json())["checked_at"]
    probe.fail = "broker gone"
    await asyncio.sleep(0.06)
    doc = await (await c.get("/status")).json()
    assert doc["worker"]["status"] == "unknown"
    # Unknown says how old the last truth is, and which one it was.
    assert doc["kafka"]["last_good_at"] == good
    assert doc["kafka"]["last_good_age_s"] >= 0.06
    assert "the last good sample is" in doc["worker"]["hint"]


METRIC_LINE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)+\})? -?[0-9.e+-]+$')


async def test_metrics_in_prometheus_text_format(client: ClientFactory) -> None:
    s = make_settings()
    c = await client(s, FakeProbe(s))
    r = await c.get("/metrics")
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await r.text()
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or METRIC_LINE.match(line), line
    assert 'ingest_consumer_lag{topic="u-ingest-preview",partition="0"} 6' in text
    assert 'ingest_consumer_lag_seconds{topic="u-ingest-preview",partition="0"}' in text
    assert 'ingest_dead_letter_depth{topic="u-ingest-preview.dlq"} 2' in text
    assert 'ingest_group_members{group="u-group"} 1' in text
    assert "ingest_worker_status 2" in text  # pending
    assert "ingest_status_kafka_rounds_total 1" in text


async def test_the_sampler_keeps_its_own_clock_whatever_the_request_rate(
    client: ClientFactory
) -> None:
    interval = 0.2
    s = make_settings(sample_interval_s=interval)
    probe = FakeProbe(s)
    c = await client(s, probe, sample=True)
    start = time.monotonic()
    await asyncio.sleep(4 * interval)
    assert probe.rounds >= 2  # nobody asked, and it sampled
    before = probe.rounds
    t0 = time.monotonic()
    for _ in range(10):
        answers = await asyncio.gather(*(c.get("/status") for _ in range(30)))
        assert {a.status for a in answers} == {200}
    elapsed = time.monotonic() - t0
    # 300 requests cost no round of their own: only the clock's ticks (and the one that
    # may have been under way) happened meanwhile.
    assert probe.rounds - before <= elapsed / interval + 2
    assert probe.rounds <= (time.monotonic() - start) / interval + 2
    await c.get("/status?refresh=1")  # an operator's explicit refresh still asks at once
    assert probe.rounds >= before + 1


async def test_lookup_shows_dead_letters_and_says_why_attempts_are_missing(
    client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tracestore.reader as reader

    def broken(settings: Settings) -> Any:
        raise RuntimeError("store offline")

    monkeypatch.setattr(reader, "open_reader", broken)
    s = make_settings()
    c = await client(s, FakeProbe(s))
    doc = await (await c.get(f"/lookup/{UUID.upper()}")).json()
    assert doc["uuid"] == UUID
    assert doc["attempts"] is None
    assert doc["attempts_error"] == "traces store unavailable: RuntimeError: store offline"
    assert [d["headers"]["kafka_dlt-exception-fqcn"] for d in doc["dead_letters"]] == ["SourceMissing"]


async def test_lookup_lists_attempts_from_the_traces_store(
    client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tracestore.reader as reader

    class Reader:
        def timeline(self, uuid: str) -> list[dict[str, object]]:
            return [{"image_uuid": uuid, "job": "preview", "method_tried": "pillow", "success": True}]

        def close(self) -> None:
            pass

    monkeypatch.setattr(reader, "open_reader", lambda settings: Reader())
    s = make_settings()
    c = await client(s, FakeProbe(s))
    doc = await (await c.get("/lookup/0b6f0002-aaaa-4bbb-8ccc-0123456789ab")).json()
    assert doc["attempts"] == [{"image_uuid": "0b6f0002-aaaa-4bbb-8ccc-0123456789ab", "job": "preview",
                                "method_tried": "pillow", "success": True}]
    assert doc["dead_letters"] == [] and doc["dead_letters_error"] is None


async def test_lookup_rejects_what_is_not_a_uuid(client: ClientFactory) -> None:
    s = make_settings()
    c = await client(s, FakeProbe(s))
    r = await c.get("/lookup/not-a-uuid")
    assert r.status == 400
    assert (await r.json()) == {"error": "not a UUID: 'not-a-uuid'"}


async def test_dashboard_is_served_by_the_service_itself(client: ClientFactory) -> None:
    s = make_settings()
    c = await client(s, FakeProbe(s))
    page = await (await c.get("/")).text()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    # links and assets
    assert sorted(assets) == ["/charts", "/failed", "/search", "/static/app.css", "/static/app.js",
                              "/static/common.js"]
    for a in assets:
        assert (await c.get(a)).status == 200
    for f in Path(web.STATIC).iterdir():
        # The SVG namespace (createElementNS) is a name, not an address anything is loaded from.
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg\b)", f.read_text()), \
            f"{f.name} loads something from outside"
    assert (await c.get("/static/")).status in (403, 404)  # no directory listing


async def test_the_first_status_after_a_quiet_spell_is_idle(client: ClientFactory) -> None:
    # Observed: with nothing happening for minutes, the first /status after one commit said
    # "processing (caught up since the last look)": the window followed the request cadence.
    interval = 0.05
    s = make_settings(sample_interval_s=interval)
    probe = FakeProbe(s)
    probe.lags = {probe.topics.job(Job.PREVIEW): [(10, 4), (3, 3)]}
    c = await client(s, probe, sample=True)
    assert (await (await c.get("/status")).json())["worker"]["status"] != "idle"
    probe.lags = {probe.topics.job(Job.PREVIEW): [(10, 10), (3, 3)]}  # the job is done
    await asyncio.sleep(20 * interval)  # a quiet spell: nobody asks
    doc = await (await c.get("/status")).json()
    assert doc["worker"]["status"] == "idle", doc["worker"]


async def test_a_token_guards_everything_but_the_probes(client: ClientFactory) -> None:
    s = make_settings(token="s3cret-token")
    c = await client(s, FakeProbe(s))
    for path in ("/status", f"/lookup/{UUID}"):
        r = await c.get(path)
        assert r.status == 401, path
        assert "token" in (await r.json())["error"] and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await c.get(path, headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await c.get(path, headers={"Authorization": "Bearer s3cret-token"})).status == 200
    for path in ("/healthz", "/readyz", "/metrics", "/", "/static/app.js"):
        assert (await c.get(path)).status == 200, path
    closed = make_settings(token="s3cret-token", metrics_public=False)
    c2 = await client(closed, FakeProbe(closed))
    assert (await c2.get("/metrics")).status == 401
    ok = await c2.get("/metrics", headers={"Authorization": "bearer s3cret-token"})
    assert ok.status == 200


async def test_lookup_is_bounded_and_shows_only_what_an_operator_needs(
    client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tracestore.reader as reader

    opened: list[str] = []

    class Reader:
        def timeline(self, uuid: str) -> list[dict[str, object]]:
            opened.append(uuid)
            time.sleep(0.2)  # a slow store
            return []

        def close(self) -> None:
            pass

    monkeypatch.setattr(reader, "open_reader", lambda settings: Reader())
    s = make_settings()
    probe = FakeProbe(s)
    c = await client(s, probe)
    answers = await asyncio.gather(*(c.get(f"/lookup/{UUID}") for _ in range(20)))
    docs = [await a.json() for a in answers]
    # Twenty people asking at once cost one store query and one index read, not twenty.
    assert opened == [UUID] and probe.lookups == 1
    assert all(d == docs[0] for d in docs)
    dead = docs[0]["dead_letters"][0]
    assert set(dead) == {"topic", "partition", "offset", "timestamp", "headers", "state"}
    assert "value_preview" not in dead and "owner_id" not in str(docs[0])
