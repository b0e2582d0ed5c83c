"""exiftool in a process that already holds more than 1024 descriptors: a long-lived worker
(or this test suite, after many chDB stores) gets there, and select() refuses them."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from imaging.exiftool import Exiftool


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1400
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    assert max(held) > 1024
    try:
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_exiftool_starts_and_answers_with_descriptors_above_1024(
    many_descriptors: None, tmp_path: Path
) -> None:
    img = tmp_path / "a.jpg"
    Image.new("RGB", (64, 48), (10, 20, 30)).save(img, quality=90)
    et = Exiftool(timeout_s=20)
    try:
        out = et.run(["-j", "-ImageWidth"], img)
        assert b'"ImageWidth": 64' in out.stdout, out
        assert et.pid is not None
    finally:
        et.close()
