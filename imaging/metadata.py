"""The typed metadata of an original: exiftool's JSON (or Pillow's EXIF reader) into one model.

It leaves imaging as JSON (``model_dump(mode="json")``) inside the ``images`` record, so it is a
pydantic model: the one place imaging meets the wire.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict

METADATA_ARGS = [
    "-G", "-n", "-FileType", "-MIMEType", "-Make", "-Model", "-LensModel", "-Lens", "-LensID",
    "-SubSecDateTimeOriginal", "-DateTimeOriginal", "-OffsetTimeOriginal", "-CreateDate",
    "-OffsetTime", "-Composite:ImageSize", "-ImageWidth", "-ImageHeight", "-Orientation", "-ISO",
    "-ExposureTime", "-FNumber", "-FocalLength", "-Composite:GPSLatitude", "-Composite:GPSLongitude",
    "-Composite:GPSAltitude", "-ColorSpace", "-ICC_Profile:ProfileDescription",
]

_DATE = re.compile(
    r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?"
)
_COLOR_SPACES = {1: "sRGB", 2: "Adobe RGB", 0xFFFF: "Uncalibrated"}


class GPS(BaseModel):
    model_config = ConfigDict(frozen=True)

    latitude: float
    longitude: float
    altitude_m: float | None = None


class ImageMetadata(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: Literal["exiftool", "pillow"]
    file_type: str | None = None
    mime_type: str | None = None
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    # Aware when the camera recorded its UTC offset; naive (camera-local time) otherwise.
    captured_at: datetime | None = None
    width: int | None = None
    height: int | None = None
    orientation: int | None = None
    iso: int | None = None
    exposure_time_s: float | None = None
    f_number: float | None = None
    focal_length_mm: float | None = None
    gps: GPS | None = None
    color_space: str | None = None

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def parse_datetime(value: object, offset: object = None) -> datetime | None:
    if not isinstance(value, str):
        return None
    m = _DATE.match(value.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        micro = round(float(frac) * 1_000_000) if frac else 0
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), min(micro, 999_999))
    except ValueError:
        return None  # "0000:00:00 00:00:00" and friends
    tz = tz or (offset.strip() if isinstance(offset, str) else None)
    if tz:
        if tz == "Z":
            return dt.replace(tzinfo=UTC)
        t = re.match(r"([+-])(\d{2}):?(\d{2})$", tz)
        if t:
            sign = -1 if t.group(1) == "-" else 1
            delta = timedelta(hours=int(t.group(2)), minutes=int(t.group(3)))
            if delta < timedelta(hours=24):
                return dt.replace(tzinfo=timezone(sign * delta))
    return dt


def _get(row: dict[str, Any], *names: str) -> Any:
    for name in names:
        for key, value in row.items():
            if (key == name or key.endswith(f":{name}")) and value not in (None, "", "-"):
                return value
    return None


def gps_altitude(gps_ifd: Any) -> float | None:
    """GPSAltitude in metres, negative below sea level (GPSAltitudeRef 1, a byte or an int)."""
    alt = _num(gps_ifd.get(6))
    if alt is None:
        return None
    return -abs(alt) if gps_ifd.get(5) in (1, b"\x01") else alt


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.split()[0])
        except (ValueError, IndexError):
            return None
    try:
        return float(value)  # Pillow's IFDRational
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _int(value: Any) -> int | None:
    n = _num(value)
    return int(n) if n is not None and n == n and abs(n) < 2**31 else None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    s = (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)).strip("\0 ")
    return s or None


def from_exiftool(row: dict[str, Any]) -> ImageMetadata:
    width = height = None
    size = _get(row, "Composite:ImageSize")
    if isinstance(size, str) and len(size.split()) == 2:
        width, height = (_int(v) for v in size.split())
    width = width or _int(_get(row, "ImageWidth"))
    height = height or _int(_get(row, "ImageHeight"))
    lat, lon = _num(_get(row, "Composite:GPSLatitude")), _num(_get(row, "Composite:GPSLongitude"))
    cs = _get(row, "ICC_Profile:ProfileDescription")
    if cs is None:
        cs_num = _int(_get(row, "ColorSpace"))
        cs = _COLOR_SPACES.get(cs_num) if cs_num is not None else None
    return ImageMetadata(
        source="exiftool",
        file_type=_str(_get(row, "FileType")),
        mime_type=_str(_get(row, "MIMEType")),
        make=_str(_get(row, "Make")),
        model=_str(_get(row, "Model")),
        lens=_str(_get(row, "LensModel", "Lens", "LensID")),
        captured_at=parse_datetime(
            _get(row, "SubSecDateTimeOriginal", "DateTimeOriginal", "CreateDate"),
            _get(row, "OffsetTimeOriginal", "OffsetTime"),
        ),
        width=width,
        height=height,
        orientation=_int(_get(row, "Orientation")),
        iso=_int(_get(row, "ISO")),
        exposure_time_s=_num(_get(row, "ExposureTime")),
        f_number=_num(_get(row, "FNumber")),
        focal_length_mm=_num(_get(row, "FocalLength")),
        gps=GPS(latitude=lat, longitude=lon, altitude_m=_num(_get(row, "Composite:GPSAltitude")))
        if lat is not None and lon is not None else None,
        color_space=_str(cs),
    )


def _dms(v: Any, ref: Any, neg: str) -> float | None:
    try:
        d, m, s = (float(x) for x in v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    val = d + m / 60 + s / 3600
    return -val if ref == neg else val


def from_pillow(im: Image.Image) -> ImageMetadata:
    exif = im.getexif()
    sub = exif.get_ifd(0x8769)
    gps_ifd = exif.get_ifd(0x8825)
    lat = _dms(gps_ifd.get(2), gps_ifd.get(1), "S")
    lon = _dms(gps_ifd.get(4), gps_ifd.get(3), "W")
    cs_num = _int(sub.get(0xA001))
    return ImageMetadata(
        source="pillow",
        file_type=im.format,
        mime_type=Image.MIME.get(im.format or ""),
        make=_str(exif.get(0x010F)),
        model=_str(exif.get(0x0110)),
        lens=_str(sub.get(0xA434)),
        captured_at=parse_datetime(sub.get(0x9003) or exif.get(0x0132), sub.get(0x9011)),
        width=im.width,
        height=im.height,
        orientation=_int(exif.get(0x0112)),
        iso=_int(iso[0] if isinstance(iso := sub.get(0x8827), tuple) and iso else iso),
        exposure_time_s=_num(sub.get(0x829A)),
        f_number=_num(sub.get(0x829D)),
        focal_length_mm=_num(sub.get(0x920A)),
        gps=GPS(latitude=lat, longitude=lon, altitude_m=gps_altitude(gps_ifd))
        if lat is not None and lon is not None else None,
        color_space=_COLOR_SPACES.get(cs_num) if cs_num is not None else None,
    )
