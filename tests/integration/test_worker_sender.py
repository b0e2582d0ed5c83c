"""The worker's sender (``streams.worker.app.FaustSender``) through faust's real producer and
the real broker. aiokafka keeps one produce request in flight per broker, so a record queued
after its sender task woke up waits a whole round trip for the request before it: records
the runner queues back to back (a cleared delivery count with the next count, a job's
traces) must reach the broker in one request."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.settings import Settings
from streams.topics import Job, Topics
from streams.worker.app import FaustSender, create_app


async def test_records_queued_back_to_back_share_one_produce_request(settings: Settings,
                                                                     topics: Topics) -> None:
    app, services = create_app(settings, [Job.PREVIEW])
    sender = FaustSender(app)
    try:
        # the worker's first record: the producer starts (and learns the topic) here
        await (await sender.send(topics.deliveries, b"warm", b"1", partition=0))
        aio: Any = app.producer._ensure_producer()  # type: ignore[attr-defined]
        requests: list[list[int]] = []
        send_request = aio._sender._send_produce_req

        async def recorded(node_id: int, batches: dict[Any, Any]) -> None:
            requests.append(sorted(tp.partition for tp in batches))
            await send_request(node_id, batches)

        aio._sender._send_produce_req = recorded
        for _ in range(3):  # as _count_delivery: the tombstone waiting, then the count
            tombstone = await sender.send(topics.deliveries, b"last", None, partition=1)
            count = await sender.send(topics.deliveries, b"next", b"1", partition=2)
            await asyncio.gather(tombstone, count)
        assert requests == [[1, 2]] * 3
    finally:
        await app.producer.stop()
        services.executor.shutdown()
        services.io.shutdown()  # type: ignore[union-attr]
        services.ledger.close()  # type: ignore[union-attr]
