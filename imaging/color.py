"""Pixels to 8-bit sRGB: every mode Pillow decodes (16-bit, palette, alpha, grayscale, CMYK) and
every embedded ICC profile (Adobe RGB, Display P3, CMYK press profiles) end up as plain RGB.
"""

from __future__ import annotations

import functools
import hashlib
import io

from PIL import Image, ImageCms

_SRGB = ImageCms.createProfile("sRGB")
SRGB_ICC: bytes = ImageCms.ImageCmsProfile(_SRGB).tobytes()

# Modes resampling would mangle (a palette resizes by nearest index, 16-bit clips): made
# 8-bit before the resize. The rest resize as they are and convert on the small image.
_PRE_RESIZE = {"P", "PA", "1", "I", "I;16", "I;16L", "I;16B", "I;16N", "F", "LA", "La"}


def prepare(im: Image.Image) -> Image.Image:
    """Bring exotic modes into one Pillow resizes well (L, RGB, RGBA, CMYK)."""
    if im.mode not in _PRE_RESIZE:
        return im
    if im.mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("PA", "LA", "La"):
        return im.convert("RGBA")
    if im.mode == "1":
        return im.convert("L")
    if im.mode == "F":
        lo, hi = im.getextrema()
        span = float(hi) - float(lo) or 1.0  # type: ignore[arg-type]
        return im.point(lambda v: (v - float(lo)) * 255.0 / span).convert("L")  # type: ignore[arg-type]
    # 16-bit or 32-bit integer grey: scale by the range the data can hold, not clip at 255.
    i = im if im.mode == "I" else im.convert("I")
    hi_val = i.getextrema()[1]
    shift = 1 / 256 if im.mode.startswith("I;16") or float(hi_val) > 255 else 1.0  # type: ignore[arg-type]
    return i.point(lambda v: v * shift).convert("L")


@functools.lru_cache(maxsize=32)
def is_srgb(icc: bytes) -> bool:
    # Skipping the sRGB-to-sRGB transform is the common case and saves a pass over the pixels.
    try:
        desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return True  # unreadable: nothing to convert with
    return "sRGB" in desc or "IEC 61966" in desc


@functools.lru_cache(maxsize=32)
def _transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        # NOCACHE: the transform is shared by the worker's threads (lcms's 1-pixel cache is not).
        return ImageCms.buildTransform(
            src, _SRGB, mode, "RGB", renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            flags=ImageCms.Flags.NOCACHE | ImageCms.Flags.BLACKPOINTCOMPENSATION,
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None  # an unreadable or mismatched profile: the pixels are taken as sRGB


def icc_digest(icc: bytes) -> str:
    return hashlib.sha1(icc).hexdigest()[:12]


def to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """8-bit RGB in sRGB: alpha flattened on white, the embedded profile applied."""
    im = prepare(im)
    if im.mode in ("RGBA", "RGBa"):
        base = Image.new("RGB", im.size, (255, 255, 255))
        base.paste(im.convert("RGB"), mask=im.getchannel("A"))
        im = base
    if icc and im.mode in ("RGB", "CMYK") and not (im.mode == "RGB" and is_srgb(icc)):
        transform = _transform(icc, im.mode)
        if transform is not None:
            return ImageCms.applyTransform(im, transform) or im
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im
