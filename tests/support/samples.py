"""Synthetic camera files for tests, the benchmark and the CLI's self-check: no real camera
samples can be shipped or fetched, so these are built to look like them to exiftool and Pillow.

- ``camera_jpeg``: a JPEG with EXIF (orientation, copyright, GPS, serial), optionally an ICC
  profile, and an MPF second image as cameras embed their preview.
- ``raw_like``: a TIFF-based file (NEF-like: IFD0 a small RGB thumbnail, a SubIFD holding a
  JPEG) that exiftool reports as JpgFromRaw. Unlike a real RAW it has no sensor data, no
  maker notes, and Pillow could read its IFD0 thumbnail; the pipeline goes by file type.
- ``matrix_icc``: a small ICC v2 RGB matrix/TRC profile (Adobe RGB, Display P3) built by hand.
"""

from __future__ import annotations

import ctypes
import io
import random
import struct
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw

# D50-adapted primaries (Bradford) as the published profiles carry them.
ADOBE_RGB = ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087), (0.14919, 0.06322, 0.74457))
ADOBE_RGB_GAMMA = 563 / 256
DISPLAY_P3 = ((0.515121, 0.241196, -0.001053), (0.291977, 0.692245, 0.041885),
              (0.157104, 0.066574, 0.784073))
_D50 = (0.9642, 1.0, 0.82491)


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def matrix_icc(name: str, primaries: tuple[tuple[float, float, float], ...], gamma: float) -> bytes:
    """An ICC v2 display profile: RGB primaries (D50, PCS XYZ) and one gamma curve."""
    desc_ascii = name.encode() + b"\0"
    desc = (b"desc\0\0\0\0" + struct.pack(">I", len(desc_ascii)) + desc_ascii
            + b"\0" * 8 + b"\0\0\0" + b"\0" * 67)
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", _xyz(*_D50)), (b"cprt", b"text\0\0\0\0public domain\0\0\0\0"),
            (b"rXYZ", _xyz(*primaries[0])), (b"gXYZ", _xyz(*primaries[1])),
            (b"bXYZ", _xyz(*primaries[2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ "
              + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp" + b"APPL" + b"\0" * 4 + b"\0" * 8
              + b"\0" * 8 + b"\0" * 4 + _s15(_D50[0]) + _s15(_D50[1]) + _s15(_D50[2]) + b"\0" * 4
              + b"\0" * 16 + b"\0" * 28)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def adobe_rgb_icc() -> bytes:
    return matrix_icc("Adobe RGB (1998) compatible", ADOBE_RGB, ADOBE_RGB_GAMMA)


def display_p3_icc() -> bytes:
    return matrix_icc("Display P3 compatible", DISPLAY_P3, 2.2)


_LIBC = ctypes.CDLL(None)


def noise(size: tuple[int, int], sigma: float, seed: int) -> Image.Image:
    """Image.effect_noise, the same every time: it draws from the C library's rand(), whose
    state is whatever ran before (a test's bound once held or not by the order tests ran)."""
    _LIBC.srand(seed)
    return Image.effect_noise(size, sigma)


def photo(size: tuple[int, int], seed_sigma: float = 40.0) -> Image.Image:
    """Something with a camera file's entropy: gradients plus sensor-like noise."""
    w, h = size
    grad = Image.linear_gradient("L").resize((w, h))
    r = Image.blend(grad, noise((w, h), seed_sigma, 1), 0.5)
    g = Image.blend(grad.transpose(Image.Transpose.ROTATE_180), noise((w, h), seed_sigma, 2), 0.5)
    b = Image.radial_gradient("L").resize((w, h))
    return Image.merge("RGB", (r, g, b))


def scene(size: tuple[int, int], *, detail: float = 4.0, sensor: float = 4.0, seed: int = 7) -> Image.Image:
    """A camera-like photo: sky and ground, hard-edged objects at many sizes, texture at every
    scale (stronger on the ground, as foliage and grass are) and sensor noise (luma plus a
    little chroma). At 6000x4000 and quality 92 it encodes to about 8 MB (8.7 with an MPF
    preview), as a 24 MP camera's fine JPEG does; ``photo`` is the harder case, per-pixel noise
    through and through.
    """
    rnd = random.Random(seed)
    w, h = size
    g = Image.linear_gradient("L").resize((w, h))
    sky = Image.merge("RGB", [g.point(lambda v: 70 + v * 0.5), g.point(lambda v: 120 + v * 0.4),
                              g.point(lambda v: 200 + v * 0.2)])
    ground = Image.merge("RGB", [g.point(lambda v: 90 - v * 0.2), g.point(lambda v: 110 - v * 0.2),
                                 g.point(lambda v: 50 - v * 0.1)])
    mask = Image.new("L", (w, h), 0)
    step = max(1, w // 15)
    horizon = [(x, int(h * 0.45 + h * 0.08 * rnd.uniform(-1, 1))) for x in range(0, w + step, step)]
    ImageDraw.Draw(mask).polygon([(0, h), *horizon, (w, h)], fill=255)
    base = Image.composite(ground, sky, mask)
    d = ImageDraw.Draw(base)
    for _ in range(60):
        x, y = rnd.randrange(w), rnd.randrange(int(h * 0.3), h)
        s = max(1, int(w * rnd.uniform(0.01, 0.12)))
        c = (rnd.randrange(20, 235), rnd.randrange(20, 235), rnd.randrange(20, 235))
        if rnd.random() < 0.5:
            d.rectangle((x, y - s, x + s // 2, y + s), fill=c)
        else:
            d.ellipse((x - s, y - s, x + s, y + s // 2), fill=c)
    for _ in range(40):
        d.line([(rnd.randrange(w), rnd.randrange(h)), (rnd.randrange(w), rnd.randrange(h))],
               fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)), width=rnd.randrange(2, 12))
    # 1/f-like: fine octaves first, so the coarse ones end up with the most weight
    tex = Image.new("L", (w, h), 128)
    for k in range(7):
        n = noise((max(8, w >> k), max(8, h >> k)), 64, seed * 100 + k)
        tex = Image.blend(tex, n.resize((w, h), Image.Resampling.BICUBIC), 0.45)
    tex = tex.point(lambda v: 128 + (v - 128) * detail)
    tex = Image.composite(tex, Image.new("L", (w, h), 128), mask.point(lambda v: 60 + v * 0.75))
    base = ImageChops.add(base, Image.merge("RGB", [tex] * 3), 1.0, -128)
    luma = noise((w, h), sensor, seed * 100 + 10)
    chans = [ImageChops.add(luma, noise((w, h), sensor / 2, seed * 100 + 11 + c), 1.0, -128)
             for c in range(3)]
    return ImageChops.add(base, Image.merge("RGB", chans), 1.0, -128)


def camera_exif(orientation: int = 1, *, gps: bool = True, copyright: str = "(c) Jane Doe") -> Image.Exif:
    e = Image.Exif()
    e[0x010F] = "Canon"
    e[0x0110] = "Canon EOS R5"
    e[0x0112] = orientation
    e[0x8298] = copyright
    e[0x013B] = "Jane Doe"
    sub = e.get_ifd(0x8769)
    sub.update({0x9003: "2024:05:01 10:20:30", 0x9011: "+02:00", 0x8827: 200, 0x829A: 0.004,
                0x829D: 2.8, 0x920A: 50.0, 0xA431: "SERIAL-0123456", 0xA434: "RF50mm F1.2 L USM"})
    if gps:
        from imaging.render import Carry

        gps_e = Image.Exif()
        gps_e.load(b"Exif\0\0" + Carry(gps=(48.8584, 2.2945, 35.0)).exif_bytes(keep_gps=True))
        e.get_ifd(0x8825).update(gps_e.get_ifd(0x8825))
    return e


def camera_jpeg(
    path: Path, size: tuple[int, int] = (6000, 4000), *, orientation: int = 1,
    preview: tuple[int, int] | None = (1920, 1280), quality: int = 92, icc: bytes | None = None,
    image: Image.Image | None = None,
) -> Path:
    im = image or photo(size)
    kwargs: dict[str, object] = {"quality": quality, "exif": camera_exif(orientation).tobytes()}
    if icc:
        kwargs["icc_profile"] = icc
    if preview:
        prev = im.resize(preview, Image.Resampling.BILINEAR)
        im.save(path, "MPO", save_all=True, append_images=[prev], **kwargs)
    else:
        im.save(path, "JPEG", **kwargs)
    return path


def raw_like(
    path: Path, preview: Image.Image, *, orientation: int = 1, make: str = "NIKON CORPORATION",
    model: str = "NIKON D850", quality: int = 90, small: Image.Image | None = None,
) -> Path:
    """A TIFF-based RAW stand-in: a 160x120 raster in IFD0 and ``preview`` as the SubIFD's
    JPEG (exiftool: JpgFromRaw). ``small``, if given, is a second, smaller JPEG in IFD0
    (exiftool: OtherImage), as cameras carry a ~640 px preview beside the full-size one."""
    buf = io.BytesIO()
    preview.save(buf, "JPEG", quality=quality)
    small_jpeg = b""
    if small is not None:
        sbuf = io.BytesIO()
        small.save(sbuf, "JPEG", quality=quality)
        small_jpeg = sbuf.getvalue()
    path.write_bytes(_tiff_with_jpeg(buf.getvalue(), make.encode(), model.encode(), orientation,
                                     small_jpeg))
    return path


def _tiff_with_jpeg(jpeg: bytes, make: bytes, model: bytes, orientation: int, small: bytes = b"") -> bytes:
    w, h = 160, 120
    raster = Image.new("RGB", (w, h), (90, 90, 90)).tobytes()

    def short(v: int) -> bytes:
        return struct.pack("<H", v)

    def long(v: int) -> bytes:
        return struct.pack("<I", v)

    def ifd(entries: list[tuple[int, int, int, bytes]], base: int) -> bytes:
        head, extra = struct.pack("<H", len(entries)), b""
        extra_at = base + 2 + 12 * len(entries) + 4
        for tag, typ, count, val in sorted(entries):
            if len(val) <= 4:
                head += struct.pack("<HHI", tag, typ, count) + val.ljust(4, b"\0")
            else:
                head += struct.pack("<HHII", tag, typ, count, extra_at + len(extra))
                extra += val + b"\0" * (len(val) % 2)
        return head + long(0) + extra

    def build(sub_at: int, raster_at: int, jpeg_at: int) -> tuple[bytes, bytes]:
        entries = [
            (254, 4, 1, long(1)), (256, 3, 1, short(w)), (257, 3, 1, short(h)),
            (258, 3, 3, short(8) * 3), (259, 3, 1, short(1)), (262, 3, 1, short(2)),
            (271, 2, len(make) + 1, make + b"\0"), (272, 2, len(model) + 1, model + b"\0"),
            (273, 4, 1, long(raster_at)), (274, 3, 1, short(orientation)), (277, 3, 1, short(3)),
            (278, 3, 1, short(h)), (279, 4, 1, long(len(raster))), (330, 4, 1, long(sub_at)),
        ]
        if small:
            entries += [(513, 4, 1, long(jpeg_at + len(jpeg))), (514, 4, 1, long(len(small)))]
        ifd0 = ifd(entries, 8)
        sub = ifd([(254, 4, 1, long(0)), (259, 3, 1, short(6)), (513, 4, 1, long(jpeg_at)),
                   (514, 4, 1, long(len(jpeg)))], 8 + len(ifd0))
        return ifd0, sub

    ifd0, sub = build(0, 0, 0)
    sub_at = 8 + len(ifd0)
    raster_at = sub_at + len(sub)
    ifd0, sub = build(sub_at, raster_at, raster_at + len(raster))
    return b"II*\0" + long(8) + ifd0 + sub + raster + jpeg + small
