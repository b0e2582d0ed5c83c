"""One retry policy: an exception and an attempt count in, retry-after-delay or dead letter out.

Retries do not block the partition: a failed record is re-published to the job's
``.retry`` topic with the attempt count and a not-before time in headers, and the job
topic moves on. The retry agent waits until not-before and runs the job again. Waiting
there blocks only the retry partition, and delays are bounded by ``backoff_max_s``,
so a record behind a longer wait is late by at most that bound. (A retry topic per delay,
as Uber's design has, would avoid even that, at the cost of a topic per step.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import is_retriable
from .outcomes import DeadLetterReason


@dataclass(frozen=True)
class Retry:
    delay_s: float


@dataclass(frozen=True)
class DeadLetter:
    reason: DeadLetterReason


def backoff(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (AWS's 'full jitter'): uniform in [0, base*2^(n-1)]."""
    cap = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    r = rng or random
    # Never below a quarter of the cap, so a retry never lands instantly on a sick dependency.
    return float(cap * (0.25 + 0.75 * r.random()))


def decide(
    exc: BaseException, attempt: int, tries: int, base_s: float, max_s: float,
    rng: random.Random | None = None,
) -> Retry | DeadLetter:
    """``attempt`` is the 1-based number of the attempt that just failed."""
    if not is_retriable(exc):
        return DeadLetter(DeadLetterReason.PERMANENT)
    if attempt >= tries:
        return DeadLetter(DeadLetterReason.RETRIES_EXHAUSTED)
    return Retry(backoff(attempt, base_s, max_s, rng))
