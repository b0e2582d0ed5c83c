"""The trace event: one record per processing attempt, streamed to the traces topic.

Every attempt of every job is one event: each method tried (fallbacks included), each
failure, and the ``retry`` / ``dead_letter`` decision that closes a failed run. The sink
(``tracestore``) turns them into rows of ``traces`` in ClickHouse, one column per
field, so a field added here needs a new versioned DDL file there (a unit test checks).

``trace_id`` is the identity of an attempt: a redelivered event carries the same id and the
store keeps one row per id. Numeric bounds match the ClickHouse column types, so an event
that validates here always fits its row.
"""

from __future__ import annotations

import uuid as uuid_mod
from datetime import UTC, datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .events import ImageUUID, utcnow
from .outcomes import Outcome

# The trace types the agents emit today; the column is free text so new ones need no DDL.
# A failed run's last trace is its decision, typed as the runner's outcome.
TRACE_TYPES: Final = (
    "preview_extraction", "thumbnail_generation", "metadata_extraction", "enhance", "storage",
    Outcome.RETRY.value, Outcome.DEAD_LETTER.value,
)
JOBS: Final = ("preview", "ingest", "enhance")

_U16 = 65_535
_I32 = 2**31 - 1
_I64 = 2**63 - 1


class TraceEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(1, ge=1, le=255)
    trace_id: ImageUUID = Field(default_factory=lambda: str(uuid_mod.uuid4()))
    image_uuid: ImageUUID
    job: str = Field(min_length=1, max_length=64)
    trace_type: str = Field(min_length=1, max_length=64)
    method_tried: str = Field(min_length=1, max_length=128)
    # 1 = the first method tried for this output; > 1 means a fallback ran.
    method_order: int = Field(1, ge=0, le=_U16)
    success: bool
    failure_reason: str | None = None
    duration_ms: float = Field(0.0, ge=0)
    size_bytes: int | None = Field(None, ge=0, le=_I64)
    width: int | None = Field(None, ge=0, le=_I32)
    height: int | None = Field(None, ge=0, le=_I32)
    # Which delivery of the job event this was (1 = first, > 1 = a retry).
    attempt: int = Field(1, ge=0, le=_U16)
    worker_id: str = ""
    source_topic: str = ""
    source_partition: int = Field(-1, ge=-1, le=_I32)
    source_offset: int = Field(-1, ge=-1, le=_I64)
    # When the user uploaded the image (from the upload event), for upload-to-preview latency.
    uploaded_at: datetime | None = None
    timestamp: datetime = Field(default_factory=utcnow)

    @field_validator("uploaded_at", "timestamp")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # Naive times are taken as UTC, so the wire always carries an offset and the store,
        # whatever its server time zone, reads the same instant.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
