"""Kafka mechanics shared by the worker, the operator tools and the status service.

Today: the one definition of lag. The workers reset to the earliest offset, so a group
that never committed on a partition, or committed below its log start (retention deleted
those records), resumes at the log start: only records from there on are waiting.
"""

from __future__ import annotations


def position(begin: int, committed: int | None) -> int:
    """Where the group's next read of a partition starts."""
    if committed is None or committed < 0:
        return begin
    return max(committed, begin)


def lag(begin: int, end: int, committed: int | None) -> int:
    """Records waiting: from the group's position to the log end, never negative."""
    return max(0, end - position(begin, committed))
