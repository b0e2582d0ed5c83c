"""Turns camera files into previews, thumbnails, enhanced previews and metadata.

Knows nothing of Kafka or of the rest of the project: paths in, renditions and attempt
records out, errors that say whether a retry could help.
"""

from .errors import CorruptImage, ExiftoolTimeout, ImageTooLarge, ImagingError, UnsupportedFormat
from .pipeline import Imager
from .types import Attempt, EnhanceResult, ImagingConfig, MetadataResult, PreviewResult, Rendition

__all__ = [
    "Attempt", "CorruptImage", "EnhanceResult", "ExiftoolTimeout", "ImageTooLarge", "Imager",
    "ImagingConfig", "ImagingError", "MetadataResult", "PreviewResult", "Rendition",
    "UnsupportedFormat",
]
