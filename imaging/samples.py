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

import io
import struct
from pathlib import Path

from PIL import Image

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


def photo(size: tuple[int, int], seed_sigma: float = 40.0) -> Image.Image:
    """Something with a camera file's entropy: gradients plus sensor-like noise."""
    w, h = size
    grad = Image.linear_gradient("L").resize((w, h))
    r = Image.blend(grad, Image.effect_noise((w, h), seed_sigma), 0.5)
    g = Image.blend(grad.transpose(Image.Transpose.ROTATE_180), Image.effect_noise((w, h), seed_sigma), 0.5)
    b = Image.radial_gradient("L").resize((w, h))
    return Image.merge("RGB", (r, g, b))


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
        from .render import Carry

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
    model: str = "NIKON D850", quality: int = 90,
) -> Path:
    buf = io.BytesIO()
    preview.save(buf, "JPEG", quality=quality)
    path.write_bytes(_tiff_with_jpeg(buf.getvalue(), make.encode(), model.encode(), orientation))
    return path


def _tiff_with_jpeg(jpeg: bytes, make: bytes, model: bytes, orientation: int) -> bytes:
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
        ifd0 = ifd([
            (254, 4, 1, long(1)), (256, 3, 1, short(w)), (257, 3, 1, short(h)),
            (258, 3, 3, short(8) * 3), (259, 3, 1, short(1)), (262, 3, 1, short(2)),
            (271, 2, len(make) + 1, make + b"\0"), (272, 2, len(model) + 1, model + b"\0"),
            (273, 4, 1, long(raster_at)), (274, 3, 1, short(orientation)), (277, 3, 1, short(3)),
            (278, 3, 1, short(h)), (279, 4, 1, long(len(raster))), (330, 4, 1, long(sub_at)),
        ], 8)
        sub = ifd([(254, 4, 1, long(0)), (259, 3, 1, short(6)), (513, 4, 1, long(jpeg_at)),
                   (514, 4, 1, long(len(jpeg)))], 8 + len(ifd0))
        return ifd0, sub

    ifd0, sub = build(0, 0, 0)
    sub_at = 8 + len(ifd0)
    raster_at = sub_at + len(sub)
    ifd0, sub = build(sub_at, raster_at, raster_at + len(raster))
    return b"II*\0" + long(8) + ifd0 + sub + raster + jpeg
