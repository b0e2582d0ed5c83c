from __future__ import annotations

import random

from imaging import CorruptImage, ExiftoolTimeout
from streams.errors import InvalidEvent, StorageUnavailable
from streams.retry import DeadLetter, Retry, backoff, decide


def test_permanent_errors_dead_letter_at_once() -> None:
    for exc in (InvalidEvent("x"), CorruptImage("x")):
        assert decide(exc, 1, 5, 1, 60) == DeadLetter("permanent")


def test_transient_and_unknown_errors_retry_until_tries_run_out() -> None:
    for exc in (StorageUnavailable("x"), ExiftoolTimeout("x"), KeyError("x")):
        assert isinstance(decide(exc, 1, 3, 1, 60), Retry)
        assert isinstance(decide(exc, 2, 3, 1, 60), Retry)
        assert decide(exc, 3, 3, 1, 60) == DeadLetter("retries-exhausted")


def test_backoff_grows_and_is_bounded() -> None:
    rng = random.Random(7)
    caps = [1, 2, 4, 8, 10, 10]
    for attempt, cap in enumerate(caps, start=1):
        for _ in range(50):
            d = backoff(attempt, 1.0, 10.0, rng)
            assert cap * 0.25 <= d <= cap
