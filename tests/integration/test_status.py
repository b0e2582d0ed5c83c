"""The status service on the real broker: a backlog with no worker goes pending then stalled,
a worker makes it processing then idle, counts match the offsets; a broker that goes away
(a private one, never the shared broker) makes it unknown."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from confluent_kafka import Consumer, TopicPartition

from status import web
from status.health import State
from status.report import StatusReport
from status.service import StatusService
from streams.producer import EventProducer
from streams.settings import Settings
from streams.topics import Job, Topics, ensure_topics
from tests.conftest import ROOT, settings_env
from tests.integration.helpers import cli, make_jpeg
from tests.support.broker import Broker


def watermarks(settings: Settings, topic: str) -> tuple[int, int]:
    """Sum of (log start, log end) over a topic's partitions, read independently."""
    c = Consumer({**settings.kafka.confluent_config(), "group.id": f"wm-{uuid.uuid4().hex}"})
    try:
        md = c.list_topics(topic, timeout=10)
        lo = hi = 0
        for p in md.topics[topic].partitions:
            a, b = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            lo, hi = lo + a, hi + b
        return lo, hi
    finally:
        c.close()


def check(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``prophoto-ingest status check``, a real process."""
    return subprocess.run(
        [sys.executable, "-m", "streams", "status", "check", *args], capture_output=True, text=True,
        env={**os.environ, **settings_env(settings)}, cwd=ROOT, timeout=60,
    )


class Poller:
    def __init__(self, svc: StatusService) -> None:
        self.svc = svc
        self.seen: list[State] = []
        self.last: StatusReport | None = None

    async def until(self, state: State, timeout: float,
                    also: Callable[[StatusReport], bool] = lambda _: True) -> StatusReport:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.last = await self.svc.report(refresh=True)
            if not self.seen or self.seen[-1] is not r.worker.status:
                self.seen.append(r.worker.status)
            if r.worker.status is state and also(r):
                return r
            await asyncio.sleep(0.3)
        hint = self.last.worker.hint if self.last else "no report"
        raise AssertionError(f"no {state} within {timeout:g} s; states seen {self.seen}; last: {hint}")


async def test_pending_stalled_processing_idle(
    make_settings, start_worker, tmp_path: Path
) -> None:
    settings: Settings = make_settings(status={"stall_threshold_s": 8, "sample_interval_s": 0.2})
    topics = Topics.from_settings(settings.kafka)
    ensure_topics(settings.kafka, topics.specs())
    preview, dlq = topics.job(Job.PREVIEW), topics.dead_letter(Job.PREVIEW)
    svc = StatusService(settings)
    poll = Poller(svc)
    try:
        first = await poll.until(State.IDLE, 30)  # empty topics, no worker: nothing waits
        assert first.group.members == [] and first.worker.likely_running is False

        files = [make_jpeg(tmp_path / "in" / f"img{i}.jpg", (640 + i, 480)) for i in range(6)]
        res = cli(settings, "upload", *map(str, files))
        assert res.exit_code == 0, res.output
        with EventProducer(settings.kafka) as producer:  # two that can only be dead-lettered
            for _ in range(2):
                producer.send(preview, str(uuid.uuid4()).encode(), b"not json")

        r = await poll.until(State.PENDING, 30)
        assert r.jobs.pending == 8 == watermarks(settings, preview)[1]
        assert r.topics[preview].totals.lag == 8 and r.jobs.ingest_pending == 0
        assert "8 waiting" in r.worker.hint

        r = await poll.until(State.STALLED, 60)
        assert r.jobs.pending == 8
        assert "start one with `prophoto-ingest worker`" in r.worker.hint
        lagging = sorted(f"{preview}/{p.partition}" for p in r.topics[preview].partitions if p.lag)
        # The rest cross the threshold within the second the records took to produce.
        r = await poll.until(State.STALLED, 30,
                             lambda rep: sorted(rep.worker.partitions["stalled"]) == lagging)
        assert sorted(r.worker.partitions["stalled"]) == lagging
        stalled = check(settings)
        assert stalled.returncode == 2, stalled.stdout + stalled.stderr
        assert stalled.stdout.startswith("stalled: ")

        worker = start_worker(settings)
        await poll.until(State.PROCESSING, 120)
        r = await poll.until(State.IDLE, 120)
        assert worker.proc.poll() is None, worker.output()[-3000:]
        assert poll.seen.index(State.PENDING) < poll.seen.index(State.STALLED) \
            < poll.seen.index(State.PROCESSING) < len(poll.seen) - 1

        # Counts match the offsets: nothing waits, the two bad records are the failures.
        assert r.jobs.pending == 0
        assert all(p.committed == p.end for p in r.topics[preview].partitions if p.end)
        lo, hi = watermarks(settings, dlq)
        assert r.jobs.failed == hi - lo == 2
        assert r.jobs.failed_by_topic[dlq] == 2
        assert len(r.group.members) == 1 and r.worker.likely_running is True
        held = {a.topic: a.partitions for a in r.group.members[0].assigned}
        assert held[preview] == list(range(settings.kafka.partitions))
        idle = check(settings)
        assert idle.returncode == 0 and idle.stdout.startswith("idle: "), idle.stdout + idle.stderr
    finally:
        svc.close()


async def test_broker_going_away_is_unknown_then_recovers(make_settings, private_broker: Broker) -> None:
    bootstrap_servers = private_broker.bootstrap  # a broker of this test's own: it stops it
    settings: Settings = make_settings(kafka={"bootstrap_servers": bootstrap_servers},
                                       status={"sample_interval_s": 1})
    topics = Topics.from_settings(settings.kafka)
    ensure_topics(settings.kafka, topics.specs())
    with EventProducer(settings.kafka) as producer:
        for _ in range(3):
            producer.send(topics.job(Job.INGEST), str(uuid.uuid4()).encode(), b"{}")

    app = web.create_app(settings)  # samples on its own clock, as `status serve` does
    svc = app[web.SERVICE]
    server = TestServer(app)
    await server.start_server()
    # A hang guard, not a measurement: the service's own budget is kafka_timeout_s + slack.
    guard = aiohttp.ClientTimeout(total=settings.status.kafka_timeout_s + 5)
    try:
        async with aiohttp.ClientSession(timeout=guard) as http:
            url = str(server.make_url("/status"))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # a fresh broker loads its group coordinator
                doc = await (await http.get(url)).json()
                if doc["kafka"]["reachable"]:
                    break
                await asyncio.sleep(0.5)
            assert doc["kafka"]["reachable"] is True, doc["kafka"]
            assert doc["kafka"]["brokers"] == 1
            assert doc["jobs"]["pending"] == doc["jobs"]["ingest_pending"] == 3
            assert (await http.get(server.make_url("/readyz"))).status == 200

            private_broker.stop()

            deadline = time.monotonic() + 15  # the next sample or two find it gone
            while time.monotonic() < deadline:
                started = time.monotonic()
                doc = await (await http.get(url)).json()
                answered_in = time.monotonic() - started
                if not doc["kafka"]["reachable"]:
                    break
                await asyncio.sleep(0.2)
            print(f"/status answered in {answered_in:.2f} s with the broker down")
            assert doc["worker"]["status"] == "unknown", doc["worker"]
            assert doc["kafka"]["last_good_at"] is not None
            assert doc["kafka"]["reachable"] is False
            assert bootstrap_servers in doc["kafka"]["error"] or "did not answer" in doc["kafka"]["error"]
            assert doc["worker"]["hint"].startswith("cannot reach Kafka")
            r = await http.get(server.make_url("/readyz"))
            assert r.status == 503
            metrics = await (await http.get(server.make_url("/metrics"))).text()
            assert "ingest_kafka_reachable 0" in metrics
            unknown = check(settings)
            assert unknown.returncode == 3, unknown.stdout + unknown.stderr
            assert unknown.stdout.startswith("unknown: cannot reach Kafka")

            # Down for ~10 s, as an operator's broker restart; the long-running service
            # must come back as soon as a fresh one does, within two rounds of it.
            for _ in range(10):
                await (await http.get(url)).json()
                await asyncio.sleep(1.0)
            private_broker.start()
            fresh_at = ours_at = None
            rounds_at_fresh = rounds_after_fresh = 0
            began = time.monotonic()
            while ours_at is None and time.monotonic() - began < 90:
                if fresh_at is None and check(settings).returncode != 3:
                    fresh_at = time.monotonic() - began  # a new process can see the broker
                    rounds_at_fresh = svc.rounds
                doc = await (await http.get(url)).json()
                if doc["kafka"]["reachable"] and doc["worker"]["status"] != "unknown":
                    ours_at = time.monotonic() - began
                    rounds_after_fresh = svc.rounds - rounds_at_fresh if fresh_at is not None else 0
                await asyncio.sleep(0.2)
            print(f"after the restart: a fresh check saw the broker at {fresh_at} s, "
                  f"the long-running service at {ours_at} s")
            assert ours_at is not None, f"the service never recovered: {doc['kafka']}, {doc['worker']}"
            # Right within two sampling intervals of a fresh process seeing the broker.
            assert rounds_after_fresh <= 2, (rounds_after_fresh, doc["kafka"])
            assert doc["jobs"]["pending"] == 3
            assert (await http.get(server.make_url("/readyz"))).status == 200
    finally:
        await server.close()
