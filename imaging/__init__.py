"""Turns camera files into previews, thumbnails, enhanced previews and metadata.

Knows nothing of Kafka or of the rest of the project: paths in, renditions and attempt
records out, errors that say whether a retry could help.
"""

from .errors import (
    CorruptImage,
    DecodeTimeout,
    ExiftoolTimeout,
    ImageTooLarge,
    ImagingError,
    StorageUnavailable,
    TransientImagingError,
    UnsupportedFormat,
)
from .metadata import GPS, ImageMetadata
from .pipeline import Imager
from .types import (
    Attempt,
    EnhanceResult,
    ImagingConfig,
    MetadataResult,
    PreviewResult,
    Rendition,
    ThumbnailResult,
)

__all__ = [
    "GPS", "Attempt", "CorruptImage", "DecodeTimeout", "EnhanceResult", "ExiftoolTimeout",
    "ImageMetadata", "ImageTooLarge", "Imager", "ImagingConfig", "ImagingError", "MetadataResult",
    "PreviewResult", "Rendition", "StorageUnavailable", "ThumbnailResult", "TransientImagingError",
    "UnsupportedFormat",
]
