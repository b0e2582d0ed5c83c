"""The events that drive the system: pydantic models, JSON on the wire, keyed by image UUID.

Every event carries ``schema_version`` and ``type``; a consumer accepts the versions it knows
and rejects the rest as permanent errors. Paths are relative to the storage root; absolute
paths, ``..`` and other escapes are rejected here, at the edge, before any file is touched.
"""

from __future__ import annotations

import uuid as uuid_mod
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1  # the one version this code writes and reads


def _check_uuid(value: str) -> str:
    try:
        parsed = uuid_mod.UUID(value)
    except (ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"not a UUID: {value!r}") from exc
    return str(parsed)  # canonical lower-case, hyphenated


def check_relative_path(value: str) -> str:
    """A storage-relative POSIX path that cannot escape its root."""
    if not value or "\x00" in value or "\\" in value:
        raise ValueError(f"bad path {value!r}: empty, NUL or backslash")
    p = PurePosixPath(value)
    if p.is_absolute():
        raise ValueError(f"bad path {value!r}: absolute paths are not allowed")
    if any(part in ("..", ".") for part in p.parts) or value.startswith("~"):
        raise ValueError(f"bad path {value!r}: '..' or '.' components are not allowed")
    return p.as_posix()


ImageUUID = Annotated[str, AfterValidator(_check_uuid)]
RelativePath = Annotated[str, AfterValidator(check_relative_path)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    uuid: ImageUUID

    @property
    def key(self) -> bytes:
        return self.uuid.encode()


class UploadReceived(_Event):
    """A file has landed in the uploads area; make its preview and thumbnail."""

    type: Literal["upload.received"] = "upload.received"
    path: RelativePath
    original_filename: str = Field(min_length=1, max_length=255)
    content_type: str | None = Field(default=None, max_length=255)
    size: int = Field(ge=0)
    uploaded_at: datetime = Field(default_factory=utcnow)
    owner_id: str | None = Field(default=None, max_length=255)
    gallery_id: str | None = Field(default=None, max_length=255)


class IngestRequested(_Event):
    """The user confirmed the image: move the original to permanent storage with metadata."""

    type: Literal["ingest.requested"] = "ingest.requested"
    path: RelativePath
    original_filename: str = Field(min_length=1, max_length=255)
    requested_at: datetime = Field(default_factory=utcnow)
    owner_id: str | None = Field(default=None, max_length=255)
    gallery_id: str | None = Field(default=None, max_length=255)


class EnhanceRequested(_Event):
    """Make a higher-resolution preview."""

    type: Literal["enhance.requested"] = "enhance.requested"
    path: RelativePath
    requested_at: datetime = Field(default_factory=utcnow)
    long_edge: int | None = Field(default=None, ge=16, le=16384)


class ImageRecord(BaseModel):
    """The value on the compacted ``images`` topic: the permanent state of one image."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    uuid: ImageUUID
    original_path: str
    metadata_path: str
    original_filename: str
    size: int
    sha256: str
    ingested_at: datetime
    owner_id: str | None = None
    gallery_id: str | None = None
    metadata: dict[str, object] = Field(default_factory=dict)


JobEvent = UploadReceived | IngestRequested | EnhanceRequested
