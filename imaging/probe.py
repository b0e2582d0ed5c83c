"""What a file is before anything decodes it: its type, its stored size, and the JPEGs a camera
embedded in it (PreviewImage, JpgFromRaw, OtherImage, MPF images), as exiftool reports them,
or, for a JPEG and a large target, as Pillow reads them from the header (``quick_probe``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from .exiftool import Exiftool
from .render import Carry

# Camera RAW formats Pillow cannot decode: their embedded JPEG is the only way to a preview.
RAW_TYPES = frozenset({
    "CR2", "CR3", "CRW", "NEF", "NRW", "ARW", "SR2", "SRF", "DNG", "RAF", "ORF", "RW2", "RWL",
    "PEF", "SRW", "3FR", "IIQ", "ERF", "MRW", "MEF", "MOS", "X3F", "KDC", "DCR",
})
RAW_EXTENSIONS = frozenset(f".{t.lower()}" for t in RAW_TYPES)

# Tags that hold a whole embedded JPEG, in no particular order (the byte size decides).
EMBEDDED_TAGS = ("PreviewImage", "JpgFromRaw", "OtherImage", "MPImage2", "MPImage3")
_BINARY = re.compile(r"\(Binary data (\d+) bytes")

PROBE_ARGS = [
    "-G", "-FileType", "-MIMEType", "-ImageWidth#", "-ImageHeight#", "-Orientation#",
    "-Copyright", "-Artist", "-Composite:GPSLatitude#", "-Composite:GPSLongitude#",
    "-Composite:GPSAltitude#", *(f"-{t}" for t in EMBEDDED_TAGS),
]


@dataclass(frozen=True)
class Embedded:
    tag: str
    size_bytes: int


@dataclass(frozen=True)
class Probe:
    file_type: str | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None
    orientation: int = 1
    copyright: str | None = None
    artist: str | None = None
    gps: tuple[float, float, float | None] | None = None
    embedded: list[Embedded] = field(default_factory=list)  # largest first
    is_raw: bool = False


def _get(row: dict[str, Any], name: str) -> Any:
    for key, value in row.items():
        if key == name or key.endswith(f":{name}"):
            return value
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse(row: dict[str, Any], path: Path) -> Probe:
    embedded: list[Embedded] = []
    for key, value in row.items():
        tag = key.rpartition(":")[2]
        m = _BINARY.match(str(value)) if tag in EMBEDDED_TAGS else None
        if m and int(m.group(1)) > 0:
            embedded.append(Embedded(key, int(m.group(1))))
    embedded.sort(key=lambda e: e.size_bytes, reverse=True)
    file_type = _get(row, "FileType")
    lat, lon = _float(_get(row, "GPSLatitude")), _float(_get(row, "GPSLongitude"))
    orientation = _int(_get(row, "Orientation")) or 1
    return Probe(
        file_type=str(file_type) if file_type else None,
        mime_type=_get(row, "MIMEType"),
        width=_int(_get(row, "ImageWidth")),
        height=_int(_get(row, "ImageHeight")),
        orientation=orientation if 1 <= orientation <= 8 else 1,
        copyright=_get(row, "Copyright"),
        artist=_get(row, "Artist"),
        gps=(lat, lon, _float(_get(row, "GPSAltitude"))) if lat is not None and lon is not None else None,
        embedded=embedded,
        is_raw=is_raw(path, str(file_type) if file_type else None),
    )


def is_raw(path: Path, file_type: str | None) -> bool:
    if file_type:
        return file_type.upper() in RAW_TYPES
    return path.suffix.lower() in RAW_EXTENSIONS


def probe(et: Exiftool, path: Path) -> Probe:
    return parse(et.json(PROBE_ARGS, path), path)


# Camera JPEGs carry previews larger than this only as MPF images (Sony, Fujifilm, Nikon Z:
# 1616 to 1920 px); their maker-note previews are 640 to 1280 px. For a target above it,
# Pillow's own reading of the header, EXIF and MPF index says all exiftool would.
QUICK_PROBE_MIN_EDGE = 1280


def quick_probe(path: Path) -> Probe | None:
    """A JPEG's probe from Pillow alone: no exiftool round trip (~5 ms, and the exiftool lock
    the worker's threads share). None when Pillow does not see a JPEG: exiftool decides."""
    try:
        with path.open("rb") as f:
            if f.read(3) != b"\xff\xd8\xff":  # not a JPEG: spare Pillow's try of every opener
                return None
        with Image.open(path) as im:
            if im.format not in ("JPEG", "MPO"):
                return None
            exif = im.getexif()
            carry = Carry.from_exif(exif)
            embedded = [Embedded(f"MPF:MPImage{n + 1}", int(e["Size"]))
                        for n, e in enumerate(getattr(im, "mpinfo", {}).get(0xB002, []))
                        if n > 0]
            orientation = _int(exif.get(0x0112)) or 1
            return Probe(
                file_type=im.format, mime_type="image/jpeg", width=im.width, height=im.height,
                orientation=orientation if 1 <= orientation <= 8 else 1,
                copyright=carry.copyright, artist=carry.artist, gps=carry.gps,
                embedded=sorted(embedded, key=lambda e: e.size_bytes, reverse=True),
            )
    except Exception:  # noqa: BLE001 - any trouble reading it: exiftool probes and classifies
        return None
