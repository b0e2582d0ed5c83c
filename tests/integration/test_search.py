"""/api/search on the real broker with no worker running: pending uploads are found by owner
id, file name and UUID from the group's lag window, a dead letter from the failed index, and
the answer says how much it read; with a cap below the backlog it says "partial"."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from status import search, web
from streams.headers import DEAD_LETTER_ID_HEADER
from streams.producer import EventProducer
from streams.settings import Settings
from streams.topics import Job, Topics, partition_for
from tests.integration.helpers import cli, make_jpeg


def _upload(settings: Settings, tmp_path: Path, name: str, owner: str) -> str:
    path = make_jpeg(tmp_path / "in" / name, (300, 200))
    res = cli(settings, "upload", "--owner", owner, "--gallery", "g-1", str(path))
    assert res.exit_code == 0, res.output
    return res.output.split()[0]


async def _search(http: aiohttp.ClientSession, server: TestServer, field: str, q: str) -> dict[str, Any]:
    r = await http.get(str(server.make_url("/api/search")), params={"field": field, "q": q})
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def test_pending_upload_found_by_owner_and_file_name_without_a_worker(
    make_settings, topics: Topics, tmp_path: Path
) -> None:
    settings: Settings = make_settings(status={"sample_interval_s": 0.5})
    wanted = _upload(settings, tmp_path, "Ceremony_017.jpg", "owner-A")
    other = _upload(settings, tmp_path, "other.jpg", "owner-B")
    failed_event = json.dumps({"schema_version": 1, "type": "upload.received",
                               "uuid": "7e57c0de-0000-4000-8000-000000000001", "path": "uploads/7e/x.jpg",
                               "original_filename": "Ceremony_099.jpg", "size": 1,
                               "owner_id": "owner-A"}).encode()
    with EventProducer(settings.kafka) as producer:
        producer.send(topics.dead_letter(Job.PREVIEW), b"7e57c0de-0000-4000-8000-000000000001",
                      failed_event, headers=[
                          ("kafka_dlt-exception-fqcn", b"imaging.errors.CorruptImage"),
                          ("kafka_dlt-exception-message", b"truncated"),
                          ("kafka_dlt-original-topic", topics.job(Job.PREVIEW).encode()),
                          ("x-ingest-dlq-reason", b"permanent"), ("x-ingest-attempts", b"1"),
                          (DEAD_LETTER_ID_HEADER, b"search-test-1"),
                      ])

    app = web.create_app(settings)  # samples on its own clock, as `status serve` does
    server = TestServer(app)
    await server.start_server()
    guard = aiohttp.ClientTimeout(total=30)  # a hang guard, not a measurement
    try:
        async with aiohttp.ClientSession(timeout=guard) as http:
            # A fresh broker loads its group coordinator first; the round then sees the lag.
            deadline = time.monotonic() + 60
            while True:
                app[search.SEARCHER]._cache.clear()
                body = await _search(http, server, "owner", "owner-A")
                if body["sources"]["pending"]["waiting"] == 2 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            pending = [h for h in body["hits"] if h["state"] == "pending"]
            dead = [h for h in body["hits"] if h["state"] == "dead letter"]
            assert [h["uuid"] for h in pending] == [wanted], body
            hit = pending[0]
            assert hit["topic"] == topics.job(Job.PREVIEW)
            assert hit["partition"] == partition_for(wanted.encode(), settings.kafka.partitions)
            assert hit["offset"] == 0 and hit["type"] == "upload.received"
            assert [(h["id"], h["link"]) for h in dead] == [("search-test-1", "/failed#id=search-test-1")]
            src = body["sources"]
            read = src["pending"]
            assert (read["read"], read["waiting"], read["complete"]) == (2, 2, True)
            assert (src["dead_letters"]["scanned"], src["dead_letters"]["complete"]) == (1, True)
            assert src["traces"]["searched"] is False and body["partial"] is False
            assert "Ceremony" not in json.dumps(body["hits"])

            by_name = await _search(http, server, "filename", "ceremony_01")
            assert [(h["state"], h["uuid"]) for h in by_name["hits"]] == [("pending", wanted)]
            assert by_name["sources"]["pending"]["read"] == 2

            # A UUID reads its own partition number only; the trace store may or may not answer
            # (an empty chDB store here), and either way the answer is a 200.
            by_uuid = await _search(http, server, "uuid", other)
            assert [(h["state"], h["uuid"]) for h in by_uuid["hits"] if h["state"] == "pending"] == \
                [("pending", other)]
            assert by_uuid["sources"]["pending"]["partitions"] == 1
            n = settings.kafka.partitions
            same = partition_for(wanted.encode(), n) == partition_for(other.encode(), n)
            assert by_uuid["sources"]["pending"]["read"] == (2 if same else 1)

            # The cap below the backlog: the answer says it read 1 of 2 and is partial.
            app[search.SEARCHER].total = 1
            capped = await _search(http, server, "gallery", "g-1")
            assert capped["partial"] is True
            assert (capped["sources"]["pending"]["read"], capped["sources"]["pending"]["waiting"]) == (1, 2)
            assert capped["sources"]["pending"]["note"].startswith("partial: read the oldest 1 of 2")
            assert len([h for h in capped["hits"] if h["state"] == "pending"]) == 1
    finally:
        await server.close()


def test_cli_search_prints_where_the_pending_upload_is(make_settings, topics: Topics, tmp_path: Path) -> None:
    settings: Settings = make_settings()
    wanted = _upload(settings, tmp_path, "Harbour_3.jpg", "owner-C")
    res = cli(settings, "search", "owner", "owner-C")
    assert res.exit_code == 0, res.output
    part = partition_for(wanted.encode(), settings.kafka.partitions)
    lines = [line for line in res.stdout.splitlines() if line.startswith("pending")]
    assert lines == [f"{'pending':<12} {wanted}  {topics.job(Job.PREVIEW)}/{part}@0  upload.received"]
    assert "1 hit(s); read 1 of 1 pending records" in res.stderr
    nothing = cli(settings, "search", "filename", "no-such-file")
    assert nothing.exit_code == 1 and "0 hit(s); read 1 of 1 pending records" in nothing.stderr
    bad = cli(settings, "search", "uuid", "nope")
    assert bad.exit_code == 2 and "is not a UUID" in bad.output
