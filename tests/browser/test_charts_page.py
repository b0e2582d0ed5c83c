"""The charts page in Debian's Chromium against a real broker, a real worker, a real trace
sink and the real service: a few uploads become traces, the page draws them for both
windows; with the sink frozen (holding the store, answering nobody) the page says the store
is unavailable while /status keeps answering. Leaves artifacts/status-charts.png."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

from streams.settings import Settings
from tests.browser.test_dashboard import _serve, browser  # noqa: F401 - the browser fixture
from tests.conftest import ROOT, WorkerProcess, wait_until
from tests.integration.helpers import cli, make_jpeg
from tests.integration.test_traces import wait_sink_ready
from tests.support import samples
from tracestore.reader import open_reader

SCREENSHOT = ROOT / "artifacts" / "status-charts.png"
SCREENSHOT_DOWN = ROOT / "artifacts" / "status-charts-unavailable.png"
TOKEN = "tok-Ch7"


def _count(settings: Settings, where: str) -> int:
    _, rows = open_reader(settings).query(f"SELECT count() FROM traces FINAL WHERE {where}")
    return int(str(rows[0][0]))


def _get(url: str) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read())


def test_charts_draw_the_traces_and_say_when_the_store_is_gone(
    make_settings: Callable[..., Settings], start_worker: Callable[..., WorkerProcess],
    start_sink: Callable[..., WorkerProcess], browser, tmp_path: Path,  # noqa: F811
) -> None:
    settings = make_settings(status={"sample_interval_s": 0.5, "token": TOKEN},
                             clickhouse={"flush_interval_s": 0.2, "lock_timeout_s": 20})
    sink = start_sink(settings)
    wait_sink_ready(settings, sink)
    worker = start_worker(settings)

    (tmp_path / "in").mkdir()
    files = [
        samples.camera_jpeg(tmp_path / "in" / "embedded.jpg", (2400, 1600), preview=(1200, 800)),
        make_jpeg(tmp_path / "in" / "plain.jpg", (1600, 1200)),  # no embedded preview: a fallback
        tmp_path / "in" / "corrupt.jpg",
    ]
    files[2].write_bytes(files[1].read_bytes()[:600] + b"\0" * 50)
    res = cli(settings, "upload", *map(str, files))
    assert res.exit_code == 0, res.output
    wait_until(lambda: (_count(settings, "trace_type = 'thumbnail_generation' AND success") >= 2
                        and _count(settings, "trace_type = 'dead_letter'") >= 1),
               120, lambda: f"traces of 3 uploads; logs:\n{sink.output()[-2000:]}\n{worker.output()[-2000:]}",
               interval=0.5)

    with _serve(settings, tmp_path) as url:
        page = browser.new_page(viewport={"width": 1300, "height": 1400})  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))

        page.goto(url + "/")
        page.click("#nav-charts")
        page.wait_for_url(url + "/charts")
        page.wait_for_selector("#token-box:not([hidden])", timeout=20_000)
        page.fill("#token-input", TOKEN)
        page.click("#token-form button")
        page.wait_for_selector("#charts[data-state='available'][data-window='1h']", timeout=60_000)

        jobs = page.locator("figure[data-chart='jobs']")
        assert jobs.get_attribute("data-empty") == "false"
        assert jobs.locator("svg path.series").count() > 0
        top = jobs.locator("text.tick-label.y").all_text_contents()
        assert len(top) == 3 and float(top[-1]) > 0, top  # the y axis' upper label is a number
        assert "preview" in jobs.locator(".legend").inner_text()
        assert page.locator("figure[data-chart='fallback'] svg path.series, "
                            "figure[data-chart='fallback'] svg circle.point").count() > 0
        failures = page.locator("figure[data-chart='failures']")
        assert failures.locator("rect.bar").count() > 0
        assert "CorruptImage" in failures.locator("text.bar-label").all_text_contents()
        methods = page.locator("figure[data-chart='method_runtime']")
        assert methods.locator("rect.bar").count() >= 2
        assert any("pillow_decode" in t for t in methods.locator("text.bar-label").all_text_contents())
        assert all(float(v) >= 0 for v in methods.locator("text.value").all_text_contents())
        latency = page.locator("figure[data-chart='preview_latency']")
        assert latency.get_attribute("data-empty") == "false"
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        page.click("button.window[data-window='24h']")
        page.wait_for_selector("#charts[data-state='available'][data-window='24h']", timeout=60_000)
        assert page.get_attribute("button.window[data-window='24h']", "aria-pressed") == "true"
        assert page.locator("figure[data-chart='jobs'] svg path.series, "
                            "figure[data-chart='jobs'] svg circle.point").count() > 0
        assert page.inner_text("#bucket-note") == "15-minute buckets"

        # The sink frozen: it holds the store and answers no query. The page, polling every
        # 2 s, says so once the service's kept answer (30 s) has run out.
        os.kill(sink.proc.pid, signal.SIGSTOP)
        try:
            page.goto(url + "/charts?every=2")
            page.wait_for_selector("#charts[data-state='unavailable']", timeout=120_000)
            problem = page.inner_text("#charts-status")
            assert problem.startswith("trace store unavailable:"), problem
            assert page.locator("#charts svg").count() == 0
            status, doc = _get(url + "/status")
            assert status == 200 and "kafka" in doc
            code, metrics = _get(url + "/api/trace-metrics?window=1h")
            assert code == 200 and metrics["available"] is False
            page.screenshot(path=str(SCREENSHOT_DOWN), full_page=True)
        finally:
            os.kill(sink.proc.pid, signal.SIGCONT)
        assert errors == [] and outside == []
