"""The planar path (imaging/_jpegdec.c decode_planes, imaging/_jpegenc.c encode_planes,
render.Planes): a YCbCr JPEG's planes as the file stores them, resampled each at its own
size on the grid the encoder will see, and encoded without a trip through RGB. Luma is the
decoder's to the bit; chroma is the stored chroma at the scale; what is not YCbCr in sRGB
is left to the packed decode; hostile input ends in an exception, never a crash."""

from __future__ import annotations

import errno
import io
import math
import os
import time
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image, ImageChops, ImageStat

from imaging import Imager, ImagingConfig, StorageUnavailable, render
from imaging import planes as planes_module
from imaging.planes import REVERSED, Plane, Planes
from tests.support import samples
from tests.support.extensions import require


@pytest.fixture(scope="module")
def jpegdec() -> ModuleType:
    return require(render._jpegdec, "_jpegdec")


@pytest.fixture(scope="module")
def jpegenc() -> ModuleType:
    return require(render._jpegenc, "_jpegenc")


def jpeg(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **{"quality": 90, **kw})
    return buf.getvalue()


SCENE = samples.scene((333, 251))  # not a multiple of any MCU, odd both ways


def gradients(size: tuple[int, int]) -> Image.Image:
    g = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", [g, g.transpose(Image.Transpose.ROTATE_90).resize(size),
                               Image.radial_gradient("L").resize(size)])


# smooth colour, where upsampling chroma and bringing it back is near the identity
SMOOTH = gradients((333, 251))
YCC: dict[str, bytes] = {
    "444": jpeg(SCENE, subsampling=0),
    "422": jpeg(SCENE, subsampling=1),
    "420": jpeg(SCENE, subsampling=2),
    "progressive": jpeg(SCENE, progressive=True),
    "restart-rows": jpeg(SCENE, restart_marker_rows=1),
    "restart-blocks": jpeg(SCENE, restart_marker_blocks=5, progressive=True),
    "q100-444": jpeg(SCENE, quality=100, subsampling=0),
    "tiny": jpeg(SCENE.resize((1, 1))),
    "odd-420": jpeg(samples.scene((17, 9)), subsampling=2),
}


def planes(got: tuple[object, ...]) -> tuple[list[Image.Image], int, int, tuple[int, int]]:
    """decode_planes' answer as the planes' image areas, the image size and luma's sampling."""
    out = []
    for buf, w, h, stride in got[:3]:  # type: ignore[misc]
        assert isinstance(buf, bytes) and len(buf) >= stride * h and stride >= w
        out.append(Image.frombuffer("L", (stride, len(buf) // stride), buf, "raw", "L", 0, 1)
                   .crop((0, 0, w, h)))
    return out, int(got[3]), int(got[4]), (int(got[5]), int(got[6]))  # type: ignore[call-overload]


def pillow_ycc(data: bytes, n: int) -> Image.Image:
    """Pillow's decode at n/8 (1, 2, 4, 8) left in YCbCr: luma as libjpeg decodes it."""
    with Image.open(io.BytesIO(data)) as im:
        im.draft("YCbCr", (max(1, im.width * n // 8), max(1, im.height * n // 8)))
        assert im.mode == "YCbCr"
        im.load()
        return im.copy()


def psnr(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    sum2 = sum(ImageStat.Stat(ImageChops.difference(a, b)).sum2)
    return 10 * math.log10(255**2 * a.width * a.height * len(a.getbands()) / max(sum2, 1e-9))


@pytest.mark.parametrize("n", [1, 2, 4, 8])
@pytest.mark.parametrize("name", sorted(YCC))
def test_luma_is_the_decoders_and_chroma_the_stored_chroma(jpegdec: ModuleType, name: str,
                                                           n: int) -> None:
    data = YCC[name]
    (y, cb, cr), w, h, samp = planes(jpegdec.decode_planes(data, n))
    ref = pillow_ycc(data, n)
    assert (w, h) == ref.size == y.size
    assert ImageChops.difference(y, ref.getchannel("Y")).getextrema()[1] == 0, f"{name} at {n}/8"
    assert samp == {"444": (1, 1), "422": (2, 1)}.get(name[-3:], (2, 2))
    for plane in (cb, cr):
        assert plane.size == ((w + samp[0] - 1) // samp[0], (h + samp[1] - 1) // samp[1])
    # chroma at its own sampling: on smooth colour, Pillow's upsampled chroma brought back
    # to that size agrees (on detail the upsampling's blur shows, not a fault of either)
    opts = {"subsampling": {"444": 0, "422": 1}.get(name[-3:], 2),
            "progressive": "progressive" in name or "blocks" in name}
    smooth = jpeg(SMOOTH.resize((w * 8 // n, h * 8 // n)) if name == "tiny" else SMOOTH, **opts)
    (_, cb, cr), w, h, samp = planes(jpegdec.decode_planes(smooth, n))
    ref = pillow_ycc(smooth, n)
    for plane, band in ((cb, "Cb"), (cr, "Cr")) if min(cb.size) >= 8 else ():
        back = ref.getchannel(band).resize(plane.size, Image.Resampling.BOX)
        assert psnr(plane, back) > 40, f"{name} {band} at {n}/8"


def test_the_scales_pillow_cannot_ask_for_have_chroma_at_the_scale(jpegdec: ModuleType) -> None:
    """3/8 (the preview's), 6/8 (enhance's): chroma is the 3x3 or 6x6 IDCT of its own blocks,
    not libjpeg's 2x one that spares its upsampler (that undoing is the C code's one reach
    into libjpeg's internals)."""
    data = jpeg(SMOOTH, quality=95)
    full = pillow_ycc(data, 8)
    for n in (3, 5, 6, 7):
        (y, cb, cr), w, h, samp = planes(jpegdec.decode_planes(data, n))
        assert (w, h) == ((333 * n + 7) // 8, (251 * n + 7) // 8) and samp == (2, 2)
        assert cb.size == cr.size == ((w + 1) // 2, (h + 1) // 2)
        for plane, band in ((y, "Y"), (cb, "Cb"), (cr, "Cr")):
            assert psnr(plane, full.getchannel(band).resize(plane.size, Image.Resampling.LANCZOS)) > 40


def test_what_is_not_ycbcr_is_left_to_the_packed_decode(jpegdec: ModuleType, tmp_path: Path) -> None:
    assert jpegdec.decode_planes(jpeg(SCENE.convert("L")), 4) is None
    assert jpegdec.decode_planes(jpeg(SCENE.convert("CMYK")), 4) is None
    # through the pipeline: planes for sRGB, the packed decode for a profile to convert from
    srgb = samples.camera_jpeg(tmp_path / "s.jpg", (600, 400), quality=92, image=samples.scene((600, 400)))
    adobe = samples.camera_jpeg(tmp_path / "a.jpg", (600, 400), quality=92, image=samples.scene((600, 400)),
                                icc=samples.adobe_rgb_icc())
    for path, kind in ((srgb, Planes), (adobe, Image.Image)):
        with Image.open(path) as im:
            got = render.decode_turbo(im, ("fit", 200), path.name, time.monotonic() + 30, None, 10**8)
        assert got is not None and isinstance(got[0], kind), path.name


@pytest.mark.parametrize("orientation", range(1, 9))
def test_chroma_sits_on_the_grid_the_encoder_sees(orientation: int) -> None:
    """A chroma ramp (each sample's value its centre's position in luma pixels) resampled
    to an odd target: every sample must hold the position its 4:2:0 sample will have once
    the image is turned upright. The encoder pads an odd side at the upright right and
    bottom, which is the start of a stored axis the orientation runs backwards; taking the
    box as it is leaves each sample off by up to half a chroma sample (2.2 levels here)."""
    w, h, tw, th = 220, 200, 99, 91  # 2.2x down, odd both ways
    ramp_x = Image.new("L", (w // 2, h // 2))
    ramp_x.putdata([2 * i + 1 for _ in range(h // 2) for i in range(w // 2)])
    ramp_y = Image.new("L", (w // 2, h // 2))
    ramp_y.putdata([2 * j + 1 for j in range(h // 2) for _ in range(w // 2)])
    src = Planes(Plane.of(Image.new("L", (w, h), 128)), Plane.of(ramp_x), Plane.of(ramp_y), (w, h))
    out = src.resize((tw, th), Image.Resampling.BICUBIC, orientation=orientation)
    assert out.cb.size == out.cr.size == ((tw + 1) // 2, (th + 1) // 2)
    cb, cr = out.cb.image(), out.cr.image()
    back_x, back_y = REVERSED[orientation]
    sx, sy = w / tw, h / th
    for j in range(3, cb.width - 3):  # away from the edges' clamping
        centre = (2 * j if back_x else 2 * j + 1) * sx
        assert abs(cb.getpixel((j, 20)) - centre) <= 1, (j, centre)  # type: ignore[operator]
    for j in range(3, cr.height - 3):
        centre = (2 * j if back_y else 2 * j + 1) * sy
        assert abs(cr.getpixel((20, j)) - centre) <= 1, (j, centre)  # type: ignore[operator]


ARROW = samples.scene((61, 37))  # small, odd, nothing symmetric in it


def ycc_planes(im: Image.Image) -> tuple[Image.Image, Image.Image, Image.Image]:
    """4:2:0 planes as libjpeg makes them from RGB: odd sides padded with their last pixel,
    then each 2x2 averaged."""
    y, cb, cr = im.convert("YCbCr").split()
    even = (im.width + im.width % 2, im.height + im.height % 2)

    def half(p: Image.Image) -> Image.Image:
        return Plane.of(p).edge_padded(1).image().crop((1, 1, 1 + even[0], 1 + even[1])).reduce(2)

    return y, half(cb), half(cr)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_encode_planes_turns_the_image_upright(jpegenc: ModuleType, orientation: int) -> None:
    """Upright as render.upright turns it, and as close to it as Pillow's own 4:2:0 file of
    the upright image (small and detailed: chroma at half size costs both the same). Even
    sides, so that the planes made here sit on the encoder's chroma grid whatever the turn
    (odd ones are Planes.resize's business: test_chroma_sits_on_the_grid_the_encoder_sees)."""
    arrow = samples.scene((62, 38))
    y, cb, cr = ycc_planes(arrow)
    data = jpegenc.encode_planes(y.tobytes(), cb.tobytes(), cr.tobytes(), arrow.width, arrow.height,
                                 arrow.width, cb.width, 95, orientation=orientation)
    with Image.open(io.BytesIO(data)) as got:
        assert got.format == "JPEG" and got.info.get("progressive")
        got = got.convert("RGB")
    scores = {o: psnr(got, render.upright(arrow, o)) for o in range(1, 9)
              if render.upright_size(arrow.size, o) == got.size}
    assert max(scores, key=lambda o: scores[o]) == orientation, scores
    upright = render.upright(arrow, orientation)
    with Image.open(io.BytesIO(jpeg(upright, quality=95, subsampling=2))) as theirs:
        assert scores[orientation] > psnr(theirs.convert("RGB"), upright) - 1.0


def test_encode_planes_pads_from_strided_rows(jpegenc: ModuleType) -> None:
    """Rows a stride apart (a decode's padded planes): only each row's first width bytes."""
    y, cb, cr = ycc_planes(ARROW)
    pad = 13

    def strided(p: Image.Image) -> bytes:
        return b"".join(p.tobytes()[r * p.width:(r + 1) * p.width] + b"\xff" * pad for r in range(p.height))

    a = jpegenc.encode_planes(y.tobytes(), cb.tobytes(), cr.tobytes(), 61, 37, 61, 31, 90)
    b = jpegenc.encode_planes(strided(y), strided(cb), strided(cr), 61, 37, 61 + pad, 31 + pad, 90)
    assert a == b


def test_encode_planes_refuses_bad_arguments(jpegenc: ModuleType) -> None:
    y, cb, cr = (p.tobytes() for p in ycc_planes(ARROW))
    ok = dict(width=61, height=37, stride=61, chroma_stride=31, quality=90)
    jpegenc.encode_planes(y, cb, cr, **ok)
    for bad, match in (({"width": 0}, "JPEG size"), ({"height": 70000}, "JPEG size"),
                       ({"stride": 60}, "too small"), ({"chroma_stride": 30}, "too small"),
                       ({"height": 38}, "too small"), ({"quality": 0}, "quality"),
                       ({"orientation": 9}, "orientation")):
        with pytest.raises(ValueError, match=match):
            jpegenc.encode_planes(y, cb, cr, **{**ok, **bad})
    with pytest.raises(ValueError, match="too small"):
        jpegenc.encode_planes(y, cb[:-1], cr, **ok)
    with pytest.raises(ValueError, match="EXIF"):
        jpegenc.encode_planes(y, cb, cr, **ok, exif=b"x" * 70000)


# -- hostile input: the planar decode keeps every promise the packed one makes ----------
def test_truncated_data_is_an_error(jpegdec: ModuleType) -> None:
    for name in ("420", "progressive", "restart-rows"):
        data = YCC[name]
        for cut in (len(data) // 3, len(data) - 3):
            with pytest.raises(OSError, match=r"truncated|JPEG decoder"):
                jpegdec.decode_planes(data[:cut], 3)


def test_limits_hold_before_any_pixel(jpegdec: ModuleType) -> None:
    data = YCC["420"]
    i = data.index(b"\xff\xc0")
    huge = data[: i + 5] + (60000).to_bytes(2, "big") * 2 + data[i + 9:]
    with pytest.raises(jpegdec.TooLarge, match="over the limit"):
        jpegdec.decode_planes(huge, 8, max_pixels=200_000_000)
    big = jpeg(samples.scene((1024, 1024)), progressive=True)
    with pytest.raises(jpegdec.TooLarge):
        jpegdec.decode_planes(big, 8, max_memory=1 << 20)
    with pytest.raises(jpegdec.Timeout):
        jpegdec.decode_planes(jpeg(samples.scene((1200, 900))), 8, deadline=time.monotonic() - 1)
    for n in (0, 9):
        with pytest.raises(ValueError, match="scale"):
            jpegdec.decode_planes(data, n)
    for junk in (b"", b"\xff\xd8\xff", b"\xff\xd8" + b"\x00" * 64):
        with pytest.raises(OSError):
            jpegdec.decode_planes(junk, 8)


# -- end to end ----------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", [1, 6, 3, 8])
def test_the_planar_preview_is_as_close_to_the_full_decode_as_the_packed_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, orientation: int) -> None:
    """Against Lanczos from the full decode (the quality bar bench/imaging.py measures), at
    an odd preview size, on detail at every scale: the planar preview stays within 0.5 dB of
    the packed path (measured: 0.3 below here, chroma from the 4/8 IDCT; on the camera-like
    file of bench/imaging.py it is 0.1 dB above)."""
    scene = samples.scene((1200, 800))
    path = samples.camera_jpeg(tmp_path / "c.jpg", (1200, 800), orientation=orientation, quality=92,
                               image=scene, preview=(160, 106))
    cfg = ImagingConfig(preview_long_edge=451, thumbnail_size=63)
    with Imager(cfg) as imager:
        planar = imager.preview(path)
        monkeypatch.setattr(render._jpegdec, "decode_planes", lambda *a, **k: None)
        packed = imager.preview(path)
    assert planar.attempts[1].method_tried == packed.attempts[1].method_tried == "turbo_decode"
    with Image.open(path) as im:
        im.load()
        full = render.upright(im.convert("RGB"), orientation)
    ref = full.resize(render.scale_for(full.size, ("fit", 451)), Image.Resampling.LANCZOS)
    scores = {}
    for name, r in (("planar", planar), ("packed", packed)):
        with Image.open(io.BytesIO(r.preview.data)) as got:
            assert got.size == ref.size
            scores[name] = psnr(got.convert("RGB"), ref)
        with Image.open(io.BytesIO(r.thumbnail.data)) as thumb:
            assert thumb.size == (63, 63)
    assert scores["planar"] >= scores["packed"] - 0.5, scores


def test_a_file_is_read_where_it_lies(jpegdec: ModuleType, tmp_path: Path) -> None:
    """render hands the decoder Pillow's open file by its descriptor: the same pixels as the
    bytes, the file's position left alone, a cut file truncated, a read error an OSError
    with its errno (storage trouble, which render does not call a corrupt file)."""
    data = jpeg(samples.scene((700, 500)), progressive=True)
    path = tmp_path / "f.jpg"
    path.write_bytes(data)
    with open(path, "rb") as f:
        f.seek(123)
        assert jpegdec.decode_planes(f.fileno(), 3) == jpegdec.decode_planes(data, 3)
        assert jpegdec.decode(f.fileno(), 4) == jpegdec.decode(data, 4)
        assert f.tell() == 123
    path.write_bytes(data[: len(data) // 2])
    with open(path, "rb") as f, pytest.raises(OSError, match="truncated"):
        jpegdec.decode_planes(f.fileno(), 3)
    r, w = os.pipe()  # pread on a pipe: ESPIPE
    try:
        with pytest.raises(OSError) as err:
            jpegdec.decode_planes(r, 3)
        assert err.value.errno == errno.ESPIPE and "cannot read" in str(err.value)
    finally:
        os.close(r)
        os.close(w)
    for bad in (-1, 2**40):
        with pytest.raises((ValueError, OverflowError)):
            jpegdec.decode_planes(bad, 3)


def test_a_read_error_mid_decode_is_storage_trouble(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Through the pipeline: the file's descriptor failing under the decoder (EIO) is
    StorageUnavailable, retried, not a corrupt file dead-lettered."""
    path = samples.camera_jpeg(tmp_path / "c.jpg", (600, 400), quality=92, image=samples.scene((600, 400)),
                               preview=None)
    real = render._jpeg_source

    def broken(fp: object) -> int | memoryview | bytes | None:
        got = real(fp)  # type: ignore[arg-type]
        if not isinstance(got, int):
            return got  # an embedded preview's bytes
        r, w = os.pipe()
        os.close(w)
        bad.append(r)
        return r  # a pipe, where pread fails (ESPIPE, counted as storage trouble here)

    bad: list[int] = []
    monkeypatch.setattr(render, "_jpeg_source", broken)
    monkeypatch.setattr(render, "_STORAGE_ERRNOS", render._STORAGE_ERRNOS | {errno.ESPIPE})
    try:
        with Imager(ImagingConfig(preview_long_edge=200, thumbnail_size=50)) as imager, \
                pytest.raises(StorageUnavailable) as err:
            imager.preview(path)
        assert err.value.retriable and "cannot read" in str(err.value) and bad
    finally:
        for fd in bad:
            os.close(fd)


@pytest.mark.parametrize("orientation", [1, 6])
def test_without_the_c_resample_pillow_resamples_the_planes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, orientation: int) -> None:
    """A build without imaging/_resample.c: Pillow resamples each plane (and the portrait's
    chroma box takes an edge-padded copy, as Pillow's box cannot pass the plane), to the
    C one's pixels but for the clamped edge samples."""
    path = samples.camera_jpeg(tmp_path / "c.jpg", (1200, 800), orientation=orientation, quality=92,
                               image=samples.scene((1200, 800)), preview=None)
    cfg = ImagingConfig(preview_long_edge=451, thumbnail_size=63)
    with Imager(cfg) as imager:
        fast = imager.preview(path)
        monkeypatch.setattr(planes_module, "_resample", None)
        slow = imager.preview(path)
    for a, b in ((fast.preview, slow.preview), (fast.thumbnail, slow.thumbnail)):
        with Image.open(io.BytesIO(a.data)) as x, Image.open(io.BytesIO(b.data)) as y:
            assert x.size == y.size
            assert psnr(x.convert("RGB"), y.convert("RGB")) > 45
