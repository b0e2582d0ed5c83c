"""A commit Kafka refused (the group rebalanced while it was in flight) is sent again at
the next commit round. faust 0.15.3 marks the offsets committed and drops them from its
acked list either way (faust-streaming #316): when the partition stays with the worker,
the record it processed is neither committed nor redelivered, and its lag never clears
(seen in the chaos test: one ingest record held the preview topic back for good)."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from faust.types import TP

from streams.worker.commits import install

TOPIC = TP("t-ingest", 2)


@pytest.fixture
def consumer() -> Any:
    app = faust.App("commit-retry-test", broker="kafka://127.0.0.1:1", autodiscover=False,
                    web_enabled=False)
    install(app)
    c = app.consumer
    c.assignment = lambda: {TOPIC}  # type: ignore[method-assign]
    sent: list[dict[TP, int]] = []
    answers: list[bool] = []

    async def commit(offsets: dict[TP, int]) -> bool:
        sent.append(dict(offsets))
        return answers.pop(0)

    async def flush() -> None:
        return None

    c._commit = commit
    app.producer.flush = flush  # type: ignore[method-assign]
    c.sent, c.answers = sent, answers
    yield c
    # never started, so it never connects; the loop of the thread it made is closed here
    c._thread.thread_loop.close()


def _ack(c: Any, offset: int) -> None:
    c._acked[TOPIC].append(offset)
    c._acked_index[TOPIC].add(offset)


async def test_a_refused_commit_is_sent_again(consumer: Any) -> None:
    _ack(consumer, 0)
    consumer.answers[:] = [False, True]
    assert await consumer._commit_tps([TOPIC], start_new_transaction=False) is False
    assert consumer._committed_offset[TOPIC] is None  # not committed: faust must not think so
    assert await consumer._commit_tps([TOPIC], start_new_transaction=False) is True
    assert consumer.sent == [{TOPIC: 1}, {TOPIC: 1}]
    assert consumer._committed_offset[TOPIC] == 1


async def test_a_refused_commit_after_an_earlier_one_resends_the_whole_run(consumer: Any) -> None:
    for o in range(3):
        _ack(consumer, o)
    consumer.answers[:] = [True, False, True]
    assert await consumer._commit_tps([TOPIC], start_new_transaction=False) is True  # -> 3
    for o in range(3, 6):
        _ack(consumer, o)
    assert await consumer._commit_tps([TOPIC], start_new_transaction=False) is False  # 6 refused
    _ack(consumer, 6)  # a record finished meanwhile
    assert await consumer._commit_tps([TOPIC], start_new_transaction=False) is True
    assert consumer.sent == [{TOPIC: 3}, {TOPIC: 6}, {TOPIC: 7}]
    assert consumer._committed_offset[TOPIC] == 7


async def test_a_revoked_partition_is_left_to_its_next_owner(consumer: Any) -> None:
    _ack(consumer, 0)
    consumer.assignment = lambda: set()
    assert await consumer._commit_tps([TOPIC], start_new_transaction=False) is False
    assert consumer.sent == []  # faust discards it: the next owner reads it again
    await asyncio.sleep(0)


def test_the_worker_app_builds_its_consumer_from_it(tmp_path: Any) -> None:
    from streams.settings import Settings
    from streams.topics import Job
    from streams.worker.app import create_app
    from streams.worker.commits import RetryingConsumer

    settings = Settings(kafka={"bootstrap_servers": "127.0.0.1:1"},  # type: ignore[arg-type]
                        storage={"root": str(tmp_path)})
    app, services = create_app(settings, [Job.PREVIEW])
    try:
        assert type(app.consumer) is RetryingConsumer
    finally:
        app.consumer._thread.thread_loop.close()
        services.executor.shutdown()
