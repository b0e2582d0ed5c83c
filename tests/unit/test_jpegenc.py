"""The project's progressive JPEG encoder (imaging/_jpegenc.c): the same pixels as Pillow's
progressive encoder at the same quality, a valid progressive file with our short scan script,
the sRGB profile and EXIF carried, bad arguments refused, and the Pillow fallback."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import pytest
from PIL import Image, ImageChops

from imaging import render
from imaging.color import SRGB_ICC
from imaging.render import Carry, encode
from tests.support import samples
from tests.support.extensions import require


@pytest.fixture
def jpegenc() -> ModuleType:
    return require(render._jpegenc, "_jpegenc")


def pillow_progressive(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, progressive=True, icc_profile=SRGB_ICC)
    return buf.getvalue()


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.copy()


def markers(data: bytes) -> list[int]:
    """The JPEG's marker codes up to and including each SOS (entropy data skipped)."""
    out, i = [], 2
    while i + 2 <= len(data):
        assert data[i] == 0xFF, f"no marker at {i}"
        code = data[i + 1]
        out.append(code)
        if code == 0xD9:
            break
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if code == 0xDA:  # skip entropy-coded data to the next marker that is not RST/stuffing
            while not (data[i] == 0xFF and data[i + 1] not in (0x00, *range(0xD0, 0xD8))):
                i += 1
    return out


@pytest.mark.parametrize(("size", "mode", "quality"), [
    ((1001, 667), "RGB", 85),  # not a multiple of the 16 px MCU
    ((640, 480), "RGB", 92),
    ((333, 500), "L", 85),
    ((1, 1), "RGB", 50),
])
def test_same_pixels_as_pillows_progressive(jpegenc: ModuleType, size: tuple[int, int], mode: str,
                                            quality: int) -> None:
    im = samples.scene(size).convert(mode)
    ours = encode(im, quality)
    theirs = pillow_progressive(im, quality)
    assert ImageChops.difference(decoded(ours.data), decoded(theirs)).getbbox() is None
    assert (ours.width, ours.height) == size


def extreme(kind: str) -> tuple[Image.Image, int]:
    """Inputs at the ends of what the scans hold, with the quality that reaches them."""
    if kind == "flat":  # every AC band empty: end-of-band runs past their 32767 limit
        return Image.new("RGB", (2048, 1152), (90, 140, 200)), 85
    if kind == "noise":  # quality 100 on noise: AC coefficients at their 10-bit limit
        return Image.effect_noise((320, 240), 120).convert("RGB"), 100
    if kind == "blocks":  # black and white blocks: 11-bit DC differences at quality 100
        cells = bytes(255 * ((x // 8 + y // 8) % 2) for y in range(128) for x in range(256))
        return Image.frombytes("L", (256, 128), cells).convert("RGB"), 100
    assert kind == "q1"
    return samples.scene((500, 333)), 1


@pytest.mark.parametrize("kind", ["flat", "noise", "blocks", "q1"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_same_pixels_at_the_ends_of_the_code_space(jpegenc: ModuleType, kind: str, mode: str) -> None:
    im, quality = extreme(kind)
    im = im.convert(mode)
    ours = encode(im, quality)
    theirs = pillow_progressive(im, quality)
    assert ImageChops.difference(decoded(ours.data), decoded(theirs)).getbbox() is None
    assert markers(ours.data).count(0xDA) == (5 if mode == "RGB" else 3)


def libjpeg_h2v2(plane: Image.Image) -> Image.Image:
    """libjpeg's 4:2:0 downsampling of a plane (jcsample.c h2v2_downsample): edges repeated
    to even sizes, each 2x2 summed with a bias alternating 1, 2 along the row, over 4."""
    w, h = plane.size
    px = plane.load()
    assert px is not None
    at = lambda x, y: px[min(x, w - 1), min(y, h - 1)]  # noqa: E731
    cw, ch = (w + 1) // 2, (h + 1) // 2
    out = bytes((at(2 * x, 2 * y) + at(2 * x + 1, 2 * y) + at(2 * x, 2 * y + 1)
                 + at(2 * x + 1, 2 * y + 1) + 1 + x % 2) >> 2 for y in range(ch) for x in range(cw))
    return Image.frombytes("L", (cw, ch), out)


# odd sizes whose chroma fills its blocks: past them libjpeg pads the image before it
# downsamples, and encode_planes pads the chroma planes (the padding differs, not the scans)
@pytest.mark.parametrize("size", [(63, 41), (320, 208), (1, 1)])
def test_planes_give_the_pixels_of_libjpegs_progressive_file(jpegenc: ModuleType,
                                                             size: tuple[int, int]) -> None:
    # encode_planes takes the planes libjpeg would make from the same YCbCr image itself
    # (Pillow saves a YCbCr image without converting it): the same coefficients, so the
    # same pixels as libjpeg's own progressive file
    ycc = samples.scene(size).convert("YCbCr")
    y, cb, cr = ycc.split()
    cb, cr = libjpeg_h2v2(cb), libjpeg_h2v2(cr)
    data = jpegenc.encode_planes(y.tobytes(), cb.tobytes(), cr.tobytes(), size[0], size[1],
                                 size[0], cb.width, 85)
    assert markers(data).count(0xDA) == 5
    buf = io.BytesIO()
    ycc.save(buf, "JPEG", quality=85, progressive=True)
    assert ImageChops.difference(decoded(data), decoded(buf.getvalue())).getbbox() is None


def test_the_scans_are_written_by_the_projects_coder(jpegenc: ModuleType) -> None:
    # Debian's libjpeg-turbo (scripts/setup, the image) is one imaging/_progressive.c knows;
    # a build that fell back to libjpeg's own progressive mode would be a third slower
    assert jpegenc.OWN_SCANS == 1


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(("size", "mode"), [((37, 23), "RGB"), ((53, 70), "L"), ((640, 427), "RGB")])
def test_orientation_is_applied_while_packing(jpegenc: ModuleType, orientation: int, size: tuple[int, int],
                                              mode: str) -> None:
    # sizes off the 16-row batch and the MCU; the same pixels as Pillow's transpose, then encode
    im = samples.scene(size).convert(mode)
    ours = encode(im, 85, orientation=orientation)
    want = render.upright(im, orientation)
    assert (ours.width, ours.height) == want.size
    theirs = decoded(pillow_progressive(want, 85))
    assert ImageChops.difference(decoded(ours.data), theirs).getbbox() is None


def test_a_progressive_file_with_the_short_scan_script(jpegenc: ModuleType) -> None:
    data = encode(samples.scene((800, 600)), 85).data
    codes = markers(data)
    assert 0xC2 in codes and 0xC0 not in codes and 0xC1 not in codes  # SOF2: progressive
    assert codes.count(0xDA) == 5 and codes[-1] == 0xD9
    assert markers(encode(samples.scene((80, 60)).convert("L"), 85).data).count(0xDA) == 3
    with Image.open(io.BytesIO(data)) as im:
        assert im.info.get("progressive") and im.info.get("icc_profile") == SRGB_ICC
        assert im.mode == "RGB" and im.layer[1][1:3] == (1, 1)  # chroma 4:2:0, as Pillow's default


def test_exif_is_carried(jpegenc: ModuleType) -> None:
    exif = Carry(copyright="(c) Jane Doe", gps=(48.8584, 2.2945, 35.0)).exif_bytes(keep_gps=True)
    with Image.open(io.BytesIO(encode(samples.scene((64, 48)), 85, exif).data)) as im:
        got = Carry.from_exif(im.getexif())
    assert got.copyright == "(c) Jane Doe"
    assert got.gps == pytest.approx((48.8584, 2.2945, 35.0), abs=1e-4)


def test_bad_arguments_are_refused(jpegenc: ModuleType) -> None:
    px = bytes(4 * 3 * 3)
    with pytest.raises(ValueError, match="bytes of pixels"):
        jpegenc.encode(px, 4, 4, 3, 85)
    with pytest.raises(ValueError, match="components"):
        jpegenc.encode(px, 4, 3, 2, 85)
    with pytest.raises(ValueError, match="quality"):
        jpegenc.encode(px, 4, 3, 3, 0)
    with pytest.raises(ValueError, match="no JPEG size"):
        jpegenc.encode(b"", 0, 3, 3, 85)
    with pytest.raises(ValueError, match="orientation"):
        jpegenc.encode(px, 4, 3, 3, 85, orientation=9)
    with pytest.raises(ValueError, match="EXIF"):
        jpegenc.encode(px, 4, 3, 3, 85, exif=b"Exif\0\0" + bytes(70000))
    with pytest.raises(ValueError, match="ICC"):  # past 255 APP2 chunks of 65519 bytes
        jpegenc.encode(px, 4, 3, 3, 85, icc=bytes(255 * 65519 + 1))


def test_a_large_icc_profile_spans_chunks(jpegenc: ModuleType) -> None:
    icc = bytes(range(256)) * 800  # 204,800 bytes: four APP2 segments
    data = jpegenc.encode(bytes(8 * 8 * 3), 8, 8, 3, 85, icc=icc)
    assert markers(data).count(0xE2) == 4
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["icc_profile"] == icc


def test_buffers_are_let_go_on_every_path(jpegenc: ModuleType) -> None:
    # a bytearray with an exported buffer cannot be resized: a leak shows as BufferError
    px, icc, exif = bytearray(4 * 3 * 3), bytearray(b""), bytearray(b"Exif\0\0")
    jpegenc.encode(px, 4, 3, 3, 85, icc=icc, exif=exif)
    with pytest.raises(ValueError):
        jpegenc.encode(px, 4, 3, 3, 0, icc=icc, exif=exif)
    for b in (px, icc, exif):
        b.extend(b"\0")


def test_threads_encode_at_once(jpegenc: ModuleType) -> None:
    # the encoder runs without the GIL: concurrent calls must not share state
    ims = [samples.scene((400 + 16 * i, 300)) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda im: encode(im, 85).data, ims * 3))
    alone = [encode(im, 85).data for im in ims]
    assert together == alone * 3


def test_pillow_fallback_without_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    im = samples.scene((300, 200))
    monkeypatch.setattr(render, "_jpegenc", None)
    data = encode(im, 85).data
    assert data == pillow_progressive(im, 85)
    turned = encode(im, 85, orientation=6)
    assert (turned.width, turned.height) == (200, 300)
    assert turned.data == pillow_progressive(render.upright(im, 6), 85)
