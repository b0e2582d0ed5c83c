"""Formats beyond Pillow's own: HEIC/HEIF through pillow-heif (AVIF is native since Pillow 11)."""

from __future__ import annotations

import pillow_heif

# Registering twice is harmless; importing this module is what makes .heic files open.
pillow_heif.register_heif_opener()
