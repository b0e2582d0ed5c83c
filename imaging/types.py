"""Plain values that imaging hands back: renditions, attempt records, its own config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .metadata import ImageMetadata


@dataclass(frozen=True)
class ImagingConfig:
    preview_long_edge: int = 2048
    enhance_long_edge: int = 4096
    thumbnail_size: int = 400
    thumbnail_fit: Literal["cover", "contain"] = "cover"
    preview_quality: int = 85
    enhance_quality: int = 92
    max_pixels: int = 200_000_000
    max_file_bytes: int = 512 * 1024 * 1024
    max_frames: int = 64
    exiftool_timeout_s: float = 20.0
    # Checked between decode steps: Python cannot interrupt a running decoder, so a file
    # that overruns fails at the next step instead of holding its thread for good.
    decode_timeout_s: float = 60.0
    strip_gps: bool = True


@dataclass(frozen=True)
class Attempt:
    """One try of one method for one output; becomes a trace event."""

    trace_type: str  # preview_extraction | thumbnail_generation | metadata_extraction | enhance
    method_tried: str
    method_order: int
    success: bool
    duration_ms: float
    failure_reason: str | None = None
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Rendition:
    """An encoded JPEG and its pixel size."""

    data: bytes
    width: int
    height: int


@dataclass
class PreviewResult:
    preview: Rendition
    thumbnail: Rendition
    attempts: list[Attempt] = field(default_factory=list)
    from_embedded: bool = False
    # A RAW file whose embedded JPEG is smaller than the target: the best there is, but
    # not what was asked for.
    undersized: bool = False


@dataclass
class EnhanceResult:
    image: Rendition
    attempts: list[Attempt] = field(default_factory=list)
    from_embedded: bool = False
    undersized: bool = False


@dataclass
class ThumbnailResult:
    thumbnail: Rendition
    attempts: list[Attempt] = field(default_factory=list)
    from_embedded: bool = False


@dataclass
class MetadataResult:
    metadata: ImageMetadata
    attempts: list[Attempt] = field(default_factory=list)
