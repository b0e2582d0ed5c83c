"""The imaging entry point: previews, thumbnails, enhanced previews and metadata for one file.

Each output is a chain of methods tried in order, each try an ``Attempt``:

    preview_extraction / enhance
      1 embedded_preview     the camera's JPEG (exiftool), if at least as large as the target
      2 turbo_decode         8-bit RGB or grey JPEG: libjpeg-turbo decodes at N/8 straight into
                             our buffers (imaging/_jpegdec.c), resample the rest: YCbCr in
                             sRGB as its planes (render.Planes), the rest as packed pixels; a
                             file it refuses as corrupt is a failed try and goes on to Pillow
      2 pillow_decode        anything else: Pillow, with DCT-domain downscaling for JPEGs
      3 raw_embedded_jpeg    RAW only: the embedded JPEG whatever its size, marked undersized
    thumbnail_generation     from the preview just made (the original is never decoded twice)
    metadata_extraction
      1 exiftool             exiftool JSON into ImageMetadata
      2 pillow_exif          Pillow's EXIF reader

Paths in, encoded JPEGs and attempt records out; nothing here knows about Kafka. An Imager
is shared by a worker's threads: the exiftool process behind it is guarded by a lock.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from . import formats  # noqa: F401 - registers the HEIC/HEIF opener
from .errors import CorruptImage, ImagingError, UnsupportedFormat
from .exiftool import Exiftool, ExiftoolFailed
from .metadata import METADATA_ARGS, from_exiftool, from_pillow
from .planes import Planes
from .probe import QUICK_PROBE_MIN_EDGE, Embedded, Probe, is_raw, probe, quick_probe
from .render import (
    Box,
    Carry,
    check_file,
    classified,
    decode_stored,
    decode_turbo,
    encode,
    open_image,
    scale_for,
    thumbnail,
    upright_size,
)
from .types import (
    Attempt,
    EnhanceResult,
    ImagingConfig,
    MetadataResult,
    PreviewResult,
    Rendition,
    ThumbnailResult,
)

_MPF_TAG = re.compile(r"(?:MPF\d*:)?MPImage(\d+)")


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


@dataclass
class _Made:
    """A decoded sRGB image as stored, the EXIF orientation that turns it upright (``encode``
    applies it), its encoded rendition and how it was made."""

    image: Image.Image | Planes
    orientation: int
    rendition: Rendition
    carry: Carry
    from_embedded: bool = False
    undersized: bool = False


@dataclass
class _Step:
    """Which decoder a chain step is on, so its attempt record names the one that ran."""

    trace: str
    attempts: list[Attempt]
    method: str = "pillow_decode"
    start: float = 0.0
    fine: bool = False


@dataclass
class _Candidate:
    """An embedded JPEG: its pixel size, and its bytes once pulled out of the file."""

    tag: str
    data: bytes | None
    size: tuple[int, int]


class Imager:
    def __init__(self, config: ImagingConfig | None = None) -> None:
        self.config = config or ImagingConfig()
        self.exiftool = Exiftool(self.config.exiftool_timeout_s)
        # Pillow warns at its own bomb threshold before our check runs; make ours the one.
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, self.config.max_pixels)

    def close(self) -> None:
        self.exiftool.close()

    def __enter__(self) -> Imager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- outputs ---------------------------------------------------------------------------
    def preview(self, path: Path) -> PreviewResult:
        c = self.config
        attempts: list[Attempt] = []
        made = self._chain(path, "preview_extraction", c.preview_long_edge, c.preview_quality, attempts)
        start = time.perf_counter()
        try:
            with classified(path.name):
                # the box is square, so cropping or fitting as stored then turning matches turning
                # first up to a 1 px shift of the centre and resampling rounding
                thumb = thumbnail(made.image, c.thumbnail_size, c.thumbnail_fit, made.orientation)
                thumb_r = encode(thumb, c.preview_quality, self._exif(made.carry), made.orientation)
        except ImagingError as exc:
            attempts.append(Attempt("thumbnail_generation", "from_preview", 1, False, _ms(start), str(exc)))
            exc.attempts = attempts
            raise
        method = "from_embedded_preview" if made.from_embedded else "from_preview"
        attempts.append(Attempt("thumbnail_generation", method, 1, True, _ms(start), None,
                                len(thumb_r.data), thumb_r.width, thumb_r.height))
        return PreviewResult(made.rendition, thumb_r, attempts, made.from_embedded, made.undersized)

    def enhance(self, path: Path, long_edge: int | None = None) -> EnhanceResult:
        attempts: list[Attempt] = []
        edge = long_edge or self.config.enhance_long_edge
        made = self._chain(path, "enhance", edge, self.config.enhance_quality, attempts)
        return EnhanceResult(made.rendition, attempts, made.from_embedded, made.undersized)

    def thumbnail(self, path: Path) -> ThumbnailResult:
        """Only the thumbnail, as fast as it can be had (an embedded preview is usually enough)."""
        c = self.config
        attempts: list[Attempt] = []
        box: Box = ("cover" if c.thumbnail_fit == "cover" else "fit", c.thumbnail_size)
        made = self._chain(path, "thumbnail_generation", c.thumbnail_size, c.preview_quality, attempts,
                           box=box, encode_output=False)
        thumb = thumbnail(made.image, c.thumbnail_size, c.thumbnail_fit, made.orientation)
        r = encode(thumb, c.preview_quality, self._exif(made.carry), made.orientation)
        attempts[-1] = replace(attempts[-1], size_bytes=len(r.data), width=r.width, height=r.height)
        return ThumbnailResult(r, attempts, made.from_embedded)

    def metadata(self, path: Path) -> MetadataResult:
        attempts: list[Attempt] = []
        start = time.perf_counter()
        try:
            check_file(path, self.config)
        except ImagingError as exc:
            attempts.append(Attempt("metadata_extraction", "file_check", 0, False, _ms(start), str(exc)))
            exc.attempts = attempts
            raise
        first_error: ImagingError | None = None
        try:
            row = self.exiftool.json(METADATA_ARGS, path)
            meta = from_exiftool(row)
            if not (meta.mime_type or "image/").startswith("image/"):
                raise ExiftoolFailed(f"not an image: exiftool sees {meta.file_type} ({meta.mime_type})")
            attempts.append(Attempt("metadata_extraction", "exiftool", 1, True, _ms(start),
                                    width=meta.width, height=meta.height))
            return MetadataResult(meta, attempts)
        except ExiftoolFailed as exc:
            attempts.append(Attempt("metadata_extraction", "exiftool", 1, False, _ms(start), str(exc)))
        except ImagingError as exc:
            attempts.append(Attempt("metadata_extraction", "exiftool", 1, False, _ms(start), str(exc)))
            first_error = exc
        start = time.perf_counter()
        try:
            with open_image(path, self.config, path.name) as im, classified(path.name):
                meta = from_pillow(im)
        except ImagingError as exc:
            attempts.append(Attempt("metadata_extraction", "pillow_exif", 2, False, _ms(start), str(exc)))
            # A transient exiftool failure beats Pillow's "unknown format": exiftool reads more.
            err = first_error if first_error is not None and first_error.retriable else exc
            err.attempts = attempts
            raise err from None
        attempts.append(Attempt("metadata_extraction", "pillow_exif", 2, True, _ms(start),
                                width=meta.width, height=meta.height))
        return MetadataResult(meta, attempts)

    # -- the chain -------------------------------------------------------------------------
    def _chain(
        self, path: Path, trace: str, long_edge: int, quality: int, attempts: list[Attempt],
        box: Box | None = None, encode_output: bool = True,
    ) -> _Made:
        box = box or ("fit", long_edge)
        fine = trace == "enhance"  # the larger, higher-quality rendition: no bilinear shortcut
        start = time.perf_counter()
        try:
            check_file(path, self.config)
        except ImagingError as exc:
            attempts.append(Attempt(trace, "file_check", 0, False, _ms(start), str(exc)))
            exc.attempts = attempts
            raise
        info = Probe(is_raw=is_raw(path, None))
        cand: _Candidate | None = None
        # 1: the camera's own preview
        try:
            quick = quick_probe(path) if box[1] >= QUICK_PROBE_MIN_EDGE else None
            info = quick or probe(self.exiftool, path)
            cand = self._embedded(path, info, box)
            made = self._from_candidate(path, info, cand, box, quality, encode_output, require=True,
                                        fine=fine)
            attempts.append(self._ok(trace, "embedded_preview", 1, start, made, cand.tag))
            return made
        except ExiftoolFailed as exc:
            attempts.append(Attempt(trace, "embedded_preview", 1, False, _ms(start), f"exiftool: {exc}"))
        except ImagingError as exc:
            attempts.append(Attempt(trace, "embedded_preview", 1, False, _ms(start), str(exc)))
            if info.is_raw and exc.retriable:
                exc.attempts = attempts
                raise
        # 2: decode the file itself
        start = time.perf_counter()
        if info.is_raw:
            kind = info.file_type or path.suffix
            attempts.append(Attempt(trace, "pillow_decode", 2, False, 0.0,
                                    f"{kind} is camera RAW: Pillow cannot decode it"))
        else:
            step = _Step(trace, attempts, start=start, fine=fine)
            try:
                made = self._decode_file(path, info, box, quality, encode_output, step)
                attempts.append(self._ok(trace, step.method, 2, step.start, made))
                return made
            except ImagingError as exc:
                attempts.append(Attempt(trace, step.method, 2, False, _ms(step.start), str(exc)))
                exc.attempts = attempts
                raise
        # 3: RAW: the embedded JPEG is all there is
        start = time.perf_counter()
        try:
            if cand is None:
                raise UnsupportedFormat(f"{path.name}: camera RAW without an embedded JPEG preview")
            made = self._from_candidate(path, info, cand, box, quality, encode_output, require=False,
                                        fine=fine)
        except ImagingError as exc:
            attempts.append(Attempt(trace, "raw_embedded_jpeg", 3, False, _ms(start), str(exc)))
            exc.attempts = attempts
            raise
        attempts.append(self._ok(trace, "raw_embedded_jpeg", 3, start, made, cand.tag))
        return made

    def _ok(self, trace: str, method: str, order: int, start: float, made: _Made,
            tag: str | None = None) -> Attempt:
        r = made.rendition
        note = None
        if made.undersized:
            note = f"undersized: {tag} is {r.width}x{r.height}, the largest image in the file"
        size = len(r.data) if r.data else None
        return Attempt(trace, method, order, True, _ms(start), note, size, r.width, r.height)

    def _embedded(self, path: Path, info: Probe, box: Box) -> _Candidate:
        """The smallest embedded JPEG that covers the target, else the largest one there is.
        A RAW's thumbnail then comes from its ~640 px preview, not its full-size JpgFromRaw
        (a tenth of the decode). Pixel sizes come from headers; byte counts only order the
        tries, those too small to plausibly cover the target last, so none is pulled out of
        the file in vain on the common path."""
        if not info.embedded:
            raise UnsupportedFormat(f"{path.name}: no embedded preview")
        floor = _PLAUSIBLE_BYTES_PER_PIXEL * box[1] * box[1]
        problems: list[str] = []
        largest: _Candidate | None = None
        biggest = max(e.size_bytes for e in info.embedded)
        for emb in sorted(info.embedded, key=lambda e: (e.size_bytes < floor, e.size_bytes)):
            try:
                size = _mpf_size(path, emb.tag)
                if size is not None:
                    cand = _Candidate(emb.tag, None, size)
                else:
                    data = self.exiftool.binary(emb.tag, path)
                    cand = _Candidate(emb.tag, data, _jpeg_size(path, emb.tag, data))
            except (ExiftoolFailed, UnsupportedFormat, ImagingError) as exc:
                if isinstance(exc, ImagingError) and exc.retriable:
                    raise
                problems.append(f"{_short(emb)}: {exc}")
                continue
            if _covers(cand.size, info, box):
                # only a bigger one can stand in for an odd one: the biggest is not looked at
                # (its letterbox check is a decode, ~15 ms for a RAW's full-size JPEG)
                odd = _odd_shape(path, info, cand) if emb.size_bytes < biggest else None
                if odd is None:
                    return cand
                problems.append(f"{_short(emb)}: {odd}")
            if largest is None or cand.size[0] * cand.size[1] > largest.size[0] * largest.size[1]:
                largest = cand
        if largest is not None:
            return largest
        raise UnsupportedFormat(f"{path.name}: no usable embedded preview ({'; '.join(problems)})")

    def _from_candidate(
        self, path: Path, info: Probe, cand: _Candidate, box: Box, quality: int, encode_output: bool,
        require: bool, fine: bool = False,
    ) -> _Made:
        w, h = cand.size
        need = _need(cand.size, info, box)
        undersized = not _covers(cand.size, info, box)
        if require and undersized:
            raise UnsupportedFormat(
                f"embedded {cand.tag.rpartition(':')[2]} {w}x{h} is smaller than the target "
                f"{need[0]}x{need[1]}"
            )
        # a letterboxed or cropped preview would not be the photo
        if require and not info.is_raw and info.width and info.height and _other_shape(
            (w, h), (info.width, info.height)
        ):
            raise UnsupportedFormat(
                    f"embedded {cand.tag} {w}x{h} has another shape than the image "
                    f"{info.width}x{info.height}"
                )
        name = f"{path.name}:{cand.tag}"
        if cand.data is None:
            cand.data = _mpf_bytes(path, cand.tag) or self.exiftool.binary(cand.tag, path)
            _jpeg_size(path, cand.tag, cand.data)
        im = open_image(io.BytesIO(cand.data), self.config, name)
        own = im.getexif().get(0x0112)
        orientation = int(own) if isinstance(own, int) and 1 <= own <= 8 and own != 1 else info.orientation
        out, orientation = self._decode(im, box, name, None, orientation, fine)
        carry = Carry(info.copyright, info.artist, info.gps)
        rendition = self._render(out, orientation, quality, carry, encode_output)
        return _Made(out, orientation, rendition, carry, from_embedded=True,
                     undersized=undersized and info.is_raw)

    def _decode_file(self, path: Path, info: Probe, box: Box, quality: int, encode_output: bool,
                     step: _Step) -> _Made:
        try:
            im = open_image(path, self.config, path.name)
        except UnsupportedFormat as exc:
            if info.file_type and info.file_type not in ("TXT", "-"):
                raise UnsupportedFormat(f"{exc} (exiftool sees {info.file_type})") from None
            raise
        with classified(path.name):
            carry = Carry.from_exif(im.getexif())
        out, orientation = self._decode(im, box, path.name, step, fine=step.fine)
        return _Made(out, orientation, self._render(out, orientation, quality, carry, encode_output), carry)

    def _decode(self, im: Image.Image, box: Box, name: str, step: _Step | None,
                orientation: int | None = None, fine: bool = False) -> tuple[Image.Image | Planes, int]:
        """``im`` decoded to ``box``, as stored, with its orientation; closes ``im``. Through
        libjpeg-turbo where that applies, else Pillow; a file libjpeg refuses as corrupt or
        unsupported is given to Pillow too (a failed ``turbo_decode`` try in ``step``), as
        Pillow reads some that libjpeg's stricter parser does not. Past the time-out or over
        a limit is final."""
        deadline = self._deadline()
        start = time.perf_counter()
        try:
            fast = decode_turbo(im, box, name, deadline, orientation, self.config.max_pixels, fine)
        except (CorruptImage, UnsupportedFormat) as exc:
            fast = None
            if step is not None:
                step.attempts.append(Attempt(step.trace, "turbo_decode", 2, False, _ms(start), str(exc)))
                step.start = time.perf_counter()
        except BaseException:
            if step is not None:
                step.method = "turbo_decode"
            im.close()
            raise
        if fast is not None:
            im.close()
            if step is not None:
                step.method = "turbo_decode"
            return fast
        return decode_stored(im, box, name, deadline, orientation, fine)

    def _render(self, im: Image.Image | Planes, orientation: int, quality: int, carry: Carry,
                encode_output: bool) -> Rendition:
        if not encode_output:
            return Rendition(b"", *upright_size(im.size, orientation))
        return encode(im, quality, self._exif(carry), orientation)

    def _exif(self, carry: Carry) -> bytes:
        return carry.exif_bytes(keep_gps=not self.config.strip_gps)

    def _deadline(self) -> float:
        return time.monotonic() + self.config.decode_timeout_s


# A JPEG that covers n x n pixels is rarely under 0.02 bytes a pixel (a flat grey one is
# about that); smaller embedded images are tried last.
_PLAUSIBLE_BYTES_PER_PIXEL = 0.02
_BAND_MAX = 24  # brightest pixel value still counted as a black band


def _need(size: tuple[int, int], info: Probe, box: Box) -> tuple[int, int]:
    """The pixel size the target asks of an embedded image of ``size``."""
    if info.is_raw or not (info.width and info.height):
        # a RAW's sensor is larger than any target; exiftool's ImageWidth there is a thumbnail's
        return scale_for(size, box)
    return scale_for((info.width, info.height), box)


def _covers(size: tuple[int, int], info: Probe, box: Box) -> bool:
    pick = max if box[0] == "fit" else min
    need_long = box[1] if info.is_raw or not (info.width and info.height) else pick(_need(size, info, box))
    return pick(size) >= need_long


def _odd_shape(path: Path, info: Probe, cand: _Candidate) -> str | None:
    """Why ``cand`` is not the photo itself, or None. A letterboxed or cropped preview must not
    win over a bigger one that is the photo."""
    w, h = cand.size
    if not info.is_raw and info.width and info.height:
        if _other_shape(cand.size, (info.width, info.height)):
            return f"{w}x{h} has another shape than the image {info.width}x{info.height}"
    elif cand.data is not None and _letterboxed(f"{path.name}:{cand.tag}", cand.data):
        # a RAW's size is unknown here; some put a 3:2 photo in a 640x480 preview
        return f"{w}x{h} has black bands at two opposite edges (letterboxed)"
    return None


def _letterboxed(name: str, data: bytes) -> bool:
    """Near-black bands along both top and bottom, or both sides. A dark photo may pass for
    one: the cost is only that a bigger preview is used."""
    with classified(name), Image.open(io.BytesIO(data)) as im:
        im.draft("L", (max(1, im.width // 8), max(1, im.height // 8)))
        g = im.convert("L")
    w, h = g.size
    bh, bw = max(1, h // 25), max(1, w // 25)

    def dark(box: tuple[int, int, int, int]) -> bool:
        brightest = g.crop(box).getextrema()[1]  # one band: (min, max) of ints
        return isinstance(brightest, (int, float)) and brightest <= _BAND_MAX

    return (dark((0, 0, w, bh)) and dark((0, h - bh, w, h))) or (
        dark((0, 0, bw, h)) and dark((w - bw, 0, w, h))
    )


def _jpeg_size(path: Path, tag: str, data: bytes) -> tuple[int, int]:
    with classified(f"{path.name}:{tag}"), Image.open(io.BytesIO(data)) as im:
        if im.format not in ("JPEG", "MPO"):
            raise UnsupportedFormat(f"{tag} is {im.format}, not a JPEG")
        return im.size


def _mpf_frame(path: Path, tag: str) -> tuple[tuple[int, int], int, int] | None:
    """An MPF image's pixel size, offset and byte count, through Pillow's MP index: a camera's
    preview that turns out too small is never copied out (~1 MB), one that serves is read
    without exiftool. None when Pillow cannot tell; exiftool then decides."""
    m = _MPF_TAG.fullmatch(tag)
    if m is None:
        return None
    try:
        with classified(path.name), Image.open(path) as im:
            frame = int(m.group(1)) - 1
            entries = getattr(im, "mpinfo", {}).get(0xB002, [])
            if im.format != "MPO" or not 0 < frame < min(len(entries), getattr(im, "n_frames", 1)):
                return None
            im.seek(frame)  # Pillow resolves the index's offset (relative to the MPF header)
            return im.size, im.tile[0].offset, int(entries[frame]["Size"])
    except ImagingError as exc:
        if exc.retriable:
            raise
        return None


def _mpf_size(path: Path, tag: str) -> tuple[int, int] | None:
    frame = _mpf_frame(path, tag)
    return frame[0] if frame else None


def _mpf_bytes(path: Path, tag: str) -> bytes | None:
    frame = _mpf_frame(path, tag)
    if frame is None:
        return None
    _, start, size = frame
    try:
        with classified(path.name), path.open("rb") as f:
            f.seek(start)
            data = f.read(size)
    except ImagingError as exc:
        if exc.retriable:
            raise
        return None
    return data if data[:3] == b"\xff\xd8\xff" and len(data) == size else None


def _short(emb: Embedded) -> str:
    return emb.tag.rpartition(":")[2]


def _other_shape(a: tuple[int, int], b: tuple[int, int]) -> bool:
    ra, rb = a[0] / a[1], b[0] / b[1]
    return abs(ra - rb) > 0.02 and abs(1 / ra - rb) > 0.02  # either way round: orientation
