"""Dead-letter records: one dead-letter topic per job topic, original key and value untouched,
the failure's context in headers.

Header names follow Spring Kafka's dead-letter publisher (``kafka_dlt-*``) where it has one,
so existing tooling reads them; ours add what Spring lacks. Values are UTF-8 text.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from .outcomes import DeadLetterReason
from .topics import DEAD_LETTER_ID_HEADER

H_TOPIC = "kafka_dlt-original-topic"
H_PARTITION = "kafka_dlt-original-partition"
H_OFFSET = "kafka_dlt-original-offset"
H_TIMESTAMP = "kafka_dlt-original-timestamp"
H_GROUP = "kafka_dlt-original-consumer-group"
H_EXC_CLASS = "kafka_dlt-exception-fqcn"
H_EXC_MESSAGE = "kafka_dlt-exception-message"
H_EXC_STACK = "kafka_dlt-exception-stacktrace"
H_ID = DEAD_LETTER_ID_HEADER
H_REASON = "x-ingest-dlq-reason"
H_ATTEMPTS = "x-ingest-attempts"
H_WORKER = "x-ingest-worker"
H_FIRST_FAILURE = "x-ingest-first-failure"
H_LAST_FAILURE = "x-ingest-last-failure"
H_REPLAY_OF = "x-ingest-replay-of"

STACK_LIMIT = 4000  # bytes of stack trace kept; headers are not a log store
MESSAGE_LIMIT = 2000

Headers = list[tuple[str, bytes]]


def headers_to_dict(
    headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes] | None,
) -> dict[str, str]:
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: (v or b"").decode("utf-8", "replace") for k, v in items}


def read_reason(h: Mapping[str, str]) -> DeadLetterReason | None:
    """The reason header of a consumed dead letter; None if it is missing or none we write
    (headers are untrusted: anyone can produce to a dead-letter topic)."""
    try:
        return DeadLetterReason.parse(h.get(H_REASON, ""))
    except ValueError:
        return None


def dead_letter_id(topic: str, partition: int, offset: int) -> str:
    """Stable: the same failed record always gets the same id."""
    return hashlib.sha1(f"{topic}:{partition}:{offset}".encode()).hexdigest()[:16]


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _stack(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-STACK_LIMIT:]


@dataclass(frozen=True)
class Origin:
    """Where a record first came from (before any trips through a retry topic)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def build_headers(
    *, origin: Origin, group: str, exc: BaseException, reason: DeadLetterReason, attempts: int, worker: str,
    first_failure_ms: int, last_failure_ms: int, replay_of: str | None,
) -> Headers:
    cls = type(exc)
    fields = {
        H_TOPIC: origin.topic,
        H_PARTITION: str(origin.partition),
        H_OFFSET: str(origin.offset),
        H_TIMESTAMP: str(origin.timestamp_ms),
        H_GROUP: group,
        H_EXC_CLASS: f"{cls.__module__}.{cls.__qualname__}",
        H_EXC_MESSAGE: str(exc)[:MESSAGE_LIMIT],
        H_EXC_STACK: _stack(exc),
        H_ID: dead_letter_id(origin.topic, origin.partition, origin.offset),
        # parsed again: a caller mypy does not check (a test, a script) cannot write a typo
        H_REASON: DeadLetterReason.parse(reason),
        H_ATTEMPTS: str(attempts),
        H_WORKER: worker,
        H_FIRST_FAILURE: iso_ms(first_failure_ms),
        H_LAST_FAILURE: iso_ms(last_failure_ms),
    }
    if replay_of:
        fields[H_REPLAY_OF] = replay_of
    return [(k, v.encode()) for k, v in fields.items()]
