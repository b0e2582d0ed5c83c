"""Helpers for integration tests: images to upload, the CLI in-process, reading topics."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

__all__ = ["CliRunner", "cli", "main", "make_jpeg", "read_topic"]
from PIL import Image

from streams.cli import main
from streams.kafka import TopicTail, reader_config
from streams.settings import Settings


def make_jpeg(path: Path, size: tuple[int, int], color: tuple[int, int, int] = (200, 120, 40)) -> Path:
    im = Image.new("RGB", size, color)
    # a little structure so the encoder does real work
    for x in range(0, size[0], 97):
        for y in range(size[1]):
            im.putpixel((x, y), (0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", quality=85)
    return path


def cli(settings: Settings, *args: str) -> Result:
    from tests.conftest import settings_env

    result = CliRunner().invoke(main, list(args), env=settings_env(settings), catch_exceptions=False)
    return result


def read_topic(settings: Settings, topic: str, *, expect: int, timeout: float = 30) -> list[Any]:
    """Every record of ``topic`` from the beginning until ``expect`` arrived or timeout."""
    import time

    out: list[Any] = []
    deadline = time.monotonic() + timeout
    with TopicTail(reader_config(settings.kafka, f"reader-{uuid.uuid4().hex}"), [topic]) as tail:
        while len(out) < expect and time.monotonic() < deadline:
            got = tail.read_new(deadline)
            out += got
            if not got:
                time.sleep(0.2)  # nothing new yet: the records are still being written
    return out
