"""The imaging entry point: previews, thumbnails, enhanced previews and metadata for one file.

Paths in, encoded JPEGs and attempt records out; nothing here knows about Kafka.
"""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import CorruptImage, ImageTooLarge, ImagingError, UnsupportedFormat
from .types import Attempt, EnhanceResult, ImagingConfig, MetadataResult, PreviewResult, Rendition


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


class Imager:
    def __init__(self, config: ImagingConfig | None = None) -> None:
        self.config = config or ImagingConfig()

    def close(self) -> None:
        pass

    def _open(self, path: Path) -> Image.Image:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise UnsupportedFormat(f"no such file: {path.name}") from None
        if size == 0:
            raise CorruptImage(f"{path.name}: empty file")
        if size > self.config.max_file_bytes:
            raise ImageTooLarge(f"{path.name}: {size} bytes over the limit {self.config.max_file_bytes}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(path)
        except UnidentifiedImageError:
            raise UnsupportedFormat(f"{path.name}: not a recognised image format") from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageTooLarge(f"{path.name}: {exc}") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise CorruptImage(f"{path.name}: {exc}") from None
        if im.width * im.height > self.config.max_pixels:
            raise ImageTooLarge(
                f"{path.name}: {im.width}x{im.height} over the pixel limit {self.config.max_pixels}"
            )
        return im

    def _render(self, path: Path, long_edge: int, quality: int) -> tuple[Image.Image, Rendition]:
        im = self._open(path)
        try:
            im.load()
            im = ImageOps.exif_transpose(im) or im
            if im.mode != "RGB":
                im = im.convert("RGB")
            im.thumbnail((long_edge, long_edge), Image.Resampling.LANCZOS)
        except ImagingError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise CorruptImage(f"{path.name}: {exc}") from None
        return im, _encode(im, quality)

    def preview(self, path: Path) -> PreviewResult:
        attempts: list[Attempt] = []
        start = time.perf_counter()
        try:
            im, rendition = self._render(path, self.config.preview_long_edge, self.config.preview_quality)
        except ImagingError as exc:
            attempts.append(Attempt("preview_extraction", "pillow_decode", 1, False, _ms(start), str(exc)))
            exc.attempts = attempts
            raise
        attempts.append(
            Attempt("preview_extraction", "pillow_decode", 1, True, _ms(start), None,
                    len(rendition.data), rendition.width, rendition.height)
        )
        start = time.perf_counter()
        n = self.config.thumbnail_size
        thumb = ImageOps.fit(im, (n, n), Image.Resampling.LANCZOS)
        thumb_r = _encode(thumb, self.config.preview_quality)
        attempts.append(
            Attempt("thumbnail_generation", "from_preview", 1, True, _ms(start), None,
                    len(thumb_r.data), thumb_r.width, thumb_r.height)
        )
        return PreviewResult(rendition, thumb_r, attempts)

    def enhance(self, path: Path, long_edge: int | None = None) -> EnhanceResult:
        start = time.perf_counter()
        edge = long_edge or self.config.enhance_long_edge
        try:
            _, rendition = self._render(path, edge, self.config.enhance_quality)
        except ImagingError as exc:
            exc.attempts = [Attempt("enhance", "pillow_decode", 1, False, _ms(start), str(exc))]
            raise
        return EnhanceResult(
            rendition,
            [Attempt("enhance", "pillow_decode", 1, True, _ms(start), None,
                     len(rendition.data), rendition.width, rendition.height)],
        )

    def metadata(self, path: Path) -> MetadataResult:
        start = time.perf_counter()
        im = self._open(path)
        meta: dict[str, object] = {"width": im.width, "height": im.height, "format": im.format}
        return MetadataResult(meta, [Attempt("metadata_extraction", "pillow_exif", 1, True, _ms(start))])


def _encode(im: Image.Image, quality: int) -> Rendition:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, progressive=True, optimize=False)
    return Rendition(buf.getvalue(), im.width, im.height)
