"""Bytes <-> events. Decoding never raises anything but InvalidEvent, with a clear message."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from .errors import InvalidEvent
from .events import EnhanceRequested, IngestRequested, UploadReceived
from .topics import Job

EVENT_FOR_JOB: dict[Job, type[UploadReceived] | type[IngestRequested] | type[EnhanceRequested]] = {
    Job.PREVIEW: UploadReceived,
    Job.INGEST: IngestRequested,
    Job.ENHANCE: EnhanceRequested,
}


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json().encode()


M = TypeVar("M", bound=BaseModel)


def decode(model: type[M], data: bytes | None) -> M:
    if data is None:
        raise InvalidEvent("empty record (no value)")
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidEvent(f"invalid {model.__name__}: {problems}") from None


def decode_job(job: Job, data: bytes | None) -> UploadReceived | IngestRequested | EnhanceRequested:
    return decode(EVENT_FOR_JOB[job], data)
