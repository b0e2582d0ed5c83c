"""Decoding, downscaling and encoding, fast where it can be and faithful always.

JPEGs are scaled inside the decoder (DCT-domain, 1/8 to 1/2) to the smallest size that still
covers the target, then resampled; orientation is applied after the downscale, on the small
image; colours are converted to sRGB last. Every limit is checked before pixels are decoded.
8-bit RGB and grey JPEGs decode straight through libjpeg-turbo (``decode_turbo``, the C
extension imaging/_jpegdec.c) when it is built; everything else, and anything it refuses,
through Pillow (``decode_stored``). A YCbCr JPEG in sRGB stays YCbCr all the way (``Planes``):
its planes are decoded as stored, each resampled at its own size and encoded as they are, so
no pixel is converted to RGB and back, and chroma is resampled at a quarter of the pixels.
"""

from __future__ import annotations

import errno
import io
import math
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Literal

from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile
from PIL.TiffImagePlugin import IFDRational

from .color import SRGB_ICC, is_srgb, to_srgb
from .errors import (
    CorruptImage,
    DecodeTimeout,
    ImageTooLarge,
    ImagingError,
    StorageUnavailable,
    UnsupportedFormat,
)
from .metadata import gps_altitude
from .types import ImagingConfig, Rendition

try:  # the C encoder (pyproject's ext-modules); optional, so a build without a compiler works
    from . import _jpegenc
except ImportError:
    _jpegenc = None  # type: ignore[assignment]

try:  # its decoder, optional the same way
    from . import _jpegdec
except ImportError:
    _jpegdec = None  # type: ignore[assignment]

FAST_ENCODER = _jpegenc is not None
FAST_DECODER = _jpegdec is not None
# The N/8 scales the fast decode picks from: the smallest that covers the target wins. 5/8 to
# 7/8 decode slower than 8/8 (their IDCTs have no SIMD in libjpeg-turbo), but what they
# save in the resample is more: enhance to 4096 from 6000x4000 at 6/8 plus a 1.1x bilinear
# step takes ~0.6 of 8/8 plus a 1.46x bicubic, 0.4 dB lower PSNR after the q92 encode
# (bench/imaging.py prints both; --scales times each N/8).
TURBO_SCALES = (1, 2, 3, 4, 5, 6, 7, 8)
# libjpeg's own working memory per pixel of the stored image: progressive coefficients are
# 2 bytes per sample (6 a pixel at 4:4:4), so only a file lying about its size reaches this.
_TURBO_MEMORY_PER_PIXEL = 8

# What Pillow's plugins raise on hostile bytes; anything else is a bug of ours and propagates.
# (RuntimeError: pillow-heif's and the AVIF plugin's "Failed to decode frame"; it covers
# RecursionError too.)
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
    ZeroDivisionError, zlib.error, OverflowError, MemoryError, RuntimeError,
)
# errno values that mean the storage, not the file, is the problem.
_STORAGE_ERRNOS = {
    errno.EIO, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ESTALE, errno.ETIMEDOUT,
    errno.ENOTCONN, errno.EAGAIN, errno.ENXIO, errno.EHOSTDOWN,
}

ORIENTATION = 0x0112
_TRANSPOSE: dict[int, list[Image.Transpose]] = {
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_270],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_90],
}

Box = tuple[Literal["fit", "cover"], int]


@dataclass(frozen=True)
class Planes:
    """A YCbCr image as its three planes (mode L), not converted to RGB: what a planar decode
    gives (``decode_turbo``) and what ``encode`` takes as it is. ``size`` is the image's, and
    luma's; ``chroma`` is chroma samples per luma pixel across and down (0.5, 0.5 at 4:2:0).
    Planes may be larger than that (a decode's are padded to whole blocks): only the top-left
    ``size`` of luma, and its ``chroma`` share of each chroma plane, is the image."""

    y: Image.Image
    cb: Image.Image
    cr: Image.Image
    size: tuple[int, int]
    chroma: tuple[float, float] = (0.5, 0.5)

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    def resize(self, target: tuple[int, int], f: Image.Resampling,
               box: tuple[float, float, float, float] | None = None,
               reducing_gap: float | None = None, orientation: int = 1) -> Planes:
        """The ``box`` of the image (luma pixels; all of it by default) at ``target``, 4:2:0:
        each plane resampled from its own samples, chroma to half the target each way, on
        the grid the encoder will see once ``orientation`` turns the image upright."""
        x0, y0, x1, y1 = box or (0.0, 0.0, float(self.size[0]), float(self.size[1]))
        c_target = ((target[0] + 1) // 2, (target[1] + 1) // 2)
        c_box, pad = _chroma_box((x0, y0, x1, y1), target, self.chroma, self.cb.size, orientation)
        cb, cr = (_edge_pad(self.cb, pad), _edge_pad(self.cr, pad)) if pad else (self.cb, self.cr)
        # Chroma takes bicubic where luma takes bilinear: a quarter of the pixels, and the
        # 1.5 dB of chroma PSNR it gives back on a camera file's preview (bench/imaging.py).
        cf = Image.Resampling.BICUBIC if f == Image.Resampling.BILINEAR else f
        return Planes(self.y.resize(target, f, box=(x0, y0, x1, y1), reducing_gap=reducing_gap),
                      cb.resize(c_target, cf, box=c_box, reducing_gap=reducing_gap),
                      cr.resize(c_target, cf, box=c_box, reducing_gap=reducing_gap),
                      target)


# Stored axes an orientation runs backwards once upright (x, y): see _jpegenc.c fill_rows.
_REVERSED = {1: (False, False), 2: (True, False), 3: (True, True), 4: (False, True),
             5: (False, False), 6: (False, True), 7: (True, True), 8: (True, False)}


def _chroma_box(box: tuple[float, float, float, float], target: tuple[int, int],
                chroma: tuple[float, float], size: tuple[int, int], orientation: int,
                ) -> tuple[tuple[float, float, float, float], int]:
    """Where in a chroma plane (of ``size``) the 4:2:0 samples of ``box`` at ``target`` come
    from, and how many samples of edge padding on every side that needs (``_edge_pad``).

    An odd target side has one chroma sample more than half of it, covering a pixel past the
    image: the encoder pads the upright image at its right and bottom, which is the start of
    a stored axis that the orientation runs backwards (a portrait 6's top). The box reaches
    that pixel's worth past the source on that side; without it every sample would sit up
    to half a sample off (about 1.5 dB of chroma PSNR on a 2048x1365 preview)."""
    axes = []
    for lo, hi, t, frac, n, back in zip(box[:2], box[2:], target, chroma, size,
                                        _REVERSED.get(orientation, (False, False)), strict=True):
        reach = (hi - lo) / t * (2 * ((t + 1) // 2) - t)  # 0 or one target pixel, in source px
        a, b = (lo - reach, hi) if back else (lo, hi + reach)
        axes.append((a * frac, b * frac, n))
    pad = math.ceil(max(0.0, *(max(-a, b - n) for a, b, n in axes)))
    (ax, bx, _), (ay, by, _) = axes
    return (ax + pad, ay + pad, bx + pad, by + pad), pad


def _edge_pad(im: Image.Image, n: int) -> Image.Image:
    """``im`` with ``n`` more samples on every side, each a copy of the nearest edge one."""
    w, h = im.size
    out = Image.new(im.mode, (w + 2 * n, h + 2 * n))
    out.paste(im, (n, n))
    near = Image.Resampling.NEAREST
    out.paste(im.crop((0, 0, w, 1)).resize((w, n), near), (n, 0))
    out.paste(im.crop((0, h - 1, w, h)).resize((w, n), near), (n, h + n))
    out.paste(out.crop((n, 0, n + 1, h + 2 * n)).resize((n, h + 2 * n), near), (0, 0))
    out.paste(out.crop((w + n - 1, 0, w + n, h + 2 * n)).resize((n, h + 2 * n), near), (w + n, 0))
    return out


@contextmanager
def classified(name: str) -> Iterator[None]:
    """Turn whatever decoding raises into an ImagingError that says what to do with it."""
    try:
        yield
    except ImagingError:
        raise
    except UnidentifiedImageError:
        raise UnsupportedFormat(f"{name}: not a recognised image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"{name}: decompression bomb: {exc}") from None
    except OSError as exc:
        if exc.errno in _STORAGE_ERRNOS:
            raise StorageUnavailable(f"{name}: cannot read: {exc.strerror or exc}") from None
        raise CorruptImage(f"{name}: {exc}") from None
    except NotImplementedError as exc:
        # a variant of a known format Pillow has no decoder for (a DDS pixel format, ...)
        raise UnsupportedFormat(f"{name}: this variant of the format is not supported ({exc})") from None
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"{name}: undecodable ({type(exc).__name__}: {exc})") from None


def check_file(path: Path, config: ImagingConfig) -> int:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise StorageUnavailable(f"{path.name}: no such file (storage unmounted or file moved?)") from None
    except OSError as exc:
        raise StorageUnavailable(f"{path.name}: cannot stat: {exc.strerror or exc}") from None
    if size == 0:
        raise CorruptImage(f"{path.name}: empty file (0 bytes)")
    if size > config.max_file_bytes:
        raise ImageTooLarge(f"{path.name}: {size} bytes, over the limit of {config.max_file_bytes}")
    return size


def open_image(fp: Path | IO[bytes], config: ImagingConfig, name: str) -> Image.Image:
    """Open (header only) and check pixel and frame limits before any pixel is decoded."""
    with classified(name):
        im = Image.open(fp)
        try:
            pixels = im.width * im.height
            if pixels > config.max_pixels:
                raise ImageTooLarge(
                    f"{name}: {im.width}x{im.height} = {pixels} pixels, over the limit of "
                    f"{config.max_pixels} (decompression bomb?)"
                )
            # GIF counts frames by walking the file; TIFF and MPO read it from their index.
            frames = getattr(im, "n_frames", 1) if getattr(im, "is_animated", False) else 1
            if frames > config.max_frames:
                raise ImageTooLarge(f"{name}: {frames} frames, over the limit of {config.max_frames}")
        except BaseException:
            im.close()
            raise
        return im


def scale_for(size: tuple[int, int], box: Box) -> tuple[int, int]:
    """The size ``size`` scales to so it fits ``box`` (never larger than it was)."""
    w, h = size
    kind, n = box
    r = min(1.0, n / max(w, h)) if kind == "fit" else min(1.0, n / min(w, h))
    return max(1, round(w * r)), max(1, round(h * r))


def decode(
    im: Image.Image, box: Box, name: str, deadline: float, orientation: int | None = None
) -> Image.Image:
    """Decode ``im`` scaled to ``box``, upright and in sRGB. Closes ``im``."""
    out, orientation = decode_stored(im, box, name, deadline, orientation)
    return upright(out, orientation)


def upright(im: Image.Image, orientation: int) -> Image.Image:
    for op in _TRANSPOSE.get(orientation, []):
        im = im.transpose(op)
    return im


def upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def decode_stored(
    im: Image.Image, box: Box, name: str, deadline: float, orientation: int | None = None,
    fine: bool = False,
) -> tuple[Image.Image, int]:
    """As ``decode``, but the image stays as stored: with the EXIF orientation that turns it
    upright (1..8), which ``encode`` applies while it packs rows for the encoder, instead of
    a transpose of its own (a third of the pixel traffic of a 2048 px preview). ``fine``:
    bicubic for the small steps too (see ``_resize``)."""
    with classified(name), im:
        target = scale_for(im.size, box)
        if im.format in ("JPEG", "MPO") and target != im.size:
            _dct_scale(im, target)
        im.load()
        _check(deadline, name, "decode")
        if orientation is None:
            orientation = int(im.getexif().get(ORIENTATION, 1) or 1)
        icc = im.info.get("icc_profile")
        out = _resize(im, target, fine)
        _check(deadline, name, "resize")
        out = to_srgb(out, icc if isinstance(icc, bytes) else None)
        return out, orientation if orientation in _TRANSPOSE else 1


def turbo_scale(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The smallest N of ``TURBO_SCALES`` whose N/8 decode still covers ``target``."""
    w, h = size
    for n in TURBO_SCALES:
        if (w * n + 7) // 8 >= target[0] and (h * n + 7) // 8 >= target[1]:
            return n
    return 8


def decode_turbo(
    im: Image.Image, box: Box, name: str, deadline: float, orientation: int | None = None,
    max_pixels: int = 0, fine: bool = False,
) -> tuple[Image.Image | Planes, int] | None:
    """As ``decode_stored``, through libjpeg-turbo straight into one packed buffer; None when
    this path does not apply (no build, not an 8-bit RGB or grey JPEG: Pillow decodes it).
    ``im`` is Pillow's opened header (its EXIF and ICC profile are used); it stays open, so
    the caller can fall back to Pillow when this raises."""
    if _jpegdec is None or im.format not in ("JPEG", "MPO") or im.mode not in ("RGB", "L"):
        return None
    with classified(name):
        fp: IO[bytes] | None = getattr(im, "fp", None)  # ImageFile's; closed after load()
        if fp is None:
            return None
        pos = fp.tell()
        fp.seek(0)
        data = fp.read()
        fp.seek(pos)
        if data[:2] != b"\xff\xd8":
            return None
        target = scale_for(im.size, box)
        # Pillow's ICC profile, as the Pillow path takes it (its reader and libjpeg's differ
        # on malformed chunk sequences)
        icc = im.info.get("icc_profile")
        icc = icc if isinstance(icc, bytes) and icc else None
        scale = turbo_scale(im.size, target)
        max_memory = _TURBO_MEMORY_PER_PIXEL * max_pixels
        until = deadline if math.isfinite(deadline) else 0.0
        try:
            if _jpegenc is not None and im.mode == "RGB" and (icc is None or is_srgb(icc)):
                planes = _jpegdec.decode_planes(data, scale, max_pixels, max_memory, until)
                if planes is not None:
                    del data
                    return _planar(im, planes, target, name, deadline, orientation, fine)
            got = _jpegdec.decode(data, scale, max_pixels, max_memory, until)
        except _jpegdec.TooLarge as exc:
            raise ImageTooLarge(f"{name}: {exc}") from None
        except _jpegdec.Timeout:
            raise DecodeTimeout(f"{name}: decode ran past the decode time-out") from None
        if got is None:
            return None
        pixels, w, h, components, _ = got
        del data
        mode = "RGB" if components == 3 else "L"
        if mode != im.mode:
            return None  # Pillow reads the file otherwise than libjpeg: let it decide
        _check(deadline, name, "decode")
        if orientation is None:
            orientation = int(im.getexif().get(ORIENTATION, 1) or 1)
        out = _resize(Image.frombuffer(mode, (w, h), pixels, "raw", mode, 0, 1), target, fine)
        del pixels
        _check(deadline, name, "resize")
        out = to_srgb(out, icc)
        return out, orientation if orientation in _TRANSPOSE else 1


_PlanesDecoded = tuple[tuple[bytes, int, int, int], tuple[bytes, int, int, int],
                       tuple[bytes, int, int, int], int, int, int, int, bytes | None]


def _planar(im: Image.Image, got: _PlanesDecoded, target: tuple[int, int], name: str,
            deadline: float, orientation: int | None, fine: bool) -> tuple[Planes, int]:
    """A planar decode resampled to ``target``: each plane from its own padded buffer."""
    (y, *_, ys), (cb, *_, cs), (cr, *_), w, h, h_samp, v_samp, _ = got
    _check(deadline, name, "decode")
    if orientation is None:
        orientation = int(im.getexif().get(ORIENTATION, 1) or 1)
    planes = [Image.frombuffer("L", (stride, len(buf) // stride), buf, "raw", "L", 0, 1)
              for buf, stride in ((y, ys), (cb, cs), (cr, cs))]
    decoded = Planes(planes[0], planes[1], planes[2], (w, h), (1 / h_samp, 1 / v_samp))
    orientation = orientation if orientation in _TRANSPOSE else 1
    out = decoded.resize(target, _filter((w, h), target, fine), reducing_gap=3.0,
                         orientation=orientation)
    _check(deadline, name, "resize")
    return out, orientation


def _dct_scale(im: Image.Image, target: tuple[int, int]) -> None:
    """Let the JPEG decoder do most of the downscaling (IDCT at a reduced size)."""
    if not isinstance(im, JpegImageFile):
        return
    w, h = im.size
    if (
        len(im.tile) == 1 and not getattr(im, "decoderconfig", ())
        and 3 * w >= 8 * target[0] and 3 * h >= 8 * target[1]
        and (2 * w < 8 * target[0] or 2 * h < 8 * target[1])
    ):
        # 3/8 is enough and 1/4 is not: draft() would decode at 1/2 and leave more to resample.
        # Pillow asks libjpeg-turbo for 1/denominator and libjpeg-turbo rounds up to N/8, so
        # denominator 3 decodes at 3/8. Pillow's tile and size must say so too.
        tile = im.tile[0]
        size = ((w * 3 + 7) // 8, (h * 3 + 7) // 8)
        im.tile = [tile._replace(extents=(0, 0, *size))]
        im.decoderconfig = (3, 0)
        im._size = size
        return
    # draft() takes the largest 1/s that keeps *both* axes >= the request, so the request
    # must keep the image's aspect: a square box would stop it at the short side.
    im.draft(im.mode if im.mode in ("RGB", "L", "CMYK") else None, target)


def _resize(im: Image.Image, target: tuple[int, int], fine: bool = False) -> Image.Image:
    from .color import prepare

    im = prepare(im)
    if im.size == target:
        return im if im.mode != "P" else im.convert("RGB")
    # What DCT scaling leaves is a small step. Under 1.25x (a 6000x4000 camera file decoded at
    # 3/8 for a 2048 preview is 1.1x) bilinear is 40 dB from Lanczos-from-full and costs 40%
    # less than bicubic; under 1.5x bicubic is as sharp as Lanczos (whose ringing shows most at
    # small factors) and a third cheaper. Larger steps get Lanczos. ``fine`` (enhance, q92)
    # takes bicubic under 1.25x too: a 6000x4000 file decoded at 6/8 for 4096 is 1.1x, and
    # bicubic there is 0.7 dB closer to Lanczos-from-full after the encode than bilinear, and
    # 0.3 dB closer than bicubic from the full-size decode (bench/imaging.py measures it).
    return im.resize(target, _filter(im.size, target, fine), reducing_gap=3.0)


def _filter(size: tuple[int, int], target: tuple[int, int], fine: bool) -> Image.Resampling:
    step = max(size[0] / target[0], size[1] / target[1])
    if step < 1.25 and not fine:
        return Image.Resampling.BILINEAR
    if step < 1.5:
        return Image.Resampling.BICUBIC
    return Image.Resampling.LANCZOS


def _check(deadline: float, name: str, step: str) -> None:
    if time.monotonic() > deadline:
        raise DecodeTimeout(f"{name}: {step} ran past the decode time-out")


def thumbnail(im: Image.Image | Planes, size: int, fit: Literal["cover", "contain"],
              orientation: int = 1) -> Image.Image | Planes:
    """``orientation``: what ``encode`` will turn the result by (planes resample chroma on
    the grid it makes)."""
    if isinstance(im, Planes):
        return _thumbnail_planes(im, size, fit, orientation)
    if fit == "contain":
        return ImageOps.contain(im, (size, size), Image.Resampling.LANCZOS)
    # cover: the centred square of the short side, resampled straight from the source box
    short = min(im.width, im.height)
    left, top = (im.width - short) / 2, (im.height - short) / 2
    side = min(size, short)
    if side == short:
        # already decoded to the size (the thumbnail-only path): a crop, not a 1:1 resample
        x, y = (im.width - short) // 2, (im.height - short) // 2
        return im.crop((x, y, x + short, y + short))
    # reducing_gap 1.5: a box reduce by 2 first (a preview's 1365 square to 400 is 3.4x), then
    # Lanczos on a third of the taps: 47 dB against plain Lanczos, at under half the cost.
    return im.resize((side, side), Image.Resampling.LANCZOS, box=(left, top, left + short, top + short),
                     reducing_gap=1.5)


def _thumbnail_planes(im: Planes, size: int, fit: Literal["cover", "contain"], orientation: int) -> Planes:
    """``thumbnail`` of planes, the same geometry and filters, each plane at its own size."""
    w, h = im.size
    if fit == "contain":
        # ImageOps.contain's size: the long side at ``size``, the other rounded
        if w == h:
            target = (size, size)
        elif w > h:
            target = (size, max(1, round(h / w * size)))
        else:
            target = (max(1, round(w / h * size)), size)
        return im.resize(target, Image.Resampling.LANCZOS, orientation=orientation)
    short = min(w, h)
    side = min(size, short)
    if side == short:
        x, y = (w - short) // 2, (h - short) // 2
        return im.resize((short, short), Image.Resampling.BICUBIC, box=(x, y, x + short, y + short),
                         orientation=orientation)
    left, top = (w - short) / 2, (h - short) / 2
    return im.resize((side, side), Image.Resampling.LANCZOS, box=(left, top, left + short, top + short),
                     reducing_gap=1.5, orientation=orientation)


@dataclass(frozen=True)
class Carry:
    """The EXIF a rendition keeps: copyright always, GPS only when asked; nothing private."""

    copyright: str | None = None
    artist: str | None = None
    gps: tuple[float, float, float | None] | None = None

    @classmethod
    def from_exif(cls, exif: Image.Exif) -> Carry:
        gps_ifd = exif.get_ifd(0x8825)
        gps = None
        try:
            lat = _dms(gps_ifd[2]) * (-1 if gps_ifd.get(1) == "S" else 1)
            lon = _dms(gps_ifd[4]) * (-1 if gps_ifd.get(3) == "W" else 1)
            gps = (lat, lon, gps_altitude(gps_ifd))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            pass
        copyright_, artist = (_text(exif.get(t)) for t in (0x8298, 0x013B))
        return cls(copyright_, artist, gps)

    def exif_bytes(self, keep_gps: bool) -> bytes:
        e = Image.Exif()
        # A JPEG's EXIF segment holds 64 KB; a hostile file's text must not cost its preview.
        if self.copyright:
            e[0x8298] = self.copyright[:_TEXT_MAX]
        if self.artist:
            e[0x013B] = self.artist[:_TEXT_MAX]
        if keep_gps and self.gps:
            lat, lon, alt = self.gps
            g = e.get_ifd(0x8825)
            g.update({0: b"\x02\x03\x00\x00", 1: "N" if lat >= 0 else "S", 2: _to_dms(lat),
                      3: "E" if lon >= 0 else "W", 4: _to_dms(lon)})
            if alt is not None:
                g.update({5: b"\x00" if alt >= 0 else b"\x01", 6: _rational(abs(alt))})
        return e.tobytes() if len(e) or (keep_gps and self.gps) else b""


_TEXT_MAX = 4096  # characters of copyright or artist a preview carries; UTF-8 keeps both < 64 KB


def _text(v: object) -> str | None:
    return v.strip("\0 ") or None if isinstance(v, str) else None


def _dms(v: tuple[float, float, float]) -> float:
    d, m, s = v
    return float(d) + float(m) / 60 + float(s) / 3600


def _rational(x: float) -> IFDRational:
    f = Fraction(x).limit_denominator(10000)
    return IFDRational(f.numerator, f.denominator)


def _to_dms(x: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    x = abs(x)
    d = math.floor(x)
    m = math.floor((x - d) * 60)
    s = (x - d - m / 60) * 3600
    return IFDRational(d, 1), IFDRational(m, 1), _rational(s)


def encode(im: Image.Image | Planes, quality: int, exif: bytes = b"", orientation: int = 1) -> Rendition:
    """A progressive sRGB JPEG of ``im`` turned upright per its EXIF ``orientation``. RGB and
    L go through the project's encoder when it is built (a 5-scan script: a third less time
    than Pillow's 10 scans, same pixels; it turns rows while packing them); anything else, or
    no build, through Pillow's."""
    if isinstance(im, Planes):
        return _encode_planes(im, quality, exif, orientation)
    if _jpegenc is not None and im.mode in ("RGB", "L"):
        data = _jpegenc.encode(im.tobytes(), im.width, im.height, 3 if im.mode == "RGB" else 1,
                               quality, icc=SRGB_ICC, exif=exif, orientation=orientation)
        return Rendition(data, *upright_size(im.size, orientation))
    im = upright(im, orientation)
    buf = io.BytesIO()
    kwargs: dict[str, object] = {"exif": exif} if exif else {}
    im.save(buf, "JPEG", quality=quality, progressive=True, icc_profile=SRGB_ICC, **kwargs)
    return Rendition(buf.getvalue(), im.width, im.height)


def _encode_planes(im: Planes, quality: int, exif: bytes, orientation: int) -> Rendition:
    """Planes as ``Planes.resize`` leaves them (4:2:0, each its exact size) into the encoder."""
    w, h = im.size
    assert _jpegenc is not None and im.cb.size == im.cr.size == ((w + 1) // 2, (h + 1) // 2)
    assert im.y.size == im.size and im.chroma == (0.5, 0.5)
    data = _jpegenc.encode_planes(im.y.tobytes(), im.cb.tobytes(), im.cr.tobytes(), w, h, w,
                                  im.cb.width, quality, icc=SRGB_ICC, exif=exif,
                                  orientation=orientation)
    return Rendition(data, *upright_size(im.size, orientation))
