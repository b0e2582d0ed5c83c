"""Formats beyond Pillow's own: HEIC/HEIF through pillow-heif; AVIF is native since Pillow 11.3,
and pillow-avif-plugin brings it to builds without it (Pillow-SIMD, scripts/pillow-simd)."""

from __future__ import annotations

import contextlib

import pillow_heif
from PIL import features

# Registering twice is harmless; importing this module is what makes .heic files open.
pillow_heif.register_heif_opener()

if not features.check("avif"):
    with contextlib.suppress(ImportError):
        import pillow_avif  # noqa: F401 - registers the AVIF opener and saver on import
