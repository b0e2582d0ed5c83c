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
import os
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

from . import planes
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
from .planes import Decoded, Planes, from_decode
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
    """As ``decode_stored``, through libjpeg-turbo straight into our buffers (planes for
    YCbCr in sRGB, else packed pixels); None when this path does not apply (no build, not an
    8-bit RGB or grey JPEG: Pillow decodes it).
    ``im`` is Pillow's opened header (its EXIF and ICC profile are used); it stays open, so
    the caller can fall back to Pillow when this raises."""
    if _jpegdec is None or im.format not in ("JPEG", "MPO") or im.mode not in ("RGB", "L"):
        return None
    fp: IO[bytes] | None = getattr(im, "fp", None)  # ImageFile's; closed after load()
    if fp is None:
        return None
    with classified(name):
        data = _jpeg_source(fp)
        if data is None:
            return None
        try:
            return _decode_turbo(im, data, box, name, deadline, orientation, max_pixels, fine)
        finally:
            if isinstance(data, memoryview):
                data.release()  # the BytesIO can be closed (and resized) again


def _jpeg_source(fp: IO[bytes]) -> int | memoryview | bytes | None:
    """The JPEG behind Pillow's ``fp`` as the C decoder takes it, None when it does not start
    like one: an open file's descriptor (the decoder preads it, so the file is not copied
    whole and ``fp``'s position stays), an in-memory file's buffer, else its bytes."""
    soi = b"\xff\xd8"
    if isinstance(fp, io.BytesIO):
        view = fp.getbuffer()
        if view[:2] == soi:
            return view
        view.release()
        return None
    try:
        fd = fp.fileno()
    except (AttributeError, OSError, ValueError):
        pos = fp.tell()
        fp.seek(0)
        data = fp.read()
        fp.seek(pos)
        return data if data[:2] == soi else None
    return fd if os.pread(fd, 2, 0) == soi else None


def _decode_turbo(
    im: Image.Image, data: int | memoryview | bytes, box: Box, name: str, deadline: float,
    orientation: int | None, max_pixels: int, fine: bool,
) -> tuple[Image.Image | Planes, int] | None:
    assert _jpegdec is not None
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
            stored = _jpegdec.decode_planes(data, scale, max_pixels, max_memory, until)
            if stored is not None:
                return _planar(im, stored, target, name, deadline, orientation, fine)
        got = _jpegdec.decode(data, scale, max_pixels, max_memory, until)
    except _jpegdec.TooLarge as exc:
        raise ImageTooLarge(f"{name}: {exc}") from None
    except _jpegdec.Timeout:
        raise DecodeTimeout(f"{name}: decode ran past the decode time-out") from None
    if got is None:
        return None
    pixels, w, h, components, _ = got
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


def _planar(im: Image.Image, got: Decoded, target: tuple[int, int], name: str,
            deadline: float, orientation: int | None, fine: bool) -> tuple[Planes, int]:
    """A planar decode resampled to ``target``."""
    _check(deadline, name, "decode")
    if orientation is None:
        orientation = int(im.getexif().get(ORIENTATION, 1) or 1)
    orientation = orientation if orientation in _TRANSPOSE else 1
    decoded = from_decode(got)
    out = decoded.resize(target, _filter(decoded.size, target, fine), reducing_gap=3.0,
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
        return planes.thumbnail(im, size, fit == "cover", orientation)
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
        return im.encode(quality, SRGB_ICC, exif, orientation)
    if _jpegenc is not None and im.mode in ("RGB", "L"):
        data = _jpegenc.encode(im.tobytes(), im.width, im.height, 3 if im.mode == "RGB" else 1,
                               quality, icc=SRGB_ICC, exif=exif, orientation=orientation)
        return Rendition(data, *upright_size(im.size, orientation))
    im = upright(im, orientation)
    buf = io.BytesIO()
    kwargs: dict[str, object] = {"exif": exif} if exif else {}
    im.save(buf, "JPEG", quality=quality, progressive=True, icc_profile=SRGB_ICC, **kwargs)
    return Rendition(buf.getvalue(), im.width, im.height)

