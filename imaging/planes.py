"""A YCbCr image kept as its three planes, from the decoder to the encoder.

A JPEG in sRGB decodes into its Y, Cb and Cr planes as the file stores them
(imaging/_jpegdec.c ``decode_planes``), each plane is resampled at its own size (the C
extension imaging/_resample.c: Pillow's resample, to the bit, in a vectorised order; Pillow
itself where it is not built), and the planes go into the DCT as they are
(imaging/_jpegenc.c ``encode_planes``). Nothing is converted to RGB and back, chroma is
resampled at a quarter of the pixels, and no image of 3-byte pixels is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from .types import Rendition

try:  # optional, as the encoder and decoder are (pyproject's ext-modules)
    from . import _resample
except ImportError:
    _resample = None  # type: ignore[assignment]

try:  # planes exist only where a planar decode made them, which render allows with this built
    from . import _jpegenc
except ImportError:
    _jpegenc = None  # type: ignore[assignment]

Box4 = tuple[float, float, float, float]

# Stored axes an EXIF orientation runs backwards once upright (x, y); _jpegenc.c fill_rows.
REVERSED = {1: (False, False), 2: (True, False), 3: (True, True), 4: (False, True),
            5: (False, False), 6: (False, True), 7: (True, True), 8: (True, False)}


@dataclass(frozen=True)
class Plane:
    """One 8-bit plane: ``height`` rows of ``width`` samples, ``stride`` bytes apart."""

    data: bytes
    width: int
    height: int
    stride: int

    @classmethod
    def of(cls, im: Image.Image) -> Plane:
        assert im.mode == "L"
        return cls(im.tobytes(), im.width, im.height, im.width)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def image(self) -> Image.Image:
        im = Image.frombuffer("L", (self.stride, self.height), self.data, "raw", "L", 0, 1)
        return im if self.stride == self.width else im.crop((0, 0, self.width, self.height))

    def resize(self, target: tuple[int, int], f: Image.Resampling, box: Box4,
               reducing_gap: float | None = None) -> Plane:
        """As Image.resize of the plane: the C resample where it is built, after Pillow's
        reducing step (its box reduce, as Image.resize takes it) when there is one."""
        w, h = box[2] - box[0], box[3] - box[1]
        fx, fy = ((int(w / target[0] / reducing_gap) or 1, int(h / target[1] / reducing_gap) or 1)
                  if reducing_gap is not None else (1, 1))
        built = _resample is not None  # a bool: mypy takes the module as always there
        if not built:
            return Plane.of(self.image().resize(target, f, box=box, reducing_gap=reducing_gap))
        if fx > 1 or fy > 1:
            # Image.resize's own steps, so the pixels stay Pillow's: reduce the box and the
            # filter's reach around it, then resample what is left in the reduced plane
            im = self.image()
            safe = im._get_safe_box(target, f, box)
            small = Plane.of(im.reduce((fx, fy), box=safe))
            box = ((box[0] - safe[0]) / fx, (box[1] - safe[1]) / fy,
                   (box[2] - safe[0]) / fx, (box[3] - safe[1]) / fy)
            return small.resize(target, f, box)
        data = _resample.resample(self.data, self.width, self.height, self.stride, box, target,
                                  int(f))
        return Plane(data, target[0], target[1], target[0])

    def edge_padded(self, n: int) -> Plane:
        """The plane with ``n`` more samples on every side, copies of the nearest edge one."""
        im = self.image()
        w, h = im.size
        out = Image.new("L", (w + 2 * n, h + 2 * n))
        out.paste(im, (n, n))
        near = Image.Resampling.NEAREST
        out.paste(im.crop((0, 0, w, 1)).resize((w, n), near), (n, 0))
        out.paste(im.crop((0, h - 1, w, h)).resize((w, n), near), (n, h + n))
        out.paste(out.crop((n, 0, n + 1, h + 2 * n)).resize((n, h + 2 * n), near), (0, 0))
        out.paste(out.crop((w + n - 1, 0, w + n, h + 2 * n)).resize((n, h + 2 * n), near), (w + n, 0))
        return Plane.of(out)


@dataclass(frozen=True)
class Planes:
    """A YCbCr image as its planes, not converted to RGB: what a planar decode gives and
    what ``encode`` takes as it is. ``size`` is the image's, and luma's; ``chroma`` is chroma
    samples per luma pixel across and down (0.5, 0.5 at 4:2:0). A decode's planes are padded
    to whole blocks: only the top-left ``size`` of luma, and its ``chroma`` share of each
    chroma plane, is the image; the rest repeats the edge."""

    y: Plane
    cb: Plane
    cr: Plane
    size: tuple[int, int]
    chroma: tuple[float, float] = (0.5, 0.5)

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    def resize(self, target: tuple[int, int], f: Image.Resampling, box: Box4 | None = None,
               reducing_gap: float | None = None, orientation: int = 1) -> Planes:
        """The ``box`` of the image (luma pixels; all of it by default) at ``target``, 4:2:0:
        each plane resampled from its own samples, chroma to half the target each way, on
        the grid the encoder will see once ``orientation`` turns the image upright."""
        box = box or (0.0, 0.0, float(self.size[0]), float(self.size[1]))
        c_target = ((target[0] + 1) // 2, (target[1] + 1) // 2)
        c_box, pad = chroma_box(box, target, self.chroma, self.cb.size, orientation,
                                slack=1 if _resample is not None else 0)
        cb, cr = (self.cb.edge_padded(pad), self.cr.edge_padded(pad)) if pad else (self.cb, self.cr)
        # Chroma takes bicubic where luma takes bilinear: a quarter of the pixels, and the
        # 1.5 dB of chroma PSNR it gives back on a camera file's preview (bench/imaging.py).
        cf = Image.Resampling.BICUBIC if f == Image.Resampling.BILINEAR else f
        return Planes(self.y.resize(target, f, box, reducing_gap),
                      cb.resize(c_target, cf, c_box, reducing_gap),
                      cr.resize(c_target, cf, c_box, reducing_gap), target)

    def encode(self, quality: int, icc: bytes, exif: bytes, orientation: int) -> Rendition:
        """Planes as ``resize`` leaves them (4:2:0) into the encoder, turned upright."""
        assert _jpegenc is not None
        w, h = self.size
        assert self.cb.size == self.cr.size == ((w + 1) // 2, (h + 1) // 2)
        assert self.y.size == self.size and self.cb.stride == self.cr.stride
        data = _jpegenc.encode_planes(self.y.data, self.cb.data, self.cr.data, w, h, self.y.stride,
                                      self.cb.stride, quality, icc=icc, exif=exif,
                                      orientation=orientation)
        return Rendition(data, *((h, w) if orientation >= 5 else (w, h)))


def chroma_box(box: Box4, target: tuple[int, int], chroma: tuple[float, float],
               size: tuple[int, int], orientation: int, slack: int = 0) -> tuple[Box4, int]:
    """Where in a chroma plane (of ``size``) the 4:2:0 samples of ``box`` at ``target`` come
    from, and how many samples of edge padding on every side that needs (``edge_padded``)
    when the resample takes a box only ``slack`` samples past the plane (the C one takes
    one, clamping its taps there; Pillow's none).

    An odd target side has one chroma sample more than half of it, covering a pixel past the
    image: the encoder pads the upright image at its right and bottom, which is the start of
    a stored axis that the orientation runs backwards (a portrait 6's top). The box reaches
    that pixel's worth past the source on that side; without it every sample would sit up
    to half a sample off (about 1.5 dB of chroma PSNR on a 2048x1365 preview)."""
    axes = []
    for lo, hi, t, frac, n, back in zip(box[:2], box[2:], target, chroma, size,
                                        REVERSED.get(orientation, (False, False)), strict=True):
        reach = (hi - lo) / t * (2 * ((t + 1) // 2) - t)  # 0 or one target pixel, in source px
        a, b = (lo - reach, hi) if back else (lo, hi + reach)
        axes.append((a * frac, b * frac, n))
    over = max(0.0, *(max(-a, b - n) for a, b, n in axes))
    pad = 0 if over <= slack else math.ceil(over)
    (ax, bx, _), (ay, by, _) = axes
    return (ax + pad, ay + pad, bx + pad, by + pad), pad


Decoded = tuple[tuple[bytes, int, int, int], tuple[bytes, int, int, int],
                tuple[bytes, int, int, int], int, int, int, int, bytes | None]


def from_decode(got: Decoded) -> Planes:
    """decode_planes' answer as Planes: each plane its whole padded buffer, so that the
    resample's edge taps read the repeated edge as Pillow's read a clamped one."""
    (y, _, _, ys), (cb, _, _, cs), (cr, _, _, _), w, h, h_samp, v_samp, _ = got
    y_p, cb_p, cr_p = (Plane(buf, stride, len(buf) // stride, stride)
                       for buf, stride in ((y, ys), (cb, cs), (cr, cs)))
    return Planes(y_p, cb_p, cr_p, (w, h), (1 / h_samp, 1 / v_samp))


def thumbnail(im: Planes, size: int, cover: bool, orientation: int) -> Planes:
    """render.thumbnail of planes: the same geometry and filters, each plane at its size."""
    w, h = im.size
    lanczos = Image.Resampling.LANCZOS
    if not cover:
        # ImageOps.contain's size: the long side at ``size``, the other rounded
        if w == h:
            target = (size, size)
        elif w > h:
            target = (size, max(1, round(h / w * size)))
        else:
            target = (max(1, round(w / h * size)), size)
        return im.resize(target, lanczos, orientation=orientation)
    short = min(w, h)
    side = min(size, short)
    if side == short:  # already at the size: the centred square, a crop
        x, y = (w - short) // 2, (h - short) // 2
        return im.resize((short, short), Image.Resampling.BICUBIC, (x, y, x + short, y + short),
                         orientation=orientation)
    left, top = (w - short) / 2, (h - short) / 2
    return im.resize((side, side), lanczos, (left, top, left + short, top + short),
                     reducing_gap=1.5, orientation=orientation)
