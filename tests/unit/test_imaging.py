"""Imaging golden tests: the chain's attempt records, orientation, colour, modes and formats.

Images are generated per test (small, so the suite stays fast); exiftool is the real one.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from imaging import Imager, ImagingConfig
from imaging.metadata import ImageMetadata
from imaging.render import FAST_DECODER
from tests.support import samples

CFG = ImagingConfig(preview_long_edge=256, thumbnail_size=64, enhance_long_edge=512)
# what decodes an 8-bit RGB or grey JPEG: libjpeg-turbo straight, when the extension is built
JPEG_DECODE = "turbo_decode" if FAST_DECODER else "pillow_decode"


@pytest.fixture(scope="module")
def imager() -> Iterator[Imager]:
    with Imager(CFG) as im:
        yield im


def px(data: bytes, xy: tuple[int, int]) -> tuple[int, ...]:
    with Image.open(io.BytesIO(data)) as im:
        return tuple(im.convert("RGB").getpixel(xy))  # type: ignore[arg-type]


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# -- the chain -------------------------------------------------------------------------------
def test_large_embedded_preview_is_method_1(imager: Imager, tmp_path: Path) -> None:
    # a 3D-style MPO: the second image is as large as the first, so it is a fine preview
    path = samples.camera_jpeg(tmp_path / "big.jpg", (600, 400), preview=(600, 400))
    r = imager.preview(path)
    first = r.attempts[0]
    assert (first.trace_type, first.method_tried, first.method_order, first.success) == (
        "preview_extraction", "embedded_preview", 1, True)
    assert r.from_embedded and (first.width, first.height) == (256, 171)
    assert first.size_bytes == len(r.preview.data)
    assert [a.method_tried for a in r.attempts] == ["embedded_preview", "from_embedded_preview"]


def test_small_embedded_preview_fails_with_reason_then_decode(imager: Imager, tmp_path: Path) -> None:
    path = samples.camera_jpeg(tmp_path / "cam.jpg", (1200, 800), preview=(160, 106))
    r = imager.preview(path)
    m1, m2, thumb = r.attempts
    assert (m1.method_tried, m1.success) == ("embedded_preview", False)
    assert m1.failure_reason and "smaller than the target" in m1.failure_reason
    assert (m2.method_tried, m2.method_order, m2.success) == (JPEG_DECODE, 2, True)
    assert (thumb.trace_type, thumb.method_tried, thumb.width, thumb.height) == (
        "thumbnail_generation", "from_preview", 64, 64)
    assert not r.from_embedded and (r.preview.width, r.preview.height) == (256, 171)


def test_no_embedded_preview_at_all(imager: Imager, tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (300, 200), (10, 20, 30)).save(path)
    r = imager.preview(path)
    assert r.attempts[0].failure_reason and "no embedded preview" in r.attempts[0].failure_reason
    assert r.attempts[1].success and r.attempts[1].method_tried == "pillow_decode"


def test_raw_uses_embedded_jpeg_and_marks_undersized(imager: Imager, tmp_path: Path) -> None:
    raw = samples.raw_like(tmp_path / "x.nef", Image.new("RGB", (200, 150), (200, 30, 30)))
    r = imager.preview(raw)
    assert [(a.method_tried, a.success) for a in r.attempts] == [
        ("embedded_preview", False), ("pillow_decode", False), ("raw_embedded_jpeg", True),
        ("from_embedded_preview", True)]
    assert "camera RAW" in (r.attempts[1].failure_reason or "")
    assert r.from_embedded and r.undersized and "undersized" in (r.attempts[2].failure_reason or "")
    assert (r.preview.width, r.preview.height) == (200, 150)
    assert close(px(r.preview.data, (100, 75)), (200, 30, 30), 8)


def test_raw_with_large_preview_succeeds_at_once_and_upright(imager: Imager, tmp_path: Path) -> None:
    upright = quadrants((600, 400))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways stores
    raw = samples.raw_like(tmp_path / "x.dng", stored, orientation=6)
    r = imager.preview(raw)
    assert r.attempts[0].success and not r.undersized
    assert (r.preview.width, r.preview.height) == (256, 171)
    check_quadrants(r.preview.data)


def test_jpeg_for_a_large_target_is_probed_without_exiftool(tmp_path: Path) -> None:
    """At preview size a JPEG's own header (EXIF, MPF index) says all exiftool would: no
    round trip, and an MPF preview is read at the offset the index gives."""
    from imaging.pipeline import _mpf_bytes

    upright = quadrants((2400, 1600))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    big = samples.camera_jpeg(tmp_path / "big.jpg", image=stored, orientation=6, preview=(1600, 2400))
    small = samples.camera_jpeg(tmp_path / "small.jpg", image=stored, orientation=6, preview=(800, 1200))
    with Imager(ImagingConfig()) as im:
        assert _mpf_bytes(big, "MPF:MPImage2") == im.exiftool.binary("MPF:MPImage2", big)
        calls: list[str] = []
        json, binary = im.exiftool.json, im.exiftool.binary
        im.exiftool.json = lambda *a, **k: calls.append("json") or json(*a, **k)  # type: ignore[method-assign]
        im.exiftool.binary = lambda *a, **k: calls.append("binary") or binary(*a, **k)  # type: ignore[method-assign]
        r = im.preview(big)
        assert (r.attempts[0].method_tried, r.attempts[0].success) == ("embedded_preview", True)
        assert r.from_embedded and (r.preview.width, r.preview.height) == (2048, 1365)
        check_quadrants(r.preview.data)
        r = im.preview(small)
        assert (r.attempts[0].success, r.attempts[1].method_tried, r.attempts[1].success) == (
            False, JPEG_DECODE, True)
        reason = r.attempts[0].failure_reason or ""
        assert "MPImage2 800x1200 is smaller than the target 1365x2048" in reason
        check_quadrants(r.preview.data)
        assert calls == []
        im.thumbnail(big)  # a 400 px target: a maker-note preview could serve, so exiftool looks
        assert "json" in calls


def test_smallest_embedded_preview_that_covers_the_target_is_used(tmp_path: Path) -> None:
    # a RAW with a full-size JPEG and a small one: the thumbnail needs only the small one,
    # the preview needs the large one; each is pulled out of the file once
    stored = quadrants((1200, 800)).transpose(Image.Transpose.ROTATE_90)
    raw = samples.raw_like(tmp_path / "x.nef", stored, orientation=6,
                           small=Image.new("RGB", (80, 120), (20, 160, 40)))
    with Imager(CFG) as im:
        pulled: list[str] = []
        binary = im.exiftool.binary
        im.exiftool.binary = lambda tag, p: pulled.append(tag) or binary(tag, p)  # type: ignore[method-assign]
        t = im.thumbnail(raw)
        assert t.from_embedded and pulled == ["EXIF:OtherImage"]
        assert (t.thumbnail.width, t.thumbnail.height) == (64, 64)
        assert close(px(t.thumbnail.data, (32, 32)), (20, 160, 40), 10)
        pulled.clear()
        r = im.preview(raw)
        assert r.attempts[0].success and not r.undersized and "EXIF:JpgFromRaw" in pulled
        assert (r.preview.width, r.preview.height) == (256, 171)
        check_quadrants(r.preview.data)


def test_letterboxed_small_preview_gives_way_to_the_photo(tmp_path: Path) -> None:
    # a small preview with black side bands covers the thumbnail, but a center crop of it
    # would show the bands: the full-size JPEG serves instead
    stored = quadrants((1200, 800)).transpose(Image.Transpose.ROTATE_90)
    boxed = Image.new("RGB", (120, 120), (0, 0, 0))
    boxed.paste(Image.new("RGB", (80, 120), (20, 160, 40)), (20, 0))
    raw = samples.raw_like(tmp_path / "x.nef", stored, orientation=6, small=boxed)
    with Imager(CFG) as im:
        pulled: list[str] = []
        binary = im.exiftool.binary
        im.exiftool.binary = lambda tag, p: pulled.append(tag) or binary(tag, p)  # type: ignore[method-assign]
        t = im.thumbnail(raw)
    assert t.from_embedded and pulled == ["EXIF:OtherImage", "EXIF:JpgFromRaw"]
    corners = [px(t.thumbnail.data, xy) for xy in ((8, 8), (56, 8), (8, 56), (56, 56))]
    assert not any(close(c, (20, 160, 40), 30) for c in corners)
    assert len({c for c in corners}) == 4  # the four quadrants of the photo, not one flat green


def test_raw_without_embedded_jpeg_is_unsupported(imager: Imager, tmp_path: Path) -> None:
    from imaging import UnsupportedFormat

    path = tmp_path / "x.cr2"
    Image.new("RGB", (64, 48)).save(path, "TIFF")
    with pytest.raises(UnsupportedFormat) as err:
        imager.preview(path)
    assert "RAW" in str(err.value) and err.value.attempts[-1].method_tried == "raw_embedded_jpeg"


def test_enhance_keeps_original_size_when_smaller(imager: Imager, tmp_path: Path) -> None:
    path = tmp_path / "small.jpg"
    Image.new("RGB", (300, 200), (0, 128, 255)).save(path, quality=95)
    r = imager.enhance(path)
    assert (r.image.width, r.image.height) == (300, 200)
    big = samples.camera_jpeg(tmp_path / "big.jpg", (1200, 800), preview=None)
    r2 = imager.enhance(big, long_edge=700)
    assert (r2.image.width, r2.image.height) == (700, 467)
    assert r2.attempts[-1].trace_type == "enhance" and r2.attempts[-1].success


def test_thumbnail_fast_path_and_contain_setting(tmp_path: Path) -> None:
    raw = samples.raw_like(tmp_path / "x.nef", samples.photo((600, 400)))
    with Imager(ImagingConfig(thumbnail_size=64, thumbnail_fit="contain")) as im:
        r = im.thumbnail(raw)
        p = im.preview(raw)
    assert r.from_embedded and (r.thumbnail.width, r.thumbnail.height) == (64, 43)
    assert r.attempts[0].size_bytes == len(r.thumbnail.data)
    assert (p.thumbnail.width, p.thumbnail.height) == (64, 43)


# -- orientation -----------------------------------------------------------------------------
COLORS = {"tl": (255, 0, 0), "tr": (0, 255, 0), "bl": (0, 0, 255), "br": (255, 255, 255)}
# what a camera stores for each EXIF orientation, given the upright picture
STORE = {
    1: [], 2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM], 5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_90], 7: [Image.Transpose.TRANSVERSE], 8: [Image.Transpose.ROTATE_270],
}


def quadrants(size: tuple[int, int]) -> Image.Image:
    w, h = size
    im = Image.new("RGB", size)
    for (x, y), key in {(0, 0): "tl", (1, 0): "tr", (0, 1): "bl", (1, 1): "br"}.items():
        im.paste(COLORS[key], (x * w // 2, y * h // 2, (x + 1) * w // 2, (y + 1) * h // 2))
    return im


def check_quadrants(data: bytes, landscape: bool = True) -> None:
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        assert w > h or not landscape, f"not upright: {w}x{h}"
        got = {k: im.convert("RGB").getpixel(xy) for k, xy in {
            "tl": (w // 8, h // 8), "tr": (w * 7 // 8, h // 8),
            "bl": (w // 8, h * 7 // 8), "br": (w * 7 // 8, h * 7 // 8)}.items()}
    for key, want in COLORS.items():
        assert close(got[key], want, 40), (key, got[key], want)  # type: ignore[arg-type]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_orientations_come_out_upright(imager: Imager, tmp_path: Path, orientation: int) -> None:
    stored = quadrants((1200, 800))
    for op in STORE[orientation]:
        stored = stored.transpose(op)
    path = samples.camera_jpeg(tmp_path / "o.jpg", orientation=orientation, preview=None, image=stored)
    r = imager.preview(path)
    assert (r.preview.width, r.preview.height) == (256, 171)
    check_quadrants(r.preview.data)
    check_quadrants(r.thumbnail.data, landscape=False)  # the centred square keeps the quadrants
    for data in (r.preview.data, r.thumbnail.data):
        with Image.open(io.BytesIO(data)) as out:
            assert out.getexif().get(0x0112) in (None, 1)  # never rotated twice by a viewer


# -- colour ----------------------------------------------------------------------------------
def _srgb_from(rgb: tuple[int, int, int], gamma: float, to_xyz: list[list[float]]) -> tuple[int, ...]:
    lin = [(c / 255) ** gamma for c in rgb]
    xyz = [sum(m * v for m, v in zip(row, lin, strict=True)) for row in to_xyz]
    to_srgb = [[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
               [0.0556434, -0.2040259, 1.0572252]]
    out = []
    for row in to_srgb:
        v = sum(m * c for m, c in zip(row, xyz, strict=True))
        assert -0.001 <= v <= 1.001, "test colour must be inside sRGB"
        v = min(max(v, 0.0), 1.0)
        out.append(round(255 * (12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055)))
    return tuple(out)


ADOBE_TO_XYZ = [[0.5767309, 0.1855540, 0.1881852], [0.2973769, 0.6273491, 0.0752741],
                [0.0270343, 0.0706872, 0.9911085]]
P3_TO_XYZ = [[0.4865709, 0.2656677, 0.1982173], [0.2289746, 0.6917385, 0.0792869],
             [0.0, 0.0451134, 1.0439444]]


@pytest.mark.parametrize(("icc", "gamma", "matrix"), [
    (samples.adobe_rgb_icc(), samples.ADOBE_RGB_GAMMA, ADOBE_TO_XYZ),
    (samples.display_p3_icc(), 2.2, P3_TO_XYZ),
], ids=["adobe-rgb", "display-p3"])
def test_wide_gamut_jpeg_converted_to_srgb(
    imager: Imager, tmp_path: Path, icc: bytes, gamma: float, matrix: list[list[float]]
) -> None:
    source = (110, 150, 90)
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (400, 300), source).save(path, quality=98, icc_profile=icc, subsampling=0)
    r = imager.preview(path)
    got = px(r.preview.data, (100, 100))
    want = _srgb_from(source, gamma, matrix)
    assert close(got, want, 4), (got, want)
    assert not close(got, source, 6), "the profile was ignored"
    with Image.open(io.BytesIO(r.preview.data)) as out:
        from PIL import ImageCms

        desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(out.info["icc_profile"])))
        assert "sRGB" in desc and out.info.get("progressive")


@pytest.mark.parametrize(("cmyk", "rgb"), [
    ((0, 255, 255, 0), (255, 0, 0)), ((255, 0, 0, 0), (0, 255, 255)), ((0, 0, 0, 128), (127, 127, 127)),
])
def test_cmyk_jpeg_gives_right_rgb(imager: Imager, tmp_path: Path, cmyk: tuple[int, ...],
                                   rgb: tuple[int, int, int]) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (300, 200), cmyk).save(path, quality=98)  # type: ignore[arg-type]
    r = imager.preview(path)
    assert close(px(r.preview.data, (50, 50)), rgb, 6)


def test_alpha_is_flattened_on_white(imager: Imager, tmp_path: Path) -> None:
    im = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    im.paste((255, 0, 0, 128), (150, 0, 300, 200))
    im.save(tmp_path / "a.png")
    r = imager.preview(tmp_path / "a.png")
    assert close(px(r.preview.data, (40, 80)), (255, 255, 255), 3)
    assert close(px(r.preview.data, (220, 80)), (255, 127, 127), 5)
    la = Image.new("LA", (300, 200), (0, 0))
    la.save(tmp_path / "la.png")
    assert close(px(imager.preview(tmp_path / "la.png").preview.data, (10, 10)), (255, 255, 255), 3)


def test_16_bit_tiff_scaled_not_clipped(imager: Imager, tmp_path: Path) -> None:
    im = Image.new("I;16", (300, 200), 0x8000)
    im.paste(0xFFFF, (150, 0, 300, 200))
    im.save(tmp_path / "deep.tif")
    r = imager.preview(tmp_path / "deep.tif")
    assert close(px(r.preview.data, (40, 80)), (128, 128, 128), 3)
    assert close(px(r.preview.data, (220, 80)), (255, 255, 255), 3)


def test_palette_grayscale_and_bilevel(imager: Imager, tmp_path: Path) -> None:
    Image.new("RGB", (300, 200), (0, 200, 0)).convert("P").save(tmp_path / "p.gif")
    Image.new("L", (300, 200), 77).save(tmp_path / "l.png")
    Image.new("1", (300, 200), 1).save(tmp_path / "one.png")
    assert close(px(imager.preview(tmp_path / "p.gif").preview.data, (9, 9)), (0, 200, 0), 8)
    assert close(px(imager.preview(tmp_path / "l.png").preview.data, (9, 9)), (77, 77, 77), 3)
    assert close(px(imager.preview(tmp_path / "one.png").preview.data, (9, 9)), (255, 255, 255), 3)


# -- formats ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP", "GIF", "HEIF", "AVIF", "BMP"])
def test_formats(imager: Imager, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (400, 300), (200, 60, 20)).save(path, fmt, **({"quality": 95} if fmt != "GIF" else {}))
    r = imager.preview(path)
    assert (r.preview.width, r.preview.height) == (256, 192)
    assert close(px(r.preview.data, (100, 100)), (200, 60, 20), 12)


def test_animated_gif_first_frame_and_frame_limit(tmp_path: Path) -> None:
    from imaging import ImageTooLarge

    frames = [Image.new("RGB", (100, 80), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with Imager(ImagingConfig(max_frames=3)) as im:
        assert close(px(im.preview(tmp_path / "a.gif").preview.data, (5, 5)), (255, 0, 0), 10)
    with Imager(ImagingConfig(max_frames=2)) as im, pytest.raises(ImageTooLarge, match="3 frames"):
        im.preview(tmp_path / "a.gif")


def test_mpo_opens_as_first_image(imager: Imager, tmp_path: Path) -> None:
    # the second image (a camera's small preview) is under the target: the first is decoded
    left, right = Image.new("RGB", (600, 400), (250, 0, 0)), Image.new("RGB", (120, 80), (0, 0, 250))
    left.save(tmp_path / "x.mpo", "MPO", save_all=True, append_images=[right])
    r = imager.preview(tmp_path / "x.mpo")
    assert r.attempts[1].method_tried == JPEG_DECODE and r.attempts[1].success
    assert close(px(r.preview.data, (50, 50)), (250, 0, 0), 10)


# -- privacy ---------------------------------------------------------------------------------
def test_gps_and_private_exif_stripped_copyright_kept(tmp_path: Path) -> None:
    path = samples.camera_jpeg(tmp_path / "c.jpg", (600, 400), preview=None)
    for strip in (True, False):
        with Imager(ImagingConfig(preview_long_edge=256, strip_gps=strip)) as im:
            r = im.preview(path)
        for data in (r.preview.data, r.thumbnail.data):
            with Image.open(io.BytesIO(data)) as out:
                exif = out.getexif()
                assert exif.get(0x8298) == "(c) Jane Doe"
                assert not exif.get_ifd(0x8769), "camera serial and settings must not leak"
                assert bool(exif.get_ifd(0x8825)) is not strip


def test_oversized_copyright_is_cut_not_fatal(imager: Imager, tmp_path: Path) -> None:
    # 80 KB of text would not fit the preview's EXIF segment; the preview is made all the same
    path = tmp_path / "long.png"
    exif = Image.Exif()
    exif[0x8298], exif[0x013B] = "(c) Jane Doe " + "\u00e9" * 40000, "A" * 40000
    samples.scene((800, 600)).save(path, exif=exif.tobytes())
    r = imager.preview(path)
    for data in (r.preview.data, r.thumbnail.data):
        with Image.open(io.BytesIO(data)) as out:
            got = out.getexif()
            assert got[0x8298].startswith("(c) Jane Doe ") and len(got[0x8298]) == 4096
            assert got[0x013B] == "A" * 4096


def test_gps_below_sea_level_keeps_its_sign(imager: Imager, tmp_path: Path) -> None:
    # GPSAltitudeRef 1 (below sea level): kept previews, Pillow's and exiftool's metadata agree
    from imaging.metadata import from_pillow
    from imaging.render import Carry

    path = tmp_path / "dead-sea.jpg"
    exif = Image.Exif()
    exif.load(b"Exif\0\0" + Carry(gps=(31.5, 35.5, -430.5)).exif_bytes(keep_gps=True))
    Image.new("RGB", (600, 400), (90, 120, 150)).save(path, quality=90, exif=exif.tobytes())
    with Image.open(path) as im:
        assert Carry.from_exif(im.getexif()).gps == pytest.approx((31.5, 35.5, -430.5), abs=1e-3)
        pillow = from_pillow(im)
    told = imager.metadata(path).metadata
    assert pillow.gps is not None and told.gps is not None
    assert pillow.gps.altitude_m == pytest.approx(-430.5) and told.gps.altitude_m == pytest.approx(-430.5)
    with Imager(ImagingConfig(preview_long_edge=256, strip_gps=False)) as im2:
        kept = im2.preview(path).preview.data
    with Image.open(io.BytesIO(kept)) as out:
        assert Carry.from_exif(out.getexif()).gps == pytest.approx((31.5, 35.5, -430.5), abs=1e-3)


# -- metadata --------------------------------------------------------------------------------
def test_metadata_typed_from_exiftool(imager: Imager, tmp_path: Path) -> None:
    path = samples.camera_jpeg(tmp_path / "m.jpg", (600, 400), orientation=6, icc=samples.adobe_rgb_icc())
    r = imager.metadata(path)
    m = r.metadata
    assert isinstance(m, ImageMetadata) and m.source == "exiftool"
    assert (m.make, m.model, m.lens) == ("Canon", "Canon EOS R5", "RF50mm F1.2 L USM")
    assert m.captured_at is not None and m.captured_at.isoformat() == "2024-05-01T10:20:30+02:00"
    assert (m.width, m.height, m.orientation, m.iso) == (600, 400, 6, 200)
    assert (m.exposure_time_s, m.f_number, m.focal_length_mm) == (0.004, 2.8, 50.0)
    assert m.gps is not None and abs(m.gps.latitude - 48.8584) < 1e-3 and abs(m.gps.longitude - 2.2945) < 1e-3
    assert m.color_space == "Adobe RGB (1998) compatible" and m.mime_type == "image/jpeg"
    assert r.attempts == [r.attempts[0]] and r.attempts[0].method_tried == "exiftool"
    assert m.as_json()["captured_at"] == "2024-05-01T10:20:30+02:00"


def test_metadata_falls_back_to_pillow(tmp_path: Path) -> None:
    path = samples.camera_jpeg(tmp_path / "m.jpg", (600, 400), preview=None)
    with Imager(ImagingConfig()) as im:
        im.exiftool.executable = "/nonexistent/exiftool"
        r = im.metadata(path)
    assert [(a.method_tried, a.success) for a in r.attempts] == [("exiftool", False), ("pillow_exif", True)]
    m = r.metadata
    assert (m.source, m.make, m.iso, m.f_number) == ("pillow", "Canon", 200, 2.8)
    assert m.captured_at is not None and str(m.captured_at) == "2024-05-01 10:20:30+02:00"
    assert m.gps is not None and abs(m.gps.latitude - 48.8584) < 1e-3


def test_three_eighths_dct_scale_is_exact(tmp_path: Path) -> None:
    # 1000 -> 300: 3/8 (375) covers it and 1/4 (250) does not, so the decoder runs at 3/8
    from imaging import render

    stored = quadrants((1000, 600)).transpose(Image.Transpose.ROTATE_90)
    path = samples.camera_jpeg(tmp_path / "s.jpg", orientation=6, preview=None, image=stored)
    with Image.open(path) as im:
        render._dct_scale(im, render.scale_for(im.size, ("fit", 300)))
        im.load()
        assert im.size == (225, 375)
    with Imager(ImagingConfig(preview_long_edge=300)) as imager:
        r = imager.preview(path)
    assert (r.preview.width, r.preview.height) == (300, 180)
    check_quadrants(r.preview.data)


# -- resampling quality: the fast path against Lanczos from the full decode -----------------
def psnr(a: Image.Image, b: Image.Image) -> float:
    sum2 = ImageStat.Stat(ImageChops.difference(a, b)).sum2
    mse = sum(sum2) / (a.width * a.height * len(sum2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def test_fast_resampling_stays_close_to_lanczos_from_full(tmp_path: Path) -> None:
    # 1500 -> 512 takes the production route of a 6000x4000 file to 2048: DCT-scaled at 3/8,
    # then a 1.1x bilinear step. (NEAREST there gives 28 dB against 33; at 6000x4000, 40 dB.)
    from imaging import render

    path = samples.camera_jpeg(tmp_path / "q.jpg", (1500, 1000), preview=None, quality=92,
                               image=samples.scene((1500, 1000)))
    with Image.open(path) as im:
        im.load()
        full = im.copy()
    target = render.scale_for(full.size, ("fit", 512))
    with Image.open(path) as im:
        render._dct_scale(im, target)
        im.load()
        assert im.size == (563, 375)  # 3/8
        dct = im.copy()
    fast = render.decode(Image.open(path), ("fit", 512), "q.jpg", math.inf)
    assert fast.size == target == (512, 341)
    assert psnr(fast, full.resize(target, Image.Resampling.LANCZOS)) > 31.0
    # the filter alone, on the same DCT-scaled pixels
    assert psnr(fast, dct.resize(target, Image.Resampling.LANCZOS)) > 34.0
    # the thumbnail, 3.4x as 2048x1365 to 400 is: a box reduce by 2, then Lanczos, against
    # Lanczos all the way (45 dB; bilinear there gives 32, nearest 25)
    left, side = (fast.width - fast.height) / 2, fast.height
    ref = fast.resize((100, 100), Image.Resampling.LANCZOS, box=(left, 0, left + side, side))
    assert psnr(render.thumbnail(fast, 100, "cover"), ref) > 40.0
