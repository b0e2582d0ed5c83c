"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against the real
service (``prophoto-ingest status serve``) and the real broker. Leaves a screenshot in
artifacts/status-dashboard.png for CI to keep."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from streams.producer import EventProducer
from streams.settings import Settings
from streams.storage import LocalStorage
from streams.topics import Job, Topics
from tests.conftest import ROOT, settings_env, wait_until
from tests.integration.helpers import cli, make_jpeg
from tests.support.slow_exiftool import slow_exiftool

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = ROOT / "artifacts" / "status-dashboard.png"
SCREENSHOT_WORKERS = ROOT / "artifacts" / "status-dashboard-workers.png"
SCREENSHOT_OPERATOR = ROOT / "artifacts" / "status-dashboard-operator.png"
COLORS = {  # the badges' background colors (app.css)
    "processing": "rgb(30, 142, 62)", "idle": "rgb(26, 115, 232)", "stalled": "rgb(217, 48, 37)",
    "pending": "rgb(249, 171, 0)", "unknown": "rgb(128, 134, 139)",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _png(path: Path, size: tuple[int, int]) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 140, 200)).save(path, "PNG")
    return path


@contextmanager
def _serve(settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    log = tmp_path / f"status-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "status", "serve", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, **settings_env(settings)},
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_until(up, 30, lambda: f"status service on {url}; log:\n{log.read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def service(make_settings, topics: Topics, tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    settings: Settings = make_settings(status={"sample_interval_s": 0.5})
    with _serve(settings, tmp_path) as url:
        yield url, settings


@pytest.fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: run scripts/setup.d/40-chromium.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def test_dashboard_renders_refreshes_and_looks_up(service, topics: Topics, browser) -> None:
    url, settings = service
    failed_uuid = str(uuid.uuid4())
    with EventProducer(settings.kafka) as producer:
        for _ in range(3):
            producer.send(topics.job(Job.PREVIEW), str(uuid.uuid4()).encode(), b"{}")
        producer.send(topics.job(Job.INGEST), str(uuid.uuid4()).encode(), b"{}")
        producer.send(topics.dead_letter(Job.PREVIEW), failed_uuid.encode(), b'{"uuid": "x"}', headers=[
            ("kafka_dlt-exception-fqcn", b"streams.errors.SourceMissing"),
            ("kafka_dlt-exception-message", b"uploads/x.jpg is not there"),
            ("x-ingest-dlq-reason", b"permanent"), ("x-ingest-attempts", b"1"),
        ])

    page = browser.new_page(viewport={"width": 1200, "height": 1000})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))
    page.goto(url + "/?every=1")
    page.wait_for_selector("#health-bar[data-status='pending']", timeout=20_000)

    badges = page.locator("#health-bar .badge")
    assert badges.all_inner_texts() == ["Processing", "Idle", "Stalled", "Pending", "Unknown"]
    for state, color in COLORS.items():
        b = page.locator(f"#health-bar .badge[data-state='{state}']")
        assert b.evaluate("e => getComputedStyle(e).backgroundColor") == color
    assert page.locator("#health-bar .badge.active").get_attribute("data-state") == "pending"
    assert page.inner_text("#count-pending") == "4"
    assert page.inner_text("#count-ingest-pending") == "1"
    assert page.inner_text("#count-failed") == "1"
    assert page.inner_text("#count-members") == "0"
    row = page.locator(f"#topics tr[data-topic='{topics.job(Job.PREVIEW)}']")
    assert row.locator("td.pending").inner_text() == "3"
    assert "4 waiting" in page.inner_text("#hint")

    # Auto-refresh: new records show up without a reload.
    with EventProducer(settings.kafka) as producer:
        for _ in range(2):
            producer.send(topics.job(Job.PREVIEW), str(uuid.uuid4()).encode(), b"{}")
    page.wait_for_function("document.getElementById('count-pending').textContent === '6'", timeout=20_000)
    assert row.locator("td.pending").inner_text() == "5"

    page.fill("#lookup-input", failed_uuid)
    page.click("#lookup-form button")
    dead = page.locator("#dead-letters tbody tr")
    dead.first.wait_for(timeout=20_000)
    assert dead.count() == 1
    text = dead.first.inner_text()
    assert "SourceMissing" in text and "uploads/x.jpg is not there" in text and "permanent" in text
    page.wait_for_function("document.getElementById('attempts-error').textContent !== ''", timeout=20_000)
    attempts = page.inner_text("#attempts-error")
    assert attempts == "no attempts recorded" or attempts.startswith("traces store unavailable: "), attempts

    page.fill("#lookup-input", "not-a-uuid")
    page.click("#lookup-form button")
    page.wait_for_function("document.getElementById('lookup-error').textContent.includes('not a UUID')")

    page.fill("#lookup-input", failed_uuid)
    page.click("#lookup-form button")
    dead.first.wait_for(timeout=20_000)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert errors == [] and outside == []


def test_dashboard_asks_for_its_token_and_shows_workers_jobs_and_latency(
    make_settings, topics: Topics, start_worker, browser, tmp_path: Path
) -> None:
    settings: Settings = make_settings(
        status={"sample_interval_s": 0.5, "stall_threshold_s": 4, "token": "tok-Zq81"},
        worker={"timeout_s": 60, "concurrency": 1, "heartbeat_s": 1},
        imaging={"exiftool_timeout_s": 60},
    )
    env, flag = slow_exiftool(tmp_path, delay_s=15)
    worker = start_worker(settings, "--topics", "ingest,ingest-preview", env=env)
    with _serve(settings, tmp_path) as url:
        page = browser.new_page(viewport={"width": 1200, "height": 1400})  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/?every=1")
        page.wait_for_selector("#token-box:not([hidden])", timeout=20_000)
        page.fill("#token-input", "not-it")
        page.click("#token-form button")
        page.wait_for_function("document.getElementById('token-error').textContent.includes('refused')",
                               timeout=20_000)
        page.fill("#token-input", "tok-Zq81")
        page.click("#token-form button")
        page.wait_for_selector("#token-box[hidden]", state="attached", timeout=20_000)
        row = page.locator("#workers tbody tr[data-state='running']")
        row.first.wait_for(timeout=60_000)
        assert row.count() == 1
        wid = row.first.get_attribute("data-worker") or ""
        assert wid.endswith(f":{worker.proc.pid}"), wid

        res = cli(settings, "upload", str(make_jpeg(tmp_path / "in" / "a.jpg", (900, 600))))
        assert res.exit_code == 0, res.output
        uid = res.output.split()[0]
        st = LocalStorage(settings.storage.root)
        wait_until(lambda: st.preview_path(uid).exists(), 60, "the preview")
        page.wait_for_function("document.querySelector('#lat-5m td').textContent === '1'", timeout=20_000)
        p50 = page.locator("#lat-5m td").nth(1).inner_text()
        assert p50.endswith(" s"), p50

        flag.touch()  # the ingest's exiftool call takes 15 s
        assert cli(settings, "confirm", uid).exit_code == 0
        reason = page.locator(f"#reasons li[data-partition^='{topics.job(Job.INGEST)}/']")
        reason.first.wait_for(timeout=30_000)
        page.wait_for_function(
            "[...document.querySelectorAll('#reasons li')].some(li => /job running \\d+ s of its 60 s "
            "timeout/.test(li.textContent) && li.querySelector('.pill.processing'))", timeout=30_000)
        page.wait_for_function(
            "uid => [...document.querySelectorAll('#workers .in-flight')]"
            ".some(d => d.textContent.includes(uid))", arg=uid, timeout=20_000)
        SCREENSHOT_WORKERS.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_WORKERS), full_page=True)
        assert errors == []


def test_operator_pauses_a_topic_from_the_page_and_sees_two_workers_at_work(
    make_settings, topics: Topics, start_worker, browser, tmp_path: Path
) -> None:
    settings: Settings = make_settings(
        status={"sample_interval_s": 0.5, "stall_threshold_s": 4},
        worker={"timeout_s": 60, "concurrency": 1, "heartbeat_s": 1},
        imaging={"exiftool_timeout_s": 60},
    )
    preview = topics.job(Job.PREVIEW)
    slow = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        slow.append(slow_exiftool(tmp_path / name, delay_s=12))
    workers = [start_worker(settings, "--topics", "ingest-preview", env=env) for env, _ in slow]
    st = LocalStorage(settings.storage.root)
    with _serve(settings, tmp_path) as url:
        page = browser.new_page(viewport={"width": 1200, "height": 1500})  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/?every=1")
        page.wait_for_function(
            "document.querySelectorAll(\"#workers tr[data-state='running']\").length === 2", timeout=60_000)
        # Pause from the page: uploads wait, and status says why.
        row = page.locator(f"#topics tr[data-topic='{preview}']")
        row.locator("button.pause-toggle").click()
        page.wait_for_function("document.getElementById('pause-msg').textContent.startsWith('paused ')",
                               timeout=20_000)
        row.locator("button[data-action='continue']").wait_for(timeout=20_000)
        # PNGs: a JPEG's preview is probed by Pillow alone, so only another format's job calls
        # exiftool, which the flag slows. Ten uploads: each worker's two partitions get one
        # (all ten on one worker's partitions: 1 in 512).
        files = [_png(tmp_path / "in" / f"w{i}.png", (700 + i, 500)) for i in range(10)]
        res = cli(settings, "upload", *map(str, files))
        assert res.exit_code == 0, res.output
        uploaded = [line.split()[0] for line in res.output.splitlines()]
        page.wait_for_function(
            "[...document.querySelectorAll('#reasons li')]"
            ".some(li => li.textContent.includes('paused by operator'))", timeout=30_000)
        assert "paused by operator" in row.inner_text()
        assert not any(st.preview_path(u).exists() for u in uploaded), "a paused topic ran a job"
        assert page.locator("#reasons .pill.stalled").count() == 0
        # clear from the page: a dry run counts the backlog, and Kafka refuses while the
        # workers are in the group: the page says what to do, and nothing is skipped.
        row.locator("button.clear-start").click()
        confirm = page.locator("#pause-msg button.clear-confirm")
        confirm.wait_for(timeout=20_000)
        assert "skip 10 record(s)" in confirm.inner_text()
        confirm.click()
        page.wait_for_function(
            "!document.getElementById('pause-msg').textContent.includes('skip 10')", timeout=30_000)
        said = page.inner_text("#pause-msg")
        assert "workers must be stopped first" in said, said

        for _, flag in slow:
            flag.touch()  # each worker's next job takes 12 s: both busy at once
        row.locator("button[data-action='continue']").click()
        page.wait_for_function(
            "[...document.querySelectorAll('#workers tr[data-state=\"running\"]')]"
            ".filter(tr => tr.querySelector('.in-flight')).length === 2", timeout=40_000)
        SCREENSHOT_OPERATOR.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_OPERATOR), full_page=True)
        wait_until(lambda: all(st.preview_path(u).exists() for u in uploaded), 120, "the previews")
        assert errors == []
    for w in workers:
        assert w.proc.poll() is None, w.output()[-2000:]
