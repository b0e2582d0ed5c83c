"""What a worker says about itself every few seconds on the heartbeats topic: who it is,
what it runs, what it holds back and why, and a sketch of its upload-to-preview latency.

The model is the protocol: the worker writes it (``streams.worker.runtime``), the status service
reads it. Wall-clock times are the worker's own; a reader compares durations
(``running_s``, heartbeat age), never a worker's clock against its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VERSION = 1
# Bucket i holds latencies up to FLOOR_S * GROWTH**i: at most 5 % above the true value.
FLOOR_S = 0.01
GROWTH = 1.1
MAX_BUCKET = 220  # about 11 days; longer latencies land in the last bucket
KEEP_MINUTES = 60


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class InFlightJob(_Model):
    topic: str
    partition: int
    offset: int
    uuid: str
    running_s: float  # when the heartbeat was sent


class PausedTopic(_Model):
    topic: str
    partitions: list[int]
    reason: str
    by: Literal["priority", "operator"] = "priority"


class LatencyMinute(_Model):
    minute: int  # unix minute the previews were done in
    buckets: dict[int, int]  # bucket index -> previews
    max_s: float


class Heartbeat(_Model):
    v: int = VERSION
    id: str  # host:pid, the worker's Kafka client id too
    host: str
    pid: int
    version: str
    started_at: float
    sent_at: float
    interval_s: float
    topics: list[str]  # the topics it consumes, in priority order
    concurrency: int
    timeout_s: float
    jobs_done: int
    rss_bytes: int | None = None
    in_flight: list[InFlightJob] = Field(default_factory=list)
    paused: list[PausedTopic] = Field(default_factory=list)
    stopping: str | None = None
    preview_latency: list[LatencyMinute] = Field(default_factory=list)


def bucket(seconds: float) -> int:
    if seconds <= FLOOR_S:
        return 0
    return min(MAX_BUCKET, math.ceil(math.log(seconds / FLOOR_S) / math.log(GROWTH)))


def bucket_value(i: int) -> float:
    return FLOOR_S * GROWTH**i


class LatencySketch:
    """Upload-to-preview latencies of the last hour, per minute, in log buckets: a few
    hundred numbers however many previews, and sketches of many workers add up."""

    def __init__(self) -> None:
        self._minutes: dict[int, tuple[dict[int, int], list[float]]] = {}

    def add(self, seconds: float, now: float | None = None) -> None:
        t = time.time() if now is None else now
        minute = int(t // 60)
        buckets, mx = self._minutes.setdefault(minute, ({}, [0.0]))
        i = bucket(max(0.0, seconds))
        buckets[i] = buckets.get(i, 0) + 1
        mx[0] = max(mx[0], seconds)
        for old in [m for m in self._minutes if m <= minute - KEEP_MINUTES]:
            del self._minutes[old]

    def minutes(self) -> list[LatencyMinute]:
        return [LatencyMinute(minute=m, buckets=dict(b), max_s=round(mx[0], 3))
                for m, (b, mx) in sorted(self._minutes.items())]


class LatencySummary(_Model):
    window_s: int
    count: int
    p50_s: float | None
    p95_s: float | None
    max_s: float | None


def summarize(minutes: Iterable[LatencyMinute], now: float, window_s: int) -> LatencySummary:
    """p50/p95 (bucket upper edges: within 10 % above the truth) and the exact max of the
    previews done in the last ``window_s`` (whole minutes, the current one included)."""
    first = int(now // 60) - window_s // 60 + 1
    counts: dict[int, int] = {}
    mx: float | None = None
    for m in minutes:
        if m.minute < first:
            continue
        for i, n in m.buckets.items():
            counts[i] = counts.get(i, 0) + n
        mx = m.max_s if mx is None else max(mx, m.max_s)
    total = sum(counts.values())
    if not total:
        return LatencySummary(window_s=window_s, count=0, p50_s=None, p95_s=None, max_s=None)
    return LatencySummary(window_s=window_s, count=total, p50_s=_quantile(counts, total, 0.50, mx),
                          p95_s=_quantile(counts, total, 0.95, mx), max_s=mx)


def _quantile(counts: Mapping[int, int], total: int, q: float, mx: float | None) -> float:
    rank = math.ceil(q * total)
    seen = 0
    for i in sorted(counts):
        seen += counts[i]
        if seen >= rank:
            value = bucket_value(i)
            return round(min(value, mx) if mx is not None else value, 3)
    return round(mx or 0.0, 3)
