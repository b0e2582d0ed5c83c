"""Kafka mechanics shared by the worker, the operator tools and the status service.

The one definition of lag: the workers reset to the earliest offset, so a group that never
committed on a partition, or committed below its log start (retention deleted those
records), resumes at the log start; only records from there on are waiting. And a group's
description, asked again while its coordinator is still busy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def position(begin: int, committed: int | None) -> int:
    """Where the group's next read of a partition starts."""
    if committed is None or committed < 0:
        return begin
    return max(committed, begin)


def lag(begin: int, end: int, committed: int | None) -> int:
    """Records waiting: from the group's position to the log end, never negative."""
    return max(0, end - position(begin, committed))


# A group's coordinator answers these while it is being elected or loading the offsets
# topic (a fresh broker, a restart): "ask again shortly", not "the broker is down".
_COORDINATOR_BUSY = ("NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE")


def describe_group(admin: Any, group: str, timeout_s: float,
                   clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> Any:
    """``admin.describe_consumer_groups`` for one group, asked again while its coordinator
    is busy, until ``timeout_s``; raises KafkaException (the last error) after that."""
    from confluent_kafka import KafkaException

    deadline = clock() + timeout_s
    while True:
        left = max(0.1, deadline - clock())
        try:
            return admin.describe_consumer_groups([group], request_timeout=left)[group].result(
                timeout=left)
        except KafkaException as exc:
            err: Any = exc.args[0] if exc.args else None
            name = err.name() if hasattr(err, "name") else ""
            if name not in _COORDINATOR_BUSY or clock() + 0.2 >= deadline:
                raise
        sleep(0.2)
