"""``prophoto-ingest process``: the chain inline, outputs written, attempts printed, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from imaging.render import FAST_DECODER
from streams.cli import main
from tests.support import samples


def test_process_writes_outputs_and_prints_attempts(tmp_path: Path) -> None:
    good = samples.camera_jpeg(tmp_path / "cam.jpg", (800, 600), preview=(160, 120))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["process", str(good), str(bad), "--out", str(out), "--enhance"],
                             env={"INGEST_IMAGING__PREVIEW_LONG_EDGE": "300"})
    assert res.exit_code == 1, res.output
    decoder = "turbo_decode" if FAST_DECODER else "pillow_decode"
    assert "embedded_preview       FAIL" in res.output and f"{decoder:<22} ok" in res.output
    assert "UnsupportedFormat (permanent)" in res.output
    with Image.open(out / "cam.jpg" / "preview.jpg") as im:
        assert im.size == (300, 225)
    assert json.loads((out / "cam.jpg" / "metadata.json").read_text())["make"] == "Canon"
    assert (out / "cam.jpg" / "enhanced.jpg").exists() and not (out / "bad.jpg").exists()


def test_process_json_lines(tmp_path: Path) -> None:
    good = samples.camera_jpeg(tmp_path / "cam.jpg", (400, 300), preview=None)
    res = CliRunner().invoke(main, ["process", str(good), "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert {r["trace_type"] for r in rows} == {"preview_extraction", "thumbnail_generation",
                                               "metadata_extraction"}
