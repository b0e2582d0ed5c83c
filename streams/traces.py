"""The trace event: one record per processing attempt, streamed to the traces topic."""

from __future__ import annotations

import uuid as uuid_mod
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from .events import ImageUUID, utcnow


class TraceEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    trace_id: str = Field(default_factory=lambda: str(uuid_mod.uuid4()))
    image_uuid: ImageUUID
    job: str
    trace_type: str
    method_tried: str
    method_order: int = 1
    success: bool
    failure_reason: str | None = None
    duration_ms: float = 0.0
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    attempt: int = 1
    worker_id: str = ""
    source_topic: str = ""
    source_partition: int = -1
    source_offset: int = -1
    uploaded_at: datetime | None = None
    timestamp: datetime = Field(default_factory=utcnow)
