"""Every ``x-ingest-*`` and ``kafka_dlt-*`` header a record carries: the retry protocol's
control headers read off a consumed record, and the dead-letter headers written onto a failure.

Headers are untrusted input (anyone who can produce to a job topic can set them): every
value is parsed here, range-checked, and a bad one raises ``InvalidHeader`` naming it, so
the runner dead-letters the record instead of crashing, looping or retrying forever.

Dead-letter records: one dead-letter topic per job topic, original key and value untouched,
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

from .errors import InvalidHeader
from .outcomes import DeadLetterReason

PREFIX = "x-ingest-"  # every header of ours; a retry carries them all on to its next round

# -- retries: carried by a record on a retry topic (and on into its dead letter) ----------
H_ATTEMPT = "x-ingest-attempt"
H_NOT_BEFORE = "x-ingest-not-before-ms"
# Epoch ms, for the runner. Its dead letter's H_FIRST_FAILURE (below) is the same moment as
# ISO text, for people; both names are on records kept forever, so neither is renamed.
H_RETRY_FIRST_FAILURE_MS = "x-ingest-first-failure-ms"
H_ORIGINAL_TOPIC = "x-ingest-original-topic"
H_ORIGINAL_PARTITION = "x-ingest-original-partition"
H_ORIGINAL_OFFSET = "x-ingest-original-offset"
H_ORIGINAL_TIMESTAMP = "x-ingest-original-timestamp-ms"
H_LAST_ERROR = "x-ingest-last-error"
# On a replayed record: attempts made before the replay; the tries budget counts from here.
H_ROUND_BASE = "x-ingest-round-base"

# No honest record gets near this many attempts (tries per round times a few replays); a
# larger count is forged or corrupt, and ends in a dead letter rather than another round.
MAX_ATTEMPTS = 1000
_MAX_DIGITS = 19  # int64 range: offsets and millisecond timestamps


def _is_decimal(text: str) -> bool:
    # ASCII only: str.isdigit() accepts '²', which int() refuses
    return text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS


@dataclass(frozen=True)
class ControlState:
    """What the headers say about earlier attempts; defaults are the record's own coordinates."""

    prior_attempts: int
    round_base: int
    origin_topic: str
    origin_partition: int
    origin_offset: int
    origin_timestamp_ms: int
    first_failure_ms: int  # 0: no failure yet


def _int(h: Mapping[str, str], name: str, default: int, *, upper: int | None = None) -> int:
    raw = h.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not _is_decimal(text):
        raise InvalidHeader(f"header {name}={raw[:40]!r} is not a non-negative integer")
    value = int(text)
    if upper is not None and value > upper:
        raise InvalidHeader(f"header {name}={value} is above the bound {upper}")
    return value


def parse_control(h: Mapping[str, str], *, topic: str, partition: int, offset: int,
                  timestamp_ms: int) -> ControlState:
    prior = _int(h, H_ATTEMPT, 0, upper=MAX_ATTEMPTS)
    round_base = _int(h, H_ROUND_BASE, 0)
    if round_base > prior:
        # the tries budget counts attempt - round_base; a base above the attempts would
        # make that negative and the record retry forever
        raise InvalidHeader(
            f"header {H_ROUND_BASE}={round_base} is above {H_ATTEMPT}={prior}"
        )
    origin_topic = h.get(H_ORIGINAL_TOPIC) or topic
    if len(origin_topic) > 249:  # Kafka's own limit on a topic name
        raise InvalidHeader(f"header {H_ORIGINAL_TOPIC} is longer than a topic name can be")
    return ControlState(
        prior_attempts=prior,
        round_base=round_base,
        origin_topic=origin_topic,
        origin_partition=_int(h, H_ORIGINAL_PARTITION, partition, upper=2**31 - 1),
        origin_offset=_int(h, H_ORIGINAL_OFFSET, offset),
        origin_timestamp_ms=_int(h, H_ORIGINAL_TIMESTAMP, timestamp_ms),
        first_failure_ms=_int(h, H_RETRY_FIRST_FAILURE_MS, 0),
    )


def retry_delay_s(h: Mapping[str, str], now_ms: int, *, max_s: float) -> float:
    """How long a retry record still waits: never negative, never past the backoff bound,
    so a forged not-before cannot hold a retry partition; a malformed one means now (the
    runner then dead-letters the record on its other headers or runs it)."""
    raw = (h.get(H_NOT_BEFORE) or "").strip()
    if not _is_decimal(raw):
        return 0.0
    return max(0.0, min(max_s, (int(raw) - now_ms) / 1000))


# -- dead letters: what a failed record carries into its dead-letter topic ----------------
H_TOPIC = "kafka_dlt-original-topic"
H_PARTITION = "kafka_dlt-original-partition"
H_OFFSET = "kafka_dlt-original-offset"
H_TIMESTAMP = "kafka_dlt-original-timestamp"
H_GROUP = "kafka_dlt-original-consumer-group"
H_EXC_CLASS = "kafka_dlt-exception-fqcn"
H_EXC_MESSAGE = "kafka_dlt-exception-message"
H_EXC_STACK = "kafka_dlt-exception-stacktrace"
# On every dead letter, naming it; the resolution state topic is keyed by it.
H_ID = DEAD_LETTER_ID_HEADER = "x-ingest-dlq-id"
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
