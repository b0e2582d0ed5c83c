"""A worker that holds waiting records and takes none: noticed, and made to rejoin its group.

Under load, two rebalances a second apart (a worker joining just after another) have left a
faust 0.15.3 / aiokafka 0.14 worker with its partitions assigned, recovery done, the fetcher
polling and nothing fetched, its lag there for good (tests/integration/test_worker_runtime.py
::test_worker_groups_with_different_topics_share_one_consumer_group, about 1 run in 10 with
the cores busy; the cause is not found). A rejoin is a new assignment: the fetch starts over.

This is the pure decision (the clock passed in): records wait on the worker's own job topics,
none of which it holds back, no job is running and none has finished, for ``after_s``.
Retry topics are left out: their records wait out a backoff inside the agent, by design.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stall:
    after_s: float = 20.0
    since: float | None = None  # when the current spell of waiting without progress began
    done: int = -1

    def check(self, now: float, waiting: int, in_flight: int, done: int) -> bool:
        """True once per spell that has lasted ``after_s``; the next spell starts after it."""
        if waiting <= 0 or in_flight > 0 or done != self.done:
            self.since = now if waiting > 0 and in_flight == 0 else None
            self.done = done
            return False
        if self.since is None:
            self.since = now
        if now - self.since >= self.after_s:
            self.since = now
            return True
        return False
