"""The priority gate: a worker's job slots, shared by all its agents, each free slot given to
the highest-priority job waiting (moved out of ``runtime.py``, which builds one per worker).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class PriorityGate:
    """A semaphore whose free slot goes to the waiter with the lowest priority number.

    A slot released by a job is held for its priority for a moment (``hold_s``): the actor
    that finished is usually back with its next buffered record within a few event-loop
    turns, and without the hold a lower-priority waiter would slip in between every two
    higher-priority jobs.
    """

    def __init__(self, slots: int, hold_s: float = 0.02) -> None:
        self._free = slots
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._held: list[tuple[int, asyncio.TimerHandle]] = []
        self._seq = itertools.count()
        self.hold_s = hold_s
        self.closed = False
        # Priorities at or above this number wait even for a free slot (a priority pause).
        self.blocked_from: int | None = None
        # Priorities an operator paused (``pause TOPIC``), whatever the lag.
        self.paused: frozenset[int] = frozenset()

    def _blocked(self, priority: int) -> bool:
        return (self.blocked_from is not None and priority >= self.blocked_from) or \
            priority in self.paused

    def _first_eligible(self) -> tuple[int, int, asyncio.Future[None]] | None:
        # Few waiters (one per actor at most): a sorted scan skips blocked priorities.
        return next((w for w in sorted(self._waiters) if not self._blocked(w[0])), None)

    def _eligible_ahead(self, priority: int) -> bool:
        first = self._first_eligible()
        return first is not None and first[0] <= priority

    def block_from(self, priority: int | None) -> None:
        """Hold back jobs of ``priority`` and lower; ``None`` lets everything through."""
        self.blocked_from = priority
        self._unblocked()

    def pause(self, priorities: frozenset[int]) -> None:
        """Hold back exactly these priorities (an operator's pause), until called again."""
        self.paused = priorities
        self._unblocked()

    def _unblocked(self) -> None:
        while self._free > 0 and self._first_eligible() is not None:
            self._free -= 1
            self._hand_over()

    async def acquire(self, priority: int) -> None:
        if self.closed:
            await asyncio.Future()  # never starts; cancelled at shutdown, record redelivered
        for i, (held_prio, handle) in enumerate(self._held):
            # a held slot obeys the block like a free one: a paused priority never takes it
            if priority <= held_prio and not self._blocked(priority):
                handle.cancel()
                del self._held[i]
                return
        if self._free > 0 and not self._blocked(priority) and not self._eligible_ahead(priority):
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (priority, next(self._seq), fut)
        heapq.heappush(self._waiters, entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._hand_over()  # the slot arrived as we were cancelled: pass it on
            else:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def release(self, priority: int = 0) -> None:
        first = self._first_eligible()
        if first is not None and first[0] <= priority:
            self._hand_over()  # someone at least as urgent is already waiting
            return
        loop = asyncio.get_running_loop()
        entry: list[tuple[int, asyncio.TimerHandle]] = []

        def expire() -> None:
            if entry and entry[0] in self._held:
                self._held.remove(entry[0])
                self._hand_over()

        entry.append((priority, loop.call_later(self.hold_s, expire)))
        self._held.append(entry[0])

    def _hand_over(self) -> None:
        while not self.closed and (first := self._first_eligible()) is not None:
            self._waiters.remove(first)
            heapq.heapify(self._waiters)
            if not first[2].done():
                first[2].set_result(None)
                return
        self._free += 1
