"""The failed-jobs page in Debian's Chromium against a real broker, a real worker and the real
service: a corrupt upload shows with its reason; once its file is fixed it is replayed from
the page (dry run, then confirm) and gets its preview; another is forgotten; the history
shows both. Leaves artifacts/status-failed.png."""

from __future__ import annotations

from pathlib import Path

from streams.replay import DeadLetters
from streams.settings import Settings
from streams.storage import LocalStorage
from streams.topics import Topics
from streams.uploads import find_upload
from tests.browser.test_dashboard import _serve, browser  # noqa: F401 - the browser fixture
from tests.conftest import ROOT, wait_until
from tests.integration.helpers import cli, make_jpeg

SCREENSHOT = ROOT / "artifacts" / "status-failed.png"


def _corrupt_upload(settings: Settings, tmp_path: Path, name: str) -> str:
    whole = make_jpeg(tmp_path / f"whole-{name}", (1200, 900)).read_bytes()
    bad = tmp_path / "in" / name
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(whole[: len(whole) // 3])  # a truncated JPEG
    res = cli(settings, "upload", str(bad))
    assert res.exit_code == 0, res.output
    return res.output.split()[0]


def test_failed_page_replays_and_forgets_from_the_browser(
    make_settings, topics: Topics, start_worker, browser, tmp_path: Path  # noqa: F811
) -> None:
    settings: Settings = make_settings(status={"sample_interval_s": 0.5, "token": "tok-Fp22"})
    worker = start_worker(settings, "--topics", "ingest-preview")
    fixed, dropped = (_corrupt_upload(settings, tmp_path, n) for n in ("fixed.jpg", "dropped.jpg"))
    store = DeadLetters(settings.kafka, topics)
    wait_until(lambda: {e.uuid for e in store.entries()} == {fixed, dropped}, 60,
               lambda: worker.output()[-3000:])
    st = LocalStorage(settings.storage.root)
    assert not st.preview_path(fixed).exists()

    with _serve(settings, tmp_path) as url:
        page = browser.new_page(viewport={"width": 1300, "height": 1600})  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))
        page.goto(url + "/failed?every=1")
        page.wait_for_selector("#token-box:not([hidden])", timeout=20_000)
        page.fill("#token-input", "tok-Fp22")
        page.click("#token-form button")
        row = page.locator(f"#failed tbody tr[data-uuid='{fixed}']")
        row.wait_for(timeout=20_000)
        assert page.locator("#failed tbody tr[data-id]").count() == 2
        assert "2 matching" in page.inner_text("#total")
        assert "CorruptImage" in row.locator("td.err").inner_text()
        assert page.inner_text("#acting-as").startswith("token:")

        # the detail: error, stack, the original record (the upload event), every header
        row.locator("button.show").click()
        page.wait_for_function("uid => document.getElementById('d-fields').textContent.includes(uid)",
                               arg=fixed, timeout=20_000)
        assert "CorruptImage" in page.inner_text("#d-fields")
        assert f":{worker.proc.pid}" in page.inner_text("#d-fields")  # the worker that failed it
        assert "Traceback" in page.inner_text("#d-stack")
        assert fixed in page.inner_text("#d-value") and "fixed.jpg" in page.inner_text("#d-value")
        assert "kafka_dlt-exception-fqcn" in page.inner_text("#d-headers")
        assert page.inner_text("#d-lineage") == "not a replay"

        # a filter narrows the list server-side
        page.fill("#f-uuid", dropped)
        page.click("#filter-form button[type=submit]")
        page.wait_for_function("document.getElementById('total').textContent === '1 matching'",
                               timeout=20_000)
        page.fill("#f-uuid", "")
        page.click("#filter-form button[type=submit]")
        page.wait_for_function("document.getElementById('total').textContent === '2 matching'",
                               timeout=20_000)

        # fix the file where the upload was staged, then replay it: dry run, then confirm
        staged = st.root / find_upload(st, fixed).path
        staged.write_bytes(make_jpeg(tmp_path / "good.jpg", (1200, 900)).read_bytes())
        row.locator("button.replay").click()
        page.wait_for_selector("#confirm-box:not([hidden])", timeout=20_000)
        assert page.inner_text("#confirm-text").startswith("Dry run: 1 would be replayed")
        assert page.get_attribute("#confirm-box", "data-count") == "1"
        assert store.entries() and st.preview_path(fixed).exists() is False  # nothing sent yet
        page.click("#confirm-go")
        wait_until(lambda: st.preview_path(fixed).exists(), 60, lambda: worker.output()[-3000:])
        row.wait_for(state="detached", timeout=20_000)

        other = page.locator(f"#failed tbody tr[data-uuid='{dropped}']")
        other.locator("button.forget").click()
        page.wait_for_function(
            "document.getElementById('confirm-text').textContent.startsWith('Dry run: 1 would be forgotten')",
            timeout=20_000)
        page.click("#confirm-go")
        other.wait_for(state="detached", timeout=20_000)
        page.wait_for_function("document.getElementById('total').textContent === '0 matching'",
                               timeout=20_000)

        history = page.locator("#actions tbody tr[data-state='done']")
        page.wait_for_function("document.querySelectorAll(\"#actions tbody tr[data-state='done']\")"
                               ".length === 2", timeout=20_000)
        texts = history.all_inner_texts()
        assert [t.split("\t")[1] for t in texts] == ["forget", "replay"], texts
        assert all("token:" in t for t in texts)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        assert errors == [] and outside == []

    # the CLI sees what the page did
    assert store.entries() == []
    resolved = store.resolved()
    assert {v.get("how") for v in resolved.values()} == {"replay", "forget"}
    listing = cli(settings, "failed")
    assert listing.output.strip() == "no unresolved dead letters", listing.output
