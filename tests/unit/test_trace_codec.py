"""The sink's wire decoder judges records as the TraceEvent model does, batch or one by one."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from streams.traces import TraceEvent
from tracestore import codec


def event(**over: object) -> TraceEvent:
    base: dict[str, object] = dict(
        image_uuid=str(uuid.uuid4()), job="preview", trace_type="preview_extraction",
        method_tried="embedded_preview", method_order=1, success=True, duration_ms=3.5,
        size_bytes=1234, width=2048, height=1365, worker_id="w:1", source_topic="ingest-preview",
        source_partition=2, source_offset=7, uploaded_at=datetime.now(UTC),
    )
    base.update(over)
    return TraceEvent(**base)  # type: ignore[arg-type]


def raw(**over: object) -> bytes:
    return event(**over).model_dump_json().encode()


def mutate(change: dict[str, object], drop: tuple[str, ...] = ()) -> bytes:
    doc = json.loads(raw())
    doc.update(change)
    for k in drop:
        doc.pop(k)
    return json.dumps(doc).encode()


def test_columns_are_the_models_fields() -> None:
    assert tuple(TraceEvent.model_fields) == codec.COLUMNS
    assert set(codec.TraceWire.__struct_fields__) == set(TraceEvent.model_fields)


BAD = {
    "missing required": mutate({}, drop=("success",)),
    "missing trace_id": mutate({}, drop=("trace_id",)),
    "missing timestamp": mutate({}, drop=("timestamp",)),
    "wrong type": mutate({"success": [1]}),
    "unknown field": mutate({"colour": "red"}),
    "out of range": mutate({"method_order": 70_000}),
    "negative size": mutate({"size_bytes": -1}),
    "empty job": mutate({"job": ""}),
    "short uuid": mutate({"image_uuid": "1234"}),
    "naive time": mutate({"timestamp": "2024-05-01T10:00:00"}),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_records_rejected_like_the_model(name: str) -> None:
    value = BAD[name]
    reason = codec.check_one(value)
    assert reason is not None and "invalid trace event" in reason
    # The wire is stricter than the model in three ways: a naive time (the model reads it as
    # UTC; the wire wants the offset the model always writes) and a missing trace_id or
    # timestamp (the model makes new ones; a stored row must keep the producer's).
    if name not in ("naive time", "missing trace_id", "missing timestamp"):
        with pytest.raises(ValidationError):
            TraceEvent.model_validate_json(value)


def test_producers_output_is_accepted_and_nullable_fields_may_be_missing() -> None:
    assert codec.check_one(raw()) is None
    assert codec.check_one(raw(failure_reason="x", uploaded_at=None, width=None)) is None
    assert codec.check_one(mutate({}, drop=("uploaded_at", "width", "failure_reason"))) is None


def test_naive_times_become_utc_on_the_model() -> None:
    ev = event(timestamp=datetime(2024, 5, 1, 10, 0), uploaded_at=datetime(2024, 5, 1, 9, 0))
    assert ev.timestamp.tzinfo is UTC and ev.uploaded_at is not None and ev.uploaded_at.tzinfo is UTC
    assert codec.check_one(ev.model_dump_json().encode()) is None


def test_undecodable_and_empty() -> None:
    assert "undecodable" in (codec.check_one(b"\xff\xfe not json") or "")
    assert codec.check_one(b"") == "empty record (no value)"
    assert codec.check_one(None) == "empty record (no value)"


def test_batch_names_each_bad_record_and_keeps_the_rest() -> None:
    good = [raw() for _ in range(5)]
    values: list[bytes | None] = [good[0], b"nope", good[1], None, good[2], BAD["wrong type"], good[3]]
    checked = codec.check(values)
    assert checked.good == [0, 2, 4, 6]
    assert [i for i, _ in checked.bad] == [1, 3, 5]
    assert codec.check(good).good == list(range(5)) and not codec.check(good).bad
    assert codec.check([]).good == []


def test_a_record_holding_two_objects_is_not_two_records() -> None:
    a, b = raw(), raw()
    values: list[bytes | None] = [a + b"," + b, raw()]
    checked = codec.check(values)
    assert [i for i, _ in checked.bad] == [0] and checked.good == [1]


def test_json_rows_joins_selected_records() -> None:
    vals: list[bytes | None] = [b"{1}", b"{2}", b"{3}"]
    assert codec.json_rows(vals) == b"{1}\n{2}\n{3}"
    assert codec.json_rows(vals, [0, 2]) == b"{1}\n{3}"
