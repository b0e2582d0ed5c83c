"""Reading the retry protocol's ``x-ingest-*`` control headers off a consumed record.

Headers are untrusted input (anyone who can produce to a job topic can set them): every
value is parsed here, range-checked, and a bad one raises ``InvalidHeader`` naming it, so
the runner dead-letters the record instead of crashing, looping or retrying forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import retry
from .errors import InvalidHeader

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
    prior = _int(h, retry.H_ATTEMPT, 0, upper=MAX_ATTEMPTS)
    round_base = _int(h, retry.H_ROUND_BASE, 0)
    if round_base > prior:
        # the tries budget counts attempt - round_base; a base above the attempts would
        # make that negative and the record retry forever
        raise InvalidHeader(
            f"header {retry.H_ROUND_BASE}={round_base} is above {retry.H_ATTEMPT}={prior}"
        )
    origin_topic = h.get(retry.H_ORIGINAL_TOPIC) or topic
    if len(origin_topic) > 249:  # Kafka's own limit on a topic name
        raise InvalidHeader(f"header {retry.H_ORIGINAL_TOPIC} is longer than a topic name can be")
    return ControlState(
        prior_attempts=prior,
        round_base=round_base,
        origin_topic=origin_topic,
        origin_partition=_int(h, retry.H_ORIGINAL_PARTITION, partition, upper=2**31 - 1),
        origin_offset=_int(h, retry.H_ORIGINAL_OFFSET, offset),
        origin_timestamp_ms=_int(h, retry.H_ORIGINAL_TIMESTAMP, timestamp_ms),
        first_failure_ms=_int(h, retry.H_FIRST_FAILURE, 0),
    )


def retry_delay_s(h: Mapping[str, str], now_ms: int, *, max_s: float) -> float:
    """How long a retry record still waits: never negative, never past the backoff bound,
    so a forged not-before cannot hold a retry partition; a malformed one means now (the
    runner then dead-letters the record on its other headers or runs it)."""
    raw = (h.get(retry.H_NOT_BEFORE) or "").strip()
    if not _is_decimal(raw):
        return 0.0
    return max(0.0, min(max_s, (int(raw) - now_ms) / 1000))
