"""The fast JPEG decode (imaging/_jpegdec.c): the pixels Pillow decodes, at every scale the
pipeline uses, on the JPEG variants cameras and editors write; what it leaves to Pillow; and
hostile input ending in an exception, never a crash (mutated files, scan bombs, lying headers)."""

from __future__ import annotations

import io
import math
import platform
import random
import struct
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageStat

from imaging import (
    CorruptImage,
    DecodeTimeout,
    Imager,
    ImageTooLarge,
    ImagingConfig,
    UnsupportedFormat,
    render,
)
from imaging.render import TURBO_SCALES, turbo_scale
from tests.support import samples
from tests.support.extensions import require


@pytest.fixture(scope="module")
def jpegdec() -> ModuleType:
    return require(render._jpegdec, "_jpegdec")


def jpeg(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **{"quality": 90, **kw})
    return buf.getvalue()


def pillow_at(data: bytes, n: int) -> Image.Image:
    """Pillow's decode at n/8, as render.decode_stored asks for it (draft; 3/8 by hand)."""
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        if n == 3:
            tile = im.tile[0]
            im._size = ((w * 3 + 7) // 8, (h * 3 + 7) // 8)
            im.tile = [tile._replace(extents=(0, 0, *im.size))]
            im.decoderconfig = (3, 0)
        elif n != 8:
            # draft() takes the largest 1/s keeping both sides >= the request: ask for the floor
            im.draft(im.mode, (max(1, w * n // 8), max(1, h * n // 8)))
        im.load()
        return im.copy()


def max_diff(a: Image.Image, b: Image.Image) -> int:
    assert a.size == b.size and a.mode == b.mode
    ext = ImageChops.difference(a, b).getextrema()
    return max(hi for _, hi in ext) if a.mode != "L" else int(ext[1])  # type: ignore[index, arg-type]


def ours(jpegdec: ModuleType, data: bytes, n: int) -> Image.Image:
    got = jpegdec.decode(data, n)
    assert got is not None
    pixels, w, h, c, _ = got
    assert len(pixels) == w * h * c
    return Image.frombytes("RGB" if c == 3 else "L", (w, h), pixels)


SCENE = samples.scene((333, 251))  # not a multiple of any MCU, odd both ways
VARIANTS: dict[str, bytes] = {
    "444": jpeg(SCENE, subsampling=0),
    "422": jpeg(SCENE, subsampling=1),
    "420": jpeg(SCENE, subsampling=2),
    "gray": jpeg(SCENE.convert("L")),
    "progressive": jpeg(SCENE, progressive=True),
    "progressive-gray": jpeg(SCENE.convert("L"), progressive=True),
    "restart-rows": jpeg(SCENE, restart_marker_rows=1),
    "restart-blocks": jpeg(SCENE, restart_marker_blocks=5, progressive=True),
    "q100-444": jpeg(SCENE, quality=100, subsampling=0),
    "icc": jpeg(SCENE, icc_profile=samples.adobe_rgb_icc()),
    "tiny": jpeg(SCENE.resize((1, 1))),
}


# the scales Pillow can ask libjpeg for (1/denominator; 3 gives 3/8)
PILLOW_SCALES = (1, 2, 3, 4, 8)


@pytest.mark.parametrize("n", PILLOW_SCALES)
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_same_pixels_as_pillow(jpegdec: ModuleType, name: str, n: int) -> None:
    data = VARIANTS[name]
    a, b = ours(jpegdec, data, n), pillow_at(data, n)
    assert max_diff(a, b) == 0, f"{name} at {n}/8"


def psnr(a: Image.Image, b: Image.Image) -> float:
    sum2 = sum(ImageStat.Stat(ImageChops.difference(a, b)).sum2)
    return 10 * math.log10(255**2 * a.width * a.height * len(a.getbands()) / max(sum2, 1e-9))


def gradients(size: tuple[int, int]) -> Image.Image:
    g = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", [g, g.transpose(Image.Transpose.ROTATE_90).resize(size),
                               Image.radial_gradient("L").resize(size)])


@pytest.mark.parametrize("n", sorted(set(TURBO_SCALES) - set(PILLOW_SCALES)))
@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_scales_pillow_cannot_ask_for_are_a_faithful_downscale(jpegdec: ModuleType, subsampling: int,
                                                                n: int) -> None:
    """5/8..7/8 (enhance's): no Pillow decode to compare with, so against Pillow's full decode
    resampled to the same size, on smooth content (where any two good filters agree: a shifted
    or misscaled decode would not). Detail differs more: the IDCT drops the top frequencies
    of each block, which bench/imaging.py measures on a camera-like file after the encode."""
    data = jpeg(gradients((641, 479)), quality=95, subsampling=subsampling)
    a, full = ours(jpegdec, data, n), pillow_at(data, 8)
    assert a.size == ((full.width * n + 7) // 8, (full.height * n + 7) // 8)
    assert psnr(a, full.resize(a.size, Image.Resampling.LANCZOS)) > 45


# -- decode_planes' 3/8 IDCT in SSE4.1: libjpeg's pixels, to the bit ---------------------------
def has_sse41() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return platform.machine() == "x86_64" and cpuinfo.exists() and " sse4_1" in cpuinfo.read_text()


def planes_both_ways(jpegdec: ModuleType, data: bytes) -> tuple[object, object]:
    """decode_planes at 3/8 with the SSE4.1 IDCT, then with libjpeg's own."""
    had = jpegdec.sse41_idct3()
    try:
        jpegdec.sse41_idct3(True)
        fast = jpegdec.decode_planes(data, 3)
        jpegdec.sse41_idct3(False)
        return fast, jpegdec.decode_planes(data, 3)
    finally:
        jpegdec.sse41_idct3(had)


def sixteen_bit_quantizers(data: bytes, factor: int) -> bytes:
    """``data`` with every quantization table rewritten at 16-bit precision, each value times
    ``factor`` (capped at 65535): the same coefficients dequantized past what an 8-bit file
    reaches, and past 32767, where the SSE4.1 IDCT hands the block to libjpeg's."""
    out, i = bytearray(data[:2]), 2
    while i < len(data):
        marker, n = data[i + 1], struct.unpack(">H", data[i + 2: i + 4])[0]
        if marker == 0xDB:
            seg, body, k = data[i + 4: i + 2 + n], bytearray(), 0
            while k < len(seg):
                wide, table = seg[k] >> 4, seg[k] & 15
                values = struct.unpack(">64H", seg[k + 1: k + 129]) if wide else seg[k + 1: k + 65]
                k += 129 if wide else 65
                body += bytes([0x10 | table]) + struct.pack(">64H", *(min(65535, v * factor) for v in values))
            out += b"\xff\xdb" + struct.pack(">H", len(body) + 2) + body
        else:
            out += data[i: i + 2 + n]
        i += 2 + n
        if marker == 0xDA:  # the scan and what follows, as they are
            return bytes(out + data[i:])
    return bytes(out)


NOISE = Image.frombytes("RGB", (203, 141), random.Random(7).randbytes(203 * 141 * 3))
IDCT3_INPUTS: dict[str, bytes] = {
    **{name: data for name, data in VARIANTS.items() if "gray" not in name},
    "noise-q100": jpeg(NOISE, quality=100, subsampling=0),  # the largest coefficients a file has
    "noise-q100-420": jpeg(NOISE, quality=100, progressive=True),
    **{f"quantizers-x{f}": sixteen_bit_quantizers(VARIANTS["420"], f) for f in (30, 4000, 40000)},
}


@pytest.mark.parametrize("name", sorted(IDCT3_INPUTS))
def test_the_sse41_idct_gives_libjpegs_pixels(jpegdec: ModuleType, name: str) -> None:
    # on where the CPU has it, so that this compares two routines, not one with itself
    assert jpegdec.sse41_idct3() == has_sse41()
    fast, plain = planes_both_ways(jpegdec, IDCT3_INPUTS[name])
    assert fast is not None and fast == plain


def test_a_camera_file_and_its_icc_profile(jpegdec: ModuleType, tmp_path: Path) -> None:
    path = samples.camera_jpeg(tmp_path / "c.jpg", (600, 400), orientation=6, quality=92,
                               image=samples.scene((600, 400)), icc=samples.adobe_rgb_icc())
    data = path.read_bytes()
    assert max_diff(ours(jpegdec, data, 4), pillow_at(data, 4)) == 0
    with Image.open(path) as im:
        assert jpegdec.decode(data, 8)[4] == im.info["icc_profile"] == samples.adobe_rgb_icc()
    assert jpegdec.decode(VARIANTS["420"])[4] is None


def test_cmyk_and_ycck_are_left_to_pillow(jpegdec: ModuleType, tmp_path: Path) -> None:
    cmyk = jpeg(SCENE.convert("CMYK"))
    assert jpegdec.decode(cmyk, 4) is None
    # and the pipeline decodes it with Pillow, saying so
    (tmp_path / "cmyk.jpg").write_bytes(cmyk)
    with Imager(ImagingConfig(preview_long_edge=128, thumbnail_size=32)) as imager:
        r = imager.preview(tmp_path / "cmyk.jpg")
        (tmp_path / "rgb.jpg").write_bytes(VARIANTS["420"])
        rgb = imager.preview(tmp_path / "rgb.jpg")
    assert [a.method_tried for a in r.attempts[1:2]] == ["pillow_decode"]
    assert [a.method_tried for a in rgb.attempts[1:2]] == ["turbo_decode"]


def test_the_scale_covers_the_target() -> None:
    assert turbo_scale((6000, 4000), (2048, 1365)) == 3  # 2250x1500
    assert turbo_scale((6000, 4000), (4096, 2731)) == 6  # 4500x3000
    assert turbo_scale((6000, 4000), (400, 267)) == 1
    assert turbo_scale((6000, 4000), (6000, 4000)) == 8
    for w, h in [(333, 251), (1, 1), (4001, 17)]:
        for tw in range(1, w + 1, 37):
            th = max(1, round(h * tw / w))
            n = turbo_scale((w, h), (tw, th))
            assert (w * n + 7) // 8 >= tw and (h * n + 7) // 8 >= th


def test_truncated_data_is_an_error_as_in_pillow(jpegdec: ModuleType) -> None:
    for name in ("420", "progressive", "restart-rows"):
        data = VARIANTS[name]
        for cut in (len(data) // 3, len(data) - 3):
            with pytest.raises(OSError, match=r"truncated|JPEG decoder"):
                jpegdec.decode(data[:cut], 4)
            with pytest.raises(OSError):
                pillow_at(data[:cut], 4)


def test_truncated_file_through_the_pipeline_is_corrupt(tmp_path: Path) -> None:
    data = VARIANTS["420"]
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with Imager(ImagingConfig(preview_long_edge=128, thumbnail_size=32)) as imager, \
            pytest.raises(CorruptImage, match="truncated") as err:
        imager.preview(tmp_path / "cut.jpg")
    methods = [(a.method_tried, a.success) for a in err.value.attempts]
    # refused by libjpeg-turbo, then by Pillow: both tries on record
    assert methods[-2:] == [("turbo_decode", False), ("pillow_decode", False)], methods


def sof_size(data: bytes, w: int, h: int) -> bytes:
    """``data`` with its frame header claiming w x h."""
    i = data.index(b"\xff\xc0")
    return data[: i + 5] + struct.pack(">HH", h, w) + data[i + 9:]


def test_a_lying_header_is_too_large_before_any_pixel(jpegdec: ModuleType) -> None:
    huge = sof_size(VARIANTS["420"], 60000, 60000)
    start = time.perf_counter()
    with pytest.raises(jpegdec.TooLarge, match="over the limit"):
        jpegdec.decode(huge, 8, max_pixels=200_000_000)
    assert time.perf_counter() - start < 5  # refused at the header, nothing allocated
    # under the pixel limit, libjpeg's memory cap still stops a progressive file's coefficients
    big = jpeg(samples.scene((1024, 1024)), progressive=True)
    with pytest.raises(jpegdec.TooLarge):
        jpegdec.decode(big, 8, max_memory=1 << 20)


def test_the_pipeline_refuses_a_lying_header(tmp_path: Path) -> None:
    (tmp_path / "bomb.jpg").write_bytes(sof_size(VARIANTS["420"], 30000, 30000))
    with Imager(ImagingConfig(preview_long_edge=128, max_pixels=100_000_000)) as imager, \
            pytest.raises(ImageTooLarge):
        imager.preview(tmp_path / "bomb.jpg")


def scan_bomb(scans: int) -> bytes:
    """A progressive JPEG repeating one (empty-ish) refinement scan ``scans`` times."""
    data = jpeg(SCENE.convert("L").resize((16, 16)), progressive=True)
    sos = data.rindex(b"\xff\xda")
    eoi = data.rindex(b"\xff\xd9")
    # the last scan of libjpeg's gray script is an AC refinement: repeating it is legal
    return data[:sos] + data[sos:eoi] * scans + data[eoi:]


def test_a_scan_bomb_is_refused(jpegdec: ModuleType) -> None:
    assert jpegdec.decode(scan_bomb(10), 8) is not None
    with pytest.raises(OSError, match="progressive scans"):
        jpegdec.decode(scan_bomb(5000), 8)


def test_the_deadline_is_checked_inside_the_decode(jpegdec: ModuleType, tmp_path: Path) -> None:
    data = jpeg(samples.scene((2000, 1500)))
    with pytest.raises(jpegdec.Timeout):
        jpegdec.decode(data, 8, deadline=time.monotonic() - 1)
    assert jpegdec.decode(data, 8, deadline=time.monotonic() + 60) is not None
    (tmp_path / "slow.jpg").write_bytes(data)
    with Imager(ImagingConfig(preview_long_edge=1024, decode_timeout_s=-1)) as imager, \
            pytest.raises(DecodeTimeout) as err:
        imager.preview(tmp_path / "slow.jpg")
    assert err.value.retriable and err.value.attempts[-1].method_tried == "turbo_decode"


def test_bad_arguments_are_refused(jpegdec: ModuleType) -> None:
    data = VARIANTS["420"]
    for n in (0, 9, -1):
        with pytest.raises(ValueError, match="scale"):
            jpegdec.decode(data, n)
    with pytest.raises(OSError):
        jpegdec.decode(b"", 8)
    with pytest.raises(OSError):
        jpegdec.decode(b"\xff\xd8\xff", 8)
    with pytest.raises(TypeError):
        jpegdec.decode("not bytes", 8)


@pytest.mark.parametrize("decode", ["decode", "decode_planes"])
def test_buffers_are_let_go_on_every_path(jpegdec: ModuleType, decode: str) -> None:
    """The pixel buffers are bytes objects made mid-decode: a decode failing after they
    exist (truncated data, past the deadline) must release them."""
    data = jpeg(samples.scene((400, 300)))
    cut = data[: len(data) * 2 // 3]
    fn = getattr(jpegdec, decode)

    def churn() -> None:
        for _ in range(50):
            with pytest.raises(OSError):
                fn(cut, 8)
            fn(data, 3)

    churn()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        churn()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 400 * 300  # not one full-size plane kept


@pytest.mark.parametrize("decode", ["decode", "decode_planes"])
def test_threads_decode_at_once(jpegdec: ModuleType, decode: str) -> None:
    """The same answer from 8 decodes on 4 threads (the planes' padding too: it repeats the
    edge, where libjpeg leaves dummy blocks' samples unwritten)."""
    data = jpeg(samples.scene((800, 600)))
    fn = getattr(jpegdec, decode)
    want = fn(data, 3)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: fn(data, 3), range(8)))
    assert all(g == want for g in got)


def test_pillow_fallback_without_the_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(render, "_jpegdec", None)
    (tmp_path / "x.jpg").write_bytes(VARIANTS["420"])
    with Imager(ImagingConfig(preview_long_edge=128, thumbnail_size=32)) as imager:
        r = imager.preview(tmp_path / "x.jpg")
    assert r.attempts[1].method_tried == "pillow_decode" and r.attempts[1].success


def test_the_fast_path_matches_the_pillow_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """End to end: the same preview pixels whichever decoder ran (both resample alike). The
    packed decode, that is: a YCbCr file in sRGB takes the planar one first, which resamples
    chroma at its own size (tests/unit/test_planes.py holds it to the full decode instead)."""
    path = samples.camera_jpeg(tmp_path / "c.jpg", (1200, 800), orientation=6, quality=92,
                               image=samples.scene((1200, 800)), preview=(160, 106))
    cfg = ImagingConfig(preview_long_edge=450, thumbnail_size=64)
    assert render._jpegdec is not None
    monkeypatch.setattr(render._jpegdec, "decode_planes", lambda *a, **k: None)
    with Imager(cfg) as imager:
        fast = imager.preview(path)
        monkeypatch.setattr(render, "_jpegdec", None)
        slow = imager.preview(path)
    assert fast.attempts[1].method_tried == "turbo_decode"
    assert slow.attempts[1].method_tried == "pillow_decode"
    with Image.open(io.BytesIO(fast.preview.data)) as a, Image.open(io.BytesIO(slow.preview.data)) as b:
        assert a.size == b.size == (300, 450)
        assert max_diff(a.convert("RGB"), b.convert("RGB")) == 0


# -- fuzz: mutated JPEGs of every variant, every scale -------------------------------------
@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(VARIANTS[draw(st.sampled_from(sorted(VARIANTS)))])
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "marker", "size"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[i: i + draw(st.integers(1, 64))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "marker":
            data[i: i + 2] = b"\xff" + bytes([draw(st.sampled_from([0xC0, 0xC2, 0xC4, 0xDA, 0xDB, 0xDD,
                                                                    0xD9, 0xD0, 0xE2, 0xFF]))])
        else:  # a frame header with other dimensions
            j = bytes(data).find(b"\xff\xc0")
            j = j if j >= 0 else bytes(data).find(b"\xff\xc2")
            if j >= 0 and j + 9 <= len(data):
                wh = draw(st.tuples(st.integers(0, 65535), st.integers(0, 65535)))
                data[j + 5: j + 9] = struct.pack(">HH", *wh)
    return bytes(data)


@settings(max_examples=600, deadline=None)
@given(data=mutated(), n=st.sampled_from(TURBO_SCALES))
def test_mutated_jpegs_end_in_an_exception_or_pixels(data: bytes, n: int) -> None:
    if render._jpegdec is None:
        pytest.skip("imaging._jpegdec is not built here")
    dec = render._jpegdec
    limits = {"max_pixels": 50_000_000, "max_memory": 400_000_000, "deadline": time.monotonic() + 30}
    try:
        got = dec.decode(data, n, **limits)
    except (OSError, dec.TooLarge, dec.Timeout) as exc:
        assert str(exc).startswith("JPEG decoder: ")
    else:
        if got is not None:
            pixels, w, h, c, _ = got
            assert len(pixels) == w * h * c and c in (1, 3)
    # the planar decode of the same bytes
    try:
        planes = dec.decode_planes(data, n, **limits)
    except (OSError, dec.TooLarge, dec.Timeout) as exc:
        assert str(exc).startswith("JPEG decoder: ")
    else:
        if planes is not None:
            *three, w, h, hs, vs, _ = planes
            assert (hs, vs) in ((1, 1), (2, 1), (1, 2), (2, 2))
            for (buf, pw, ph, stride), (sx, sy) in zip(three, ((1, 1), (hs, vs), (hs, vs)), strict=True):
                assert (pw, ph) == (-(-w // sx), -(-h // sy)) and stride > pw
                assert len(buf) >= stride * (ph + 1)
            if n == 3:  # hostile coefficients through the SSE4.1 IDCT: libjpeg's pixels still
                assert planes_both_ways(dec, data) == (planes, planes)


@pytest.fixture(scope="module")
def imager() -> Iterator[Imager]:
    with Imager(ImagingConfig(preview_long_edge=128, thumbnail_size=32, decode_timeout_s=30)) as im:
        yield im


# Pillow warns about odd EXIF and such (see test_imaging_hostile)
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_jpegs_through_the_pipeline_are_classified(imager: Imager, tmp_path: Path,
                                                           data: bytes) -> None:
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(data)
    try:
        r = imager.preview(path)
    except (CorruptImage, ImageTooLarge, UnsupportedFormat) as exc:
        assert str(exc) and exc.attempts and not exc.attempts[-1].success
        assert path.name in str(exc)
    else:
        assert r.preview.data[:2] == b"\xff\xd8" and math.isfinite(r.attempts[-1].duration_ms)
