"""Builds the faust app for one worker: the job agents it was asked for, their retry agents,
and a sender that publishes through faust's idempotent producer and hands back each
record's delivery, which the runner awaits before the source record is acked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
from faust.types import EventT

from imaging import Imager, ImagingConfig

from .. import headers
from ..errors import StorageUnavailable
from ..headers import headers_to_dict
from ..outcomes import Outcome
from ..settings import KafkaSettings, Settings
from ..storage import LocalStorage
from ..topics import Job, Topics
from .commits import install as install_commit_retry
from .deliveries import DeliveryLedger
from .jobs import enhance, ingest, preview
from .runner import Finish, Handler, JobRunner, Record, Services, worker_id
from .runtime import Limits, WorkerRuntime

log = logging.getLogger("streams.app")

MAX_POLL_RECORDS = 20


def stream_buffer(partitions: int) -> int:
    """A topic's one stream queue (its actors share it) takes every partition of it, but
    faust flags a partition as under pressure only when a record of that partition arrives
    with the queue at its pressure mark (maxsize / 1.25); each partition not flagged yet can
    still bring a whole fetch. So the headroom above the mark must hold one fetch per
    partition the worker may own: 0.2 * maxsize >= MAX_POLL_RECORDS * partitions."""
    return max(500, 5 * MAX_POLL_RECORDS * partitions + MAX_POLL_RECORDS)

HANDLERS: dict[Job, Handler] = {
    Job.PREVIEW: preview.handle,
    Job.INGEST: ingest.handle,
    Job.ENHANCE: enhance.handle,
}


def broker_credentials(k: KafkaSettings) -> Any:
    """faust's credentials object from the same settings the confluent clients use."""
    ctx: ssl.SSLContext | None = None
    if k.security_protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=str(k.ssl_cafile) if k.ssl_cafile else None)
        if k.ssl_certfile:
            ctx.load_cert_chain(str(k.ssl_certfile), str(k.ssl_keyfile) if k.ssl_keyfile else None)
    if k.sasl_mechanism:
        password = k.sasl_password.get_secret_value() if k.sasl_password else ""
        mech = k.sasl_mechanism
        if mech == "PLAIN":
            return faust.SASLCredentials(username=k.sasl_username, password=password, ssl_context=ctx)
        return faust.SASLCredentials(
            username=k.sasl_username, password=password, ssl_context=ctx, mechanism=mech
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


def broker_url(k: KafkaSettings) -> str:
    return ";".join(f"kafka://{h.strip()}" for h in k.bootstrap_servers.split(",") if h.strip())


class FaustSender:
    """Publishes straight through faust's producer: raw bytes in, so faust's topic layer
    (codecs, schema, sensors) has nothing to add, and it cost a millisecond per job."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._producer: Any = None

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, *,
        partition: int | None = None, headers: list[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]:
        # returns once the record is queued; what it returns is the delivery, which the
        # runner awaits before the source record may be acked
        producer = self._producer
        if producer is None:
            # Once only: faust's maybe_start_producer yields to the event loop even when
            # started, so aiokafka's sender took each record into a request of its own
            # (one in flight per broker): a record queued next waited a round trip.
            producer = self._producer = await self.app.maybe_start_producer()
        delivery: Awaitable[Any] = await producer.send(
            topic, key, value, partition=partition, timestamp=None, headers=headers)
        return delivery


def raw_topic(app: faust.App, name: str) -> Any:
    # Raw bytes in and out: decoding is ours, so a malformed record is routed, not fatal.
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        internal=False,
    )


def to_record(event: EventT[bytes]) -> Record:
    m = event.message
    return Record(
        topic=m.topic, partition=m.partition, offset=m.offset,
        timestamp_ms=int((m.timestamp or time.time()) * 1000), key=m.key, value=m.value,
        headers=headers_to_dict(m.headers), generation=m.generation_id or 0,
    )


def create_app(
    settings: Settings, jobs: list[Job], runtime: WorkerRuntime | None = None
) -> tuple[faust.App, Services]:
    k = settings.kafka
    topics = Topics.from_settings(k)
    app = faust.App(
        k.group_id,
        broker=broker_url(k),
        broker_credentials=broker_credentials(k),
        store="memory://",
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        web_enabled=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        # The worker's own id (host:pid) as its Kafka client id: the status service lists
        # group members by it and joins them with their heartbeats.
        broker_client_id=worker_id(settings.worker.id),
        broker_commit_interval=1.0,
        broker_session_timeout=k.session_timeout_s,
        broker_heartbeat_interval=max(0.5, k.session_timeout_s / 5),
        # On stop, commit what was acked; do not wait for buffered records (redelivered).
        stream_wait_empty=False,
        # A priority pause holds lower-priority records at the job gate, never by pausing
        # fetching: faust drops records fetched for a paused partition after the position
        # has passed them, and resuming needed a seek that could skip one. Instead the
        # buffers are large enough that faust's own flow control (stop fetching a partition
        # whose buffer is under pressure, at maxsize / 1.25) always acts before a buffer is
        # full (stream_buffer): a full one blocks the one fetch loop of every topic, and the
        # held-back topic's buffer would then starve the very topic whose lag holds it back
        # (a wedge). Records are events of a few hundred bytes; images never sit in a buffer.
        broker_max_poll_records=MAX_POLL_RECORDS,
        stream_buffer_maxsize=stream_buffer(k.partitions),
        datadir=Path(tempfile.gettempdir()) / f"prophoto-faust-{os.getpid()}",
    )
    install_commit_retry(app)  # a refused commit is sent again (faust-streaming #316)
    # acks=all and the idempotent producer (faust only sets them for transactions): a
    # record the runner counts as delivered is on every in-sync replica, and a retried
    # produce is not written twice.
    producer: Any = app.producer
    producer._settings_extra = lambda: {"acks": "all", "enable_idempotence": True}
    storage = LocalStorage(settings.storage.root)
    try:
        storage.ensure()
    except StorageUnavailable as exc:
        # Start anyway: jobs retry (and dead-letter) until the volume comes back.
        log.warning("storage not ready at start: %s", exc)
    ledger = DeliveryLedger(k, topics.deliveries, max_deliveries=settings.worker.max_deliveries)
    _read_ledger_on_assignment(app, ledger)
    services = Services(
        settings=settings,
        topics=topics,
        storage=storage,
        imager=Imager(ImagingConfig(**settings.imaging.model_dump())),
        worker_id=worker_id(settings.worker.id),
        executor=ThreadPoolExecutor(settings.worker.concurrency, thread_name_prefix="job"),
        io=ThreadPoolExecutor(settings.worker.concurrency, thread_name_prefix="io"),
        ledger=ledger,
    )
    sender = FaustSender(app)
    rt = runtime or WorkerRuntime(
        kafka=k, topics=topics, jobs=jobs, concurrency=settings.worker.concurrency,
        grace_s=settings.worker.timeout_s, limits=Limits(), worker_id=services.worker_id,
        timeout_s=settings.worker.timeout_s, heartbeat_s=settings.worker.heartbeat_s,
    )
    for job in jobs:
        runner = JobRunner(job, HANDLERS[job], services, sender)
        _register(app, runner, rt, topics.job(job), retrying=False)
        _register(app, runner, rt, topics.retry(job), retrying=True)
    _background(app, rt)
    return app, services


def _read_ledger_on_assignment(app: faust.App, ledger: DeliveryLedger) -> None:
    def assigned(_app: Any, /, *_assigned: Any, signal: Any, **_: Any) -> None:
        # faust has set the new generation, which the records fetched from now on carry
        ledger.sync_soon(app.consumer_generation_id)

    app.on_partitions_assigned.connect(assigned)


def _register(app: faust.App, runner: JobRunner, rt: WorkerRuntime, topic_name: str, *,
              retrying: bool) -> None:
    topic = raw_topic(app, topic_name)

    async def agent(stream: faust.StreamT[bytes]) -> None:
        # The last record's finish (its acks awaited, or its failure routed) runs while
        # this actor counts and runs the next one: at most one pending, so the broker's
        # round trips of one job overlap the next instead of adding to it.
        pending: asyncio.Task[None] | None = None
        pending_counted = asyncio.Event()  # set: the record after the pending one is counted
        try:
            async for event in stream.events():
                rec = to_record(event)
                # faust acks the current event when the agent is cancelled (shutdown, a job
                # limit) and when it takes the next one: hold a reference until the record
                # has its outcome, so an interrupted wait, job or finish is redelivered.
                event.message.incref()
                if retrying:
                    await _wait_not_before(rec, runner.s.settings.worker.backoff_max_s)
                where = (rec.topic, rec.partition, rec.offset,
                         (rec.key or b"").decode("utf-8", "replace"))
                async with rt.slot(runner.job, where) as slot:
                    finish = await runner.start(rec, slot, counted=pending_counted.set)
                    release = rt.hold()  # no await from here to the task's callback
                pending_counted = asyncio.Event()
                last, pending = pending, asyncio.ensure_future(
                    _finish(runner, rt, event, rec, finish, pending_counted))
                pending.add_done_callback(_released_by(release))
                if last is not None:
                    await last
            if pending is not None:
                await pending
        finally:
            if pending is not None and not pending.done():
                pending.cancel()  # stopping: its record stays pinned and is redelivered

    app.agent(
        topic, name=f"{topic_name}-agent", concurrency=runner.s.settings.worker.concurrency
    )(agent)


def _released_by(release: Callable[[], None]) -> Callable[[asyncio.Future[None]], None]:
    return lambda _: release()


async def _finish(runner: JobRunner, rt: WorkerRuntime, event: EventT[bytes], rec: Record,
                  finish: Finish, next_counted: asyncio.Event) -> None:
    outcome = await finish(next_counted)
    # the last reference, whether the stream has dropped its own yet or not: this ack is
    # what marks the offset safe to commit
    event.ack()
    if outcome is Outcome.OK and runner.job is Job.PREVIEW:
        rt.latency.add(time.time() - _origin_ms(rec) / 1000)


def _background(app: faust.App, rt: WorkerRuntime) -> None:
    def assignment() -> set[Any]:
        return set(app.consumer.assignment())

    def rejoin() -> None:
        # aiokafka's coordinator lives on faust's consumer thread: ask it there
        thread = app.consumer._thread  # type: ignore[attr-defined]
        coordinator = thread._ensure_consumer()._coordinator
        thread.thread_loop.call_soon_threadsafe(coordinator.request_rejoin)

    rt.assignment = assignment
    rt.rejoin = rejoin

    async def watch() -> None:
        await rt.watch(assignment)

    for task in (watch, rt.listen_for_restart, rt.serve_health, rt.publish_heartbeats,
                 rt.follow_pauses):
        app.task(task)


def _origin_ms(rec: Record) -> int:
    """When the upload was announced: a retry carries its first record's timestamp."""
    try:
        return headers.parse_control(rec.headers, topic=rec.topic, partition=rec.partition,
                                     offset=rec.offset, timestamp_ms=rec.timestamp_ms
                                     ).origin_timestamp_ms
    except Exception:  # noqa: BLE001 - a bad header was dead-lettered; no latency to count
        return rec.timestamp_ms


class IngestWorker(faust.Worker):
    """faust's worker, with signals routed through the runtime's graceful stop."""

    def __init__(self, app: faust.App, runtime: WorkerRuntime, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.runtime = runtime
        runtime.bind_shutdown(lambda: self._schedule_shutdown(signal.SIGTERM))

    def _on_sigterm(self) -> None:
        self.runtime.on_signal(signal.SIGTERM)

    def _on_sigint(self) -> None:
        self.runtime.on_signal(signal.SIGINT)


async def _wait_not_before(rec: Record, max_s: float) -> None:
    delay = headers.retry_delay_s(rec.headers, int(time.time() * 1000), max_s=max_s)
    if delay > 0:
        await asyncio.sleep(delay)
