"""Raw trace records -> rows the store accepts, fast, with every bad record named.

The sink must keep up with the whole system's attempts (100 k records/s and more), so
records are not turned into pydantic models one by one. A msgspec decoder derived from
``TraceEvent`` (same fields, types and bounds) checks a whole batch in one C call; the
records that pass go to ClickHouse as the JSON they arrived as (JSONEachRow), parsed there
in C++. Only a batch holding a bad record is checked record by record, to find which.

On the wire every field of ``TraceEvent`` is required except the nullable ones: producers
write every field (``model_dump_json``), and a record without ``trace_id`` or ``timestamp``
would corrupt the store (one merged row, a 1970 partition) rather than fail loudly.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import annotated_types
import msgspec

from streams.traces import TraceEvent

# Columns the sink writes, in the model's order; the table has these plus inserted_at.
COLUMNS: tuple[str, ...] = tuple(TraceEvent.model_fields)
_UUID_FIELDS = {"trace_id", "image_uuid"}


def _meta(metadata: Sequence[object]) -> msgspec.Meta | None:
    kw: dict[str, Any] = {}
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            kw["ge"] = m.ge
        elif isinstance(m, annotated_types.Le):
            kw["le"] = m.le
        elif isinstance(m, annotated_types.MinLen):
            kw["min_length"] = m.min_length
        elif isinstance(m, annotated_types.MaxLen):
            kw["max_length"] = m.max_length
    return msgspec.Meta(**kw) if kw else None


def _wire_type(name: str, annotation: Any, metadata: Sequence[object]) -> tuple[Any, bool]:
    """(msgspec type, nullable) for one TraceEvent field."""
    args = typing.get_args(annotation)
    nullable = isinstance(annotation, types.UnionType) and type(None) in args
    base = next(a for a in args if a is not type(None)) if nullable else annotation
    if name in _UUID_FIELDS:
        # Checked for shape only: building uuid.UUID objects would halve the decoder's speed,
        # and ClickHouse parses the UUID anyway; a malformed one fails the insert and is
        # found and dead-lettered by the sink's halving retry.
        return Annotated[str, msgspec.Meta(min_length=36, max_length=36)], False
    meta = msgspec.Meta(tz=True) if base is datetime else _meta(metadata)
    if meta is not None:
        base = Annotated[base, meta]
    return (base | None if nullable else base), nullable


def _build_wire() -> type[msgspec.Struct]:
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    optional: list[tuple[str, Any, Any]] = []
    for name, f in TraceEvent.model_fields.items():
        typ, nullable = _wire_type(name, f.annotation, f.metadata)
        if nullable:
            optional.append((name, typ, None))
        else:
            fields.append((name, typ))
    # gc=False: the instances hold only scalars, and untracked ones keep the cyclic GC from
    # running over and over while a 50,000-record batch is decoded (about 15 % faster).
    return msgspec.defstruct(
        "TraceWire", [*fields, *optional], forbid_unknown_fields=True, gc=False, module=__name__
    )


TraceWire = _build_wire()
_one = msgspec.json.Decoder(TraceWire)
_many: msgspec.json.Decoder[list[Any]] = msgspec.json.Decoder(list[TraceWire])  # type: ignore[valid-type]


@dataclass(frozen=True)
class Checked:
    """A batch split into records the store takes (by index) and records it must not."""

    good: list[int]
    bad: list[tuple[int, str]]


def check_one(value: bytes | None) -> str | None:
    """Why this record is not a valid trace event, or None if it is."""
    if not value:
        return "empty record (no value)"
    try:
        _one.decode(value)
    except msgspec.ValidationError as exc:
        return f"invalid trace event: {exc}"
    except msgspec.DecodeError as exc:
        return f"undecodable trace event: {exc}"
    return None


def check(values: Sequence[bytes | None]) -> Checked:
    if not values:
        return Checked([], [])
    if all(values):
        try:
            # One array of the raw records: a record that is not exactly one JSON object
            # breaks the array or its length, and the slow path below names it.
            decoded = _many.decode(b"[" + b",".join(typing.cast(list[bytes], values)) + b"]")
        except (msgspec.ValidationError, msgspec.DecodeError):
            decoded = None
        if decoded is not None and len(decoded) == len(values):
            return Checked(list(range(len(values))), [])
    good: list[int] = []
    bad: list[tuple[int, str]] = []
    for i, v in enumerate(values):
        reason = check_one(v)
        if reason is None:
            good.append(i)
        else:
            bad.append((i, reason))
    return Checked(good, bad)


def json_rows(values: Sequence[bytes | None], indexes: Sequence[int] | None = None) -> bytes:
    """The JSONEachRow body for the given records (all of them when indexes is None)."""
    if indexes is None:
        return b"\n".join(typing.cast(Sequence[bytes], values))
    return b"\n".join(typing.cast(bytes, values[i]) for i in indexes)
