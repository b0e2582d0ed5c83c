"""Hostile inputs end in a classified ImagingError with a clear message: never a crash, never a hang."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imaging import (
    CorruptImage,
    Imager,
    ImageTooLarge,
    ImagingConfig,
    ImagingError,
    StorageUnavailable,
    UnsupportedFormat,
)
from imaging.probe import QUICK_PROBE_MIN_EDGE
from tests.support import samples

CFG = ImagingConfig(preview_long_edge=128, thumbnail_size=32, decode_timeout_s=30)


@pytest.fixture(scope="module")
def imager() -> Iterator[Imager]:
    with Imager(CFG) as im:
        yield im


def jpeg_bytes(size: tuple[int, int] = (320, 240)) -> bytes:
    buf = io.BytesIO()
    samples.photo(size).save(buf, "JPEG", quality=90, exif=samples.camera_exif(6).tobytes())
    return buf.getvalue()


def png_bomb(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels; its data is a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b"")


def expect(imager: Imager, path: Path, kind: type[ImagingError], words: str) -> ImagingError:
    with pytest.raises(ImagingError) as err:
        imager.preview(path)
    exc = err.value
    assert isinstance(exc, kind), f"{type(exc).__name__}: {exc}"
    assert words in str(exc) and path.name in str(exc)
    assert exc.attempts and not exc.attempts[-1].success and exc.attempts[-1].failure_reason
    assert exc.retriable is False
    return exc


def test_truncated_jpeg(imager: Imager, tmp_path: Path) -> None:
    data = jpeg_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    expect(imager, tmp_path / "cut.jpg", CorruptImage, "truncated")


def test_random_bytes(imager: Imager, tmp_path: Path) -> None:
    (tmp_path / "noise.jpg").write_bytes(os.urandom(4096))
    expect(imager, tmp_path / "noise.jpg", UnsupportedFormat, "not a recognised image format")


def test_zero_bytes(imager: Imager, tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    exc = expect(imager, tmp_path / "empty.jpg", CorruptImage, "empty file")
    assert exc.attempts[0].method_tried == "file_check"


def test_decompression_bomb_default_limit(imager: Imager, tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(png_bomb(100_000, 100_000))
    expect(imager, tmp_path / "bomb.png", ImageTooLarge, "pixels")


def test_pixel_and_file_limits_are_settings(tmp_path: Path) -> None:
    path = tmp_path / "ok.jpg"
    path.write_bytes(jpeg_bytes())
    with Imager(ImagingConfig(max_pixels=320 * 240 - 1)) as im:
        expect(im, path, ImageTooLarge, "over the limit")
    with Imager(ImagingConfig(max_file_bytes=1000)) as im:
        expect(im, path, ImageTooLarge, "bytes, over the limit")


def test_png_named_jpg_is_read_by_content(imager: Imager, tmp_path: Path) -> None:
    Image.new("RGB", (200, 100), (0, 0, 255)).save(tmp_path / "really-a-png.jpg", "PNG")
    r = imager.preview(tmp_path / "really-a-png.jpg")
    assert (r.preview.width, r.preview.height) == (128, 64)


@pytest.mark.parametrize("name", ["-o.jpg", "-ver", "-@ x.jpg", "a b 'c\" $(x) ü.jpg", "new\nline.jpg"])
def test_odd_file_names(imager: Imager, tmp_path: Path, name: str) -> None:
    path = samples.camera_jpeg(tmp_path / name, (400, 300), preview=(400, 300))
    r = imager.preview(path)
    assert r.attempts[0].success, r.attempts[0]  # exiftool read the file itself, not an option
    assert imager.metadata(path).metadata.make == "Canon"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written beside it


def test_missing_file_is_transient(imager: Imager, tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable) as err:
        imager.preview(tmp_path / "gone.jpg")
    assert err.value.retriable and "no such file" in str(err.value)


def test_not_an_image_metadata(imager: Imager, tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_bytes(b"hello, this is text\n" * 20)
    with pytest.raises(UnsupportedFormat) as err:
        imager.metadata(tmp_path / "notes.jpg")
    assert [a.method_tried for a in err.value.attempts] == ["exiftool", "pillow_exif"]


def mpo_bytes() -> bytes:
    buf = io.BytesIO()
    im = samples.photo((96, 64))
    im.save(buf, "MPO", save_all=True, append_images=[im.resize((48, 32))],
            exif=samples.camera_exif(6).tobytes())
    return buf.getvalue()


def dds_unknown_fourcc() -> bytes:
    """A DDS whose pixel format Pillow does not implement (it raises NotImplementedError)."""
    buf = io.BytesIO()
    Image.new("RGBA", (16, 16), 120).save(buf, "DDS")
    data = bytearray(buf.getvalue())
    struct.pack_into("<I", data, 80, 0x4)  # DDPF_FOURCC
    data[84:88] = b"ZZZZ"
    return bytes(data)


# One seed per format Pillow (and pillow-heif) can open and write here: the fuzz mutates
# each, and whatever a plugin raises on the result must come out classified.
_MODES = {"GIF": "P", "PCX": "RGB", "BMP": "RGB", "TGA": "RGB", "ICO": "RGBA", "JPEG2000": "RGB",
          "SGI": "RGB", "PPM": "RGB", "QOI": "RGBA", "HEIF": "RGB", "AVIF": "RGB", "DDS": "RGBA"}
SEEDS = {"jpeg": jpeg_bytes((96, 64)), "mpo": mpo_bytes(), "dds-fourcc": dds_unknown_fourcc()}
# Only the formats this Pillow build can write (Pillow-SIMD has no JPEG 2000 encoder, say).
for _fmt in ("PNG", "GIF", "TIFF", "WEBP", "BMP", "ICO", "DDS", "TGA", "PCX", "HEIF", "AVIF",
             "JPEG2000", "SGI", "PPM", "QOI"):
    _b = io.BytesIO()
    try:
        Image.new(_MODES.get(_fmt, "RGBA"), (48, 32), 120).save(_b, _fmt)
    except (OSError, KeyError, ValueError):
        continue
    SEEDS[_fmt.lower()] = _b.getvalue()


def test_every_seed_decodes_before_it_is_mutated(imager: Imager, tmp_path: Path) -> None:
    """The seeds are real images (else the fuzz only tests garbage)."""
    readable = []
    for name, data in SEEDS.items():
        path = tmp_path / f"seed-{name}"
        path.write_bytes(data)
        try:
            imager.preview(path)
            readable.append(name)
        except ImagingError:
            pass
    assert set(SEEDS) - set(readable) == {"dds-fourcc"}, readable


def test_a_format_variant_pillow_does_not_implement_is_unsupported(imager: Imager, tmp_path: Path) -> None:
    path = tmp_path / "x.dds"
    path.write_bytes(SEEDS["dds-fourcc"])
    with pytest.raises(UnsupportedFormat, match="not supported") as exc:
        imager.preview(path)
    assert exc.value.attempts


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[i: i + draw(st.integers(1, 64))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[i: i + 4] = b"\xff\xff\xff\xff"
    return bytes(data)


# Pillow warns about odd EXIF and such; in a worker that is a log line. pytest's
# filterwarnings=error would turn it into an exception no worker ever sees.
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_bytes_never_escape_unclassified(imager: Imager, tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.bin"
    path.write_bytes(data)
    try:
        r = imager.preview(path)
    except ImagingError as exc:
        assert str(exc) and exc.attempts
    else:
        assert r.preview.data[:2] == b"\xff\xd8" and r.thumbnail.width <= 32
    try:  # a preview-sized target: a JPEG's header is read by Pillow alone (quick_probe)
        e = imager.enhance(path, long_edge=QUICK_PROBE_MIN_EDGE)
    except ImagingError as exc:
        assert str(exc) and exc.attempts
    else:
        assert e.image.data[:2] == b"\xff\xd8"
    try:
        imager.metadata(path)
    except ImagingError as exc:
        assert str(exc) and exc.attempts
