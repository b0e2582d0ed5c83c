"""The search page in Debian's Chromium against the real service (``status serve``) and the
real broker, no worker running: a search by file name asks for the token, then shows the
pending upload where it waits and a dead letter, whose link opens its detail on the failed
page. Leaves artifacts/status-search.png."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from streams.headers import DEAD_LETTER_ID_HEADER
from streams.producer import EventProducer
from streams.settings import Settings
from streams.topics import Job, Topics, partition_for
from tests.browser.test_dashboard import _serve, browser  # noqa: F401 - the browser fixture
from tests.conftest import ROOT, wait_until
from tests.integration.helpers import cli, make_jpeg

SCREENSHOT = ROOT / "artifacts" / "status-search.png"
TOKEN = "tok-Sr47"


def _pending(url: str) -> int:
    req = urllib.request.Request(url + "/status", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(json.load(r)["jobs"]["pending"])


def test_search_by_file_name_shows_the_pending_upload(
    make_settings, topics: Topics, browser, tmp_path: Path  # noqa: F811
) -> None:
    settings: Settings = make_settings(status={"sample_interval_s": 0.5, "token": TOKEN})
    res = cli(settings, "upload", "--owner", "owner-S", str(make_jpeg(tmp_path / "in" / "Dunes_at_dusk.jpg",
                                                                       (400, 300))))
    assert res.exit_code == 0, res.output
    uid = res.output.split()[0]
    dead_uid = "7e57c0de-0000-4000-8000-0000000000b2"
    value = json.dumps({"schema_version": 1, "type": "upload.received", "uuid": dead_uid, "size": 1,
                        "path": "uploads/7e/x.jpg", "original_filename": "dunes_at_noon.jpg"}).encode()
    with EventProducer(settings.kafka) as producer:
        producer.send(topics.dead_letter(Job.PREVIEW), dead_uid.encode(), value, headers=[
            ("kafka_dlt-exception-fqcn", b"imaging.errors.CorruptImage"),
            ("kafka_dlt-exception-message", b"truncated"), ("x-ingest-attempts", b"1"),
            (DEAD_LETTER_ID_HEADER, b"search-page-1")])

    with _serve(settings, tmp_path) as url:
        wait_until(lambda: _pending(url) == 1, 60, lambda: "the service never saw the upload pending")
        page = browser.new_page(viewport={"width": 1200, "height": 800})  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))
        page.goto(url + "/search")
        page.select_option("#s-field", "filename")
        page.fill("#s-q", "dunes_AT")
        page.click("#search-form button[type=submit]")
        page.wait_for_selector("#token-box:not([hidden])", timeout=20_000)
        page.fill("#token-input", TOKEN)
        page.click("#token-form button")
        row = page.locator(f"#hits tbody tr[data-state='pending'][data-uuid='{uid}']")
        row.wait_for(timeout=20_000)
        cells = row.locator("td").all_inner_texts()
        part = partition_for(uid.encode(), settings.kafka.partitions)
        assert cells[:3] == ["pending", uid, f"{topics.job(Job.PREVIEW)}/{part}@0"], cells
        assert page.locator("#hits tbody tr").count() == 2
        dead = page.locator(f"#hits tbody tr[data-state='dead letter'][data-uuid='{dead_uid}']")
        assert dead.locator("td").nth(3).inner_text() == "CorruptImage, open"  # no origin headers
        pending_line = page.inner_text("#sources li[data-source='pending']")
        assert pending_line.startswith("pending: read 1 of 1 waiting records on 1 partition(s)"), pending_line
        traces = page.inner_text("#sources li[data-source='traces']")
        assert "traces are searched by image UUID only" in traces
        assert page.inner_text("#sources li[data-source='dead_letters']") == "dead letters: compared 1 of 1"
        assert page.is_hidden("#partial")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        # a bad query is the server's 400, said on the page
        page.select_option("#s-field", "uuid")
        page.fill("#s-q", "not-a-uuid")
        page.click("#search-form button[type=submit]")
        page.wait_for_function(
            "document.getElementById('search-error').textContent.includes('is not a UUID')", timeout=20_000)

        # the dead letter's link opens its detail on the failed page
        dead.locator("a").click()
        page.wait_for_function("document.getElementById('d-id').textContent === 'search-page-1'",
                               timeout=20_000)
        assert dead_uid in page.inner_text("#d-fields")
        assert errors == [] and outside == []
