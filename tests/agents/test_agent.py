"""The faust agent wrapper (``streams.worker.app._register``) under ``agent.test_context()``: the
real app's agent for a job topic, fed from faust's in-memory channel, publishing through
the real ``FaustSender`` into a producer that keeps what it is given. No broker: the
bootstrap points at a closed port, so anything that tried one would fail."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imaging import Attempt
from streams import headers as dl
from streams.errors import SourceMissing, StorageUnavailable
from streams.events import UploadReceived
from streams.outcomes import DeadLetterReason, Outcome
from streams.settings import Settings
from streams.topics import Job, Topics
from streams.worker import app as app_module
from streams.worker.runner import JobResult, Output, Services
from streams.worker.runtime import Limits, WorkerRuntime

UID = "0b6f1c2e-9d3a-4f4e-8a1b-2c3d4e5f6a7b"


@dataclass(frozen=True)
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    headers: dict[str, str]


class MemoryProducer:
    """Takes faust's producer's place: records each send and acknowledges it at once."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.arrived = asyncio.Event()
        self.held_topics: set[str] = set()
        self.held: list[asyncio.Future[None]] = []  # acks of held topics, in send order

    async def maybe_start(self) -> None:
        pass

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   timestamp: float | None, headers: Any, **_: Any) -> asyncio.Future[None]:
        self.sent.append(Sent(topic, key, value, partition, dl.headers_to_dict(headers)))
        self.arrived.set()
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if topic in self.held_topics:
            self.held.append(delivery)  # the test answers it
        else:
            delivery.set_result(None)
        return delivery

    def to(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]

    async def wait_for(self, topic: str, n: int = 1, timeout: float = 10.0) -> list[Sent]:
        """The records sent to ``topic`` once there are ``n``: the agent handles an event
        after put() returns (test_context wakes put() when the stream yields the event)."""
        async with asyncio.timeout(timeout):
            while len(self.to(topic)) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.to(topic)


@dataclass
class Worker:
    app: Any
    services: Services
    runtime: WorkerRuntime
    producer: MemoryProducer
    topics: Topics


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(handler: Callable[[Any, Services], JobResult], concurrency: int = 2) -> Worker:
        monkeypatch.setitem(app_module.HANDLERS, Job.PREVIEW, handler)
        settings = Settings(
            kafka={"bootstrap_servers": "127.0.0.1:1"},  # type: ignore[arg-type]
            worker={"tries": 3, "backoff_base_s": 0.01, "timeout_s": 5,  # type: ignore[arg-type]
                    "concurrency": concurrency},
            storage={"root": tmp_path},  # type: ignore[arg-type]
        )
        topics = Topics.from_settings(settings.kafka)
        runtime = WorkerRuntime(kafka=settings.kafka, topics=topics, jobs=[Job.PREVIEW],
                                concurrency=settings.worker.concurrency, grace_s=1, limits=Limits())
        app, services = app_module.create_app(settings, [Job.PREVIEW], runtime)
        producer = MemoryProducer()
        app.producer = producer
        assert services.ledger is not None
        # as if it had read the ledger topic in this generation: counts go out, none come in
        services.ledger._synced_generation = app.consumer_generation_id
        made.append(Worker(app, services, runtime, producer, topics))
        return made[-1]

    yield make
    for w in made:
        w.services.executor.shutdown(wait=True)
        # faust's stream makes the app's Kafka consumer to ack through (never started, so
        # it never connects); its thread's event loop is closed only by a thread that ran
        consumer = w.app._consumer
        if consumer is not None:
            consumer._thread.thread_loop.close()


UPLOAD = UploadReceived(uuid=UID, path="uploads/x.jpg", original_filename="x.jpg", size=1) \
    .model_dump_json().encode()


def agent_of(w: Worker, topic: str) -> Any:
    return w.app.agents[f"{topic}-agent"]


def as_from_a_topic(agent: Any) -> None:
    """Give each message the test context puts one reference, as faust's conductor gives a
    message fetched from a topic one per channel: the stream's ack then drops that one, and
    only the last reference marks the offset safe to commit (here: ``message.acked``)."""
    to_message = agent.to_message

    def counted(*args: Any, **kwargs: Any) -> Any:
        message = to_message(*args, **kwargs)
        message.incref()
        return message

    agent.to_message = counted


TWO = ["1b6f1c2e-9d3a-4f4e-8a1b-2c3d4e5f6a7b", "2b6f1c2e-9d3a-4f4e-8a1b-2c3d4e5f6a7b"]


async def put_uploads(agent: Any, uids: list[str]) -> list[Any]:
    """One upload record per UUID on partition 2, as fetched from a topic, not waited for."""
    as_from_a_topic(agent)
    return [await agent.put(key=u.encode(), value=UploadReceived(
        uuid=u, path="uploads/x.jpg", original_filename="x.jpg", size=1).model_dump_json().encode(),
        partition=2, wait=False) for u in uids]


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


async def test_the_agent_runs_the_handler_and_publishes_what_the_job_owes(
    worker: Callable[..., Worker],
) -> None:
    ran: list[tuple[Any, str]] = []

    def handler(event: Any, s: Services) -> JobResult:
        ran.append((event, threading.current_thread().name))
        return JobResult(outputs=[Output("images", event.uuid.encode(), b'{"stored": true}')])

    w = worker(handler)
    job_topic = w.topics.job(Job.PREVIEW)
    async with agent_of(w, job_topic).test_context() as agent:
        await agent.put(key=UID.encode(), value=UPLOAD, partition=2)
        [image] = await w.producer.wait_for("images")
        await w.producer.wait_for(w.topics.deliveries, 2)  # the count, then its tombstone

    [(event, thread)] = ran
    assert isinstance(event, UploadReceived) and event.uuid == UID
    assert thread.startswith("job")  # on the job pool, off the event loop
    assert (image.key, image.value) == (UID.encode(), b'{"stored": true}')
    assert [s.value for s in w.producer.to(w.topics.deliveries)] == [b"1", None]
    assert w.producer.to(w.topics.retry(Job.PREVIEW)) == []
    assert w.producer.to(w.topics.dead_letter(Job.PREVIEW)) == []
    assert w.services.stats["processed"] == 1
    assert w.runtime.done == 1 and w.runtime.in_flight == 0
    assert w.runtime.latency.minutes(), "a preview done counts towards the latency sketch"


async def test_a_failing_handler_is_routed_and_the_agent_keeps_going(
    worker: Callable[..., Worker],
) -> None:
    """An unexpected error (retried: it may be transient) goes to the retry topic, a
    permanent one to the dead-letter topic, and neither escapes: faust would ack the record
    and never see it again (the test context's supervisor crashes the agent and put()
    raises if one did)."""
    calls: list[str] = []

    def handler(event: Any, s: Services) -> JobResult:
        calls.append(event.uuid)
        if len(calls) == 1:
            raise RuntimeError("a bug in the job")
        if len(calls) == 2:
            raise SourceMissing("upload gone")
        return JobResult()

    w = worker(handler)
    job_topic = w.topics.job(Job.PREVIEW)
    async with agent_of(w, job_topic).test_context() as agent:
        await agent.put(key=UID.encode(), value=UPLOAD, partition=2)
        [r] = await w.producer.wait_for(w.topics.retry(Job.PREVIEW))
        await agent.put(key=UID.encode(), value=UPLOAD, partition=2)
        [d] = await w.producer.wait_for(w.topics.dead_letter(Job.PREVIEW))
        await agent.put(key=UID.encode(), value=b"{not json", partition=1)
        await w.producer.wait_for(w.topics.dead_letter(Job.PREVIEW), 2)
        await agent.put(key=UID.encode(), value=UPLOAD, partition=2)
        await w.producer.wait_for(w.topics.deliveries, 8)  # four counts, four tombstones
        assert agent._crash_reason is None

    assert len(calls) == 3  # the malformed record never reached the handler
    assert (r.key, r.value, r.partition) == (UID.encode(), UPLOAD, 2)
    assert r.headers[dl.H_ATTEMPT] == "1" and r.headers[dl.H_ORIGINAL_TOPIC] == job_topic
    assert r.headers[dl.H_LAST_ERROR] == "RuntimeError: a bug in the job"
    assert d.headers[dl.H_REASON] == DeadLetterReason.PERMANENT
    assert d.headers[dl.H_EXC_CLASS] == "streams.errors.SourceMissing"
    assert (d.headers[dl.H_TOPIC], d.headers[dl.H_PARTITION]) == (job_topic, "2")
    bad = w.producer.to(w.topics.dead_letter(Job.PREVIEW))[1]
    assert bad.value == b"{not json" and bad.partition == 1
    decisions = [s for s in w.producer.to(w.topics.traces) if b'"success":false' in s.value]
    # each failed run closes with its decision; the malformed one's is traced by its key
    assert [Outcome.parse(t) for t in _trace_types(decisions)] == \
        [Outcome.RETRY, Outcome.DEAD_LETTER, Outcome.DEAD_LETTER]
    assert w.services.stats["retried"] == 1 and w.services.stats["dead_lettered"] == 2
    assert w.services.stats["processed"] == 1 and w.runtime.done == 4


async def test_the_next_job_runs_while_the_last_records_acks_are_awaited_and_acks_wait_for_them(
    worker: Callable[..., Worker],
) -> None:
    """Concurrency 1: the broker's acknowledgments of what a job owes are awaited while the
    next record is counted and run (one round trip less per job), and yet no record is
    acked before its own records are acknowledged; a refused one is routed to retry first.
    The worker is not idle (a graceful stop waits) while acks are outstanding."""
    uids = TWO
    ran: list[str] = []

    def handler(event: Any, s: Services) -> JobResult:
        ran.append(event.uuid)
        return JobResult(outputs=[Output("images", event.uuid.encode(), b"{}")])

    w = worker(handler, concurrency=1)
    w.producer.held_topics.add("images")
    job_topic = w.topics.job(Job.PREVIEW)
    async with agent_of(w, job_topic).test_context() as agent:
        events = await put_uploads(agent, TWO)
        # the second job ran, its output queued, while the first one's ack is held
        await w.producer.wait_for("images", 2)
        assert ran == uids
        assert not any(e.message.acked for e in events)
        assert not w.runtime.idle
        first, second = w.producer.held
        second.set_result(None)
        await asyncio.sleep(0.05)
        assert not events[0].message.acked, "acked before its own output was acknowledged"
        first.set_exception(RuntimeError("broker refused the images record"))
        await until(lambda: all(e.message.acked for e in events))
        [r] = w.producer.to(w.topics.retry(Job.PREVIEW))
        assert r.key == uids[0].encode()
        assert r.headers[dl.H_LAST_ERROR].startswith("DeliveryFailed")
        await until(lambda: w.runtime.idle)
        assert agent._crash_reason is None

    assert w.services.stats["processed"] == 1 and w.services.stats["retried"] == 1
    # each record's count went out before its job, and each count is cleared
    assert sorted(s.value or b"-" for s in w.producer.to(w.topics.deliveries)) == [b"-", b"-", b"1", b"1"]


async def test_a_jobs_writes_run_while_the_next_job_runs_and_the_record_waits_for_them(
    worker: Callable[..., Worker],
) -> None:
    """Concurrency 1: a job's deferred writes (JobResult.after) run on the I/O pool while
    the next record's job runs; the record is acked only once they are done and its traces
    (the writes' own included) acknowledged, and a write that fails is routed to retry."""
    uids = TWO
    ran: list[str] = []
    counted_before_writes: list[Sent] = []
    writing = threading.Event()
    may_finish = threading.Event()

    def handler(event: Any, s: Services) -> JobResult:
        ran.append(event.uuid)
        first = len(ran) == 1

        def write() -> list[Attempt]:
            if first:
                # the next record's count came first: writes beside a count slow its round
                # trip, the one wait left between two jobs
                counted_before_writes.extend(w.producer.to(w.topics.deliveries))
                writing.set()
                assert may_finish.wait(10)
                raise StorageUnavailable("disk full")
            return [Attempt("storage", "local_atomic_write", 1, True, 1.0)]

        return JobResult(attempts=[Attempt("preview_extraction", "turbo_decode", 1, True, 2.0)],
                         after=write)

    w = worker(handler, concurrency=1)
    job_topic = w.topics.job(Job.PREVIEW)
    async with agent_of(w, job_topic).test_context() as agent:
        events = await put_uploads(agent, TWO)
        await until(lambda: len(ran) == 2)  # the second job ran while the first one writes
        assert writing.is_set()
        assert not events[0].message.acked
        assert w.producer.to(w.topics.traces) == [], "traced before its writes were done"
        # The first job returned, so its count is cleared before the second record's count
        # (acknowledged before that job starts): should the second job kill the worker, the
        # first record is not charged for it, although its writes are still running.
        counts = [(s.key, s.value) for s in w.producer.to(w.topics.deliveries)]
        first_key, second_key = (w.services.ledger.key(job_topic, 2, e.message.offset)  # type: ignore[union-attr]
                                 for e in events)
        assert counts[:3] == [(first_key, b"1"), (first_key, None), (second_key, b"1")]
        assert [(c.key, c.value) for c in counted_before_writes] == counts[:3]
        may_finish.set()
        await until(lambda: all(e.message.acked for e in events))
        await until(lambda: w.runtime.idle)
        assert agent._crash_reason is None

    [r] = w.producer.to(w.topics.retry(Job.PREVIEW))
    assert r.key == uids[0].encode()
    assert r.headers[dl.H_LAST_ERROR] == "StorageUnavailable: disk full"
    traced = [json.loads(t.value or b"{}") for t in w.producer.to(w.topics.traces)]
    second = [(t["trace_type"], t["method_tried"]) for t in traced if t["image_uuid"] == uids[1]]
    assert second == [("preview_extraction", "turbo_decode"), ("storage", "local_atomic_write")]
    assert w.services.stats["processed"] == 1 and w.services.stats["retried"] == 1


def _trace_types(sent: list[Sent]) -> list[str]:
    return [json.loads(s.value or b"{}")["trace_type"] for s in sent]
