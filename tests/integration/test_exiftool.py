"""The shared exiftool process against the real exiftool: restarts after a hang or a death,
serves several threads at once, and never takes a file name for an option."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from imaging import ExiftoolTimeout, Imager, ImagingConfig
from imaging.exiftool import Exiftool
from imaging.render import FAST_DECODER
from tests.support import samples


@pytest.fixture
def jpeg(tmp_path: Path) -> Path:
    return samples.camera_jpeg(tmp_path / "c.jpg", (400, 300), preview=(400, 300))


def freeze(et: Exiftool, warm: Path) -> int:
    """Start exiftool, then stop it (SIGSTOP): from now on it hangs like a stuck NFS read."""
    et.json(["-FileType"], warm)
    assert et.pid is not None
    os.kill(et.pid, signal.SIGSTOP)
    return et.pid


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_hang_times_out_and_next_call_restarts(jpeg: Path) -> None:
    et = Exiftool(timeout_s=1.0)
    try:
        frozen = freeze(et, jpeg)
        with pytest.raises(ExiftoolTimeout, match="restarted"):
            et.json(["-FileType"], jpeg)
        assert gone(frozen)
        assert et.json(["-FileType"], jpeg)["FileType"] == "JPEG"
        assert et.restarts == 1 and et.pid != frozen
    finally:
        et.close()


def test_killed_process_is_replaced(jpeg: Path) -> None:
    et = Exiftool(timeout_s=10)
    try:
        et.json(["-FileType"], jpeg)
        assert et.pid is not None
        pid = et.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        # found dead before the next call: reaped, its pipes closed, a fresh one serves
        assert et.json(["-FileType"], jpeg)["FileType"] == "JPEG"
        assert et.restarts == 1 and et.pid not in (None, pid)
    finally:
        et.close()


def test_preview_survives_exiftool_hang_through_pillow(tmp_path: Path, jpeg: Path) -> None:
    path = samples.camera_jpeg(tmp_path / "big.jpg", (600, 400), preview=(600, 400))
    with Imager(ImagingConfig(preview_long_edge=128, exiftool_timeout_s=1.0)) as im:
        freeze(im.exiftool, jpeg)
        r = im.preview(path)
        assert "did not answer" in (r.attempts[0].failure_reason or "")
        decoder = "turbo_decode" if FAST_DECODER else "pillow_decode"
        assert r.attempts[1].method_tried == decoder and r.attempts[1].success
        assert im.preview(path).attempts[0].success  # a fresh exiftool serves the next call


def test_raw_with_exiftool_hang_is_transient(tmp_path: Path, jpeg: Path) -> None:
    raw = samples.raw_like(tmp_path / "x.nef", samples.photo((300, 200)))
    with Imager(ImagingConfig(exiftool_timeout_s=1.0)) as im:
        freeze(im.exiftool, jpeg)
        with pytest.raises(ExiftoolTimeout) as err:
            im.preview(raw)
    assert err.value.retriable and err.value.attempts[0].method_tried == "embedded_preview"


def test_many_threads_share_one_process(tmp_path: Path) -> None:
    files = [samples.camera_jpeg(tmp_path / f"{i}.jpg", (300, 200), preview=(300, 200)) for i in range(6)]
    files += [samples.raw_like(tmp_path / f"{i}.nef", samples.photo((300, 200))) for i in range(6)]
    with Imager(ImagingConfig(preview_long_edge=128, thumbnail_size=32)) as im, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: (im.preview(p), im.metadata(p)), files * 3))
        assert im.exiftool.restarts == 0
    for (prev, meta), path in zip(results, files * 3, strict=True):
        assert prev.attempts[0].success and prev.from_embedded
        assert meta.metadata.file_type == ("NEF" if path.suffix == ".nef" else "JPEG")
