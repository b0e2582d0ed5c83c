"""Imaging errors; ``retriable`` tells the caller whether another try could help.

    ImagingError
    ├── UnsupportedFormat    not an image we can read (permanent)
    ├── CorruptImage         truncated or undecodable data (permanent)
    ├── ImageTooLarge        over the pixel, byte or frame limit: a decompression bomb (permanent)
    └── TransientImagingError                                       (transient)
        ├── ExiftoolTimeout      exiftool hung, died or stayed busy; a fresh process may succeed
        ├── DecodeTimeout        decoding ran past its deadline (a loaded machine, or a huge file)
        └── StorageUnavailable   the file could not be read (I/O error, permissions, gone)

Every error carries the attempt records made before it was raised, so a failed job still
leaves its trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import Attempt


class ImagingError(Exception):
    retriable: bool = False

    def __init__(self, message: str, attempts: list[Attempt] | None = None) -> None:
        super().__init__(message)
        self.attempts: list[Attempt] = list(attempts or [])


class UnsupportedFormat(ImagingError):
    pass


class CorruptImage(ImagingError):
    pass


class ImageTooLarge(ImagingError):
    pass


class TransientImagingError(ImagingError):
    retriable = True


class ExiftoolTimeout(TransientImagingError):
    pass


class DecodeTimeout(TransientImagingError):
    pass


class StorageUnavailable(TransientImagingError):
    pass
