from __future__ import annotations

import asyncio

from streams.worker.gate import PriorityGate


def test_free_slot_goes_to_the_most_urgent_waiter() -> None:
    async def main() -> list[str]:
        gate = PriorityGate(1, hold_s=0.0)
        order: list[str] = []
        await gate.acquire(0)

        async def job(name: str, prio: int) -> None:
            await gate.acquire(prio)
            order.append(name)
            gate.release(prio)

        tasks = [asyncio.create_task(job(n, p)) for n, p in (("enhance", 2), ("preview", 1), ("ingest", 0))]
        await asyncio.sleep(0.01)
        gate.release(0)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main()) == ["ingest", "preview", "enhance"]


def test_released_slot_is_held_briefly_for_its_own_priority() -> None:
    async def main() -> list[int]:
        gate = PriorityGate(1, hold_s=0.05)
        got: list[int] = []
        await gate.acquire(0)

        async def low() -> None:
            await gate.acquire(2)
            got.append(2)

        t = asyncio.create_task(low())
        await asyncio.sleep(0.01)
        gate.release(0)
        await asyncio.sleep(0.01)  # the high-priority actor comes back within the hold
        await gate.acquire(0)
        got.append(0)
        gate.release(0)
        await asyncio.wait_for(t, 1)  # after the hold expires, the low one gets it
        return got

    assert asyncio.run(main()) == [0, 2]


def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    async def main() -> bool:
        gate = PriorityGate(1, hold_s=0.0)
        await gate.acquire(0)
        waiter = asyncio.create_task(gate.acquire(1))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        gate.release(0)
        await asyncio.sleep(0.01)
        await asyncio.wait_for(gate.acquire(1), 1)
        return True

    assert asyncio.run(main())


def test_blocked_priorities_wait_even_for_a_free_slot() -> None:
    async def main() -> list[str]:
        gate = PriorityGate(2, hold_s=0.0)
        gate.block_from(1)
        order: list[str] = []

        async def job(name: str, prio: int) -> None:
            await gate.acquire(prio)
            order.append(name)
            gate.release(prio)

        low = asyncio.create_task(job("preview", 1))
        await asyncio.sleep(0.02)
        assert order == []  # a free slot, but preview is held back
        await job("ingest", 0)
        gate.block_from(None)
        await asyncio.wait_for(low, 1)
        return order

    assert asyncio.run(main()) == ["ingest", "preview"]


def test_a_held_slot_does_not_go_to_a_blocked_priority() -> None:
    """An enhance job finishes (its slot is held for enhance), then a pause blocks preview
    and enhance: neither may take the held slot, and ingest still can."""

    async def main() -> list[str]:
        gate = PriorityGate(1, hold_s=0.2)
        await gate.acquire(2)
        gate.release(2)  # held for priority 2 for 0.2 s
        gate.block_from(1)
        order: list[str] = []

        async def job(name: str, prio: int) -> None:
            await gate.acquire(prio)
            order.append(name)
            gate.release(prio)

        blocked = [asyncio.create_task(job("preview", 1)), asyncio.create_task(job("enhance", 2))]
        await asyncio.sleep(0.3)  # past the hold: the slot must be free, not handed down
        assert order == []
        await asyncio.wait_for(job("ingest", 0), 1)
        gate.block_from(None)
        await asyncio.wait_for(asyncio.gather(*blocked), 1)
        return order

    assert asyncio.run(main()) == ["ingest", "preview", "enhance"]


def test_slots_never_exceed_the_count_under_blocking_churn() -> None:
    """Random acquire/release/block cycles: never more holders than slots, nobody starves."""
    import random

    async def main(seed: int) -> int:
        rng = random.Random(seed)
        gate = PriorityGate(2, hold_s=0.005)
        holding = 0
        peak = 0
        done = 0

        async def job(prio: int) -> None:
            nonlocal holding, peak, done
            await gate.acquire(prio)
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(rng.random() * 0.01)
            holding -= 1
            gate.release(prio)
            done += 1

        tasks = [asyncio.create_task(job(rng.randrange(3))) for _ in range(120)]
        for _ in range(30):
            await asyncio.sleep(0.005)
            gate.block_from(rng.choice([None, 1, 2]))
        gate.block_from(None)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert peak <= 2, f"seed {seed}: {peak} holders of 2 slots"
        return done

    for seed in range(5):
        assert asyncio.run(main(seed)) == 120


def test_an_operator_pause_holds_one_priority_and_lets_the_others_through() -> None:
    async def main() -> tuple[list[str], list[str]]:
        gate = PriorityGate(1, hold_s=0.0)
        order: list[str] = []
        gate.pause(frozenset({1}))  # preview paused; ingest (0) and enhance (2) run

        async def job(name: str, prio: int) -> None:
            await gate.acquire(prio)
            order.append(name)
            await asyncio.sleep(0)
            gate.release(prio)

        tasks = [asyncio.create_task(job(n, p))
                 for n, p in (("preview-a", 1), ("enhance", 2), ("ingest", 0), ("preview-b", 1))]
        await asyncio.sleep(0.05)
        before = list(order)
        gate.pause(frozenset())  # continue
        await asyncio.gather(*tasks)
        return before, order

    before, after = asyncio.run(main())
    assert sorted(before) == ["enhance", "ingest"]  # both ran past the paused previews
    assert after[2:] == ["preview-a", "preview-b"]
