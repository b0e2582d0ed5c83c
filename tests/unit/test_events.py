from __future__ import annotations

import pytest

from streams import codec
from streams.errors import InvalidEvent
from streams.events import IngestRequested, UploadReceived
from streams.topics import Job

UID = "0b6f1c2e-9d3a-4f4e-8a1b-2c3d4e5f6a7b"


def upload_json(**over: object) -> bytes:
    base: dict[str, object] = {"uuid": UID, "path": "uploads/0b/6f/x.jpg", "original_filename": "x.jpg",
                               "size": 10}
    base.update(over)
    import json

    return json.dumps(base).encode()


def test_round_trip_and_canonical_uuid() -> None:
    ev = codec.decode(UploadReceived, upload_json(uuid=UID.upper()))
    assert ev.uuid == UID and ev.key == UID.encode()
    assert codec.decode(UploadReceived, codec.encode(ev)) == ev


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"not json", "invalid UploadReceived"),
        (b"", "invalid UploadReceived"),
        (None, "empty record"),
        (upload_json(uuid="nope"), "not a UUID"),
        (upload_json(path="/etc/passwd"), "absolute"),
        (upload_json(path="uploads/../../etc/passwd"), "'..'"),
        (upload_json(path="a\\..\\b"), "backslash"),
        (upload_json(schema_version=2), "schema_version"),
        (upload_json(size=-1), "size"),
        (upload_json(extra="x"), "extra"),
    ],
)
def test_bad_events_are_invalid_with_a_clear_message(data: bytes | None, needle: str) -> None:
    with pytest.raises(InvalidEvent) as exc:
        codec.decode_job(Job.PREVIEW, data)
    assert needle in str(exc.value)
    assert not exc.value.retriable


def test_ingest_event_on_preview_topic_is_rejected() -> None:
    ev = IngestRequested(uuid=UID, path="uploads/x.jpg", original_filename="x.jpg")
    with pytest.raises(InvalidEvent):
        codec.decode_job(Job.PREVIEW, codec.encode(ev))
