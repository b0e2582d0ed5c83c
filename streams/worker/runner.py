"""The per-event loop every job agent shares: decode, run the job off the event loop with a
timeout, stream its attempt records, and route any failure to retry or dead letter.

An exception never leaves ``JobRunner.process``: faust would ack the message and it would
never be seen again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from imaging import Attempt, Imager

from .. import codec, headers, retry
from ..errors import DeliveryFailed, InvalidHeader, JobTimeout, PoisonRecord
from ..events import JobEvent
from ..outcomes import Outcome
from ..settings import Settings
from ..storage import LocalStorage
from ..topics import Job, Topics
from ..traces import TraceEvent
from .deliveries import DeliveryLedger
from .runtime import Slot

log = logging.getLogger("streams.jobs")


@dataclass
class Output:
    """A record a job asks to publish once it has succeeded (e.g. the ``images`` record)."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Pending:
    """A record to publish (a trace, a retry, a dead letter)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class JobResult:
    attempts: list[Attempt] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    note: str = ""
    # What the record still owes once the job leaves its slot (the storage writes, whose
    # fsyncs would leave the core idle): run on the I/O pool while the next job runs, in
    # the finish step, before its records are published; its attempts join the traces.
    after: Callable[[], list[Attempt]] | None = None


Handler = Callable[[Any, "Services"], JobResult]


class Sender(Protocol):
    """What the runner needs to publish: faust's producer in a worker, a fake in unit tests.

    ``send`` returns once the record is queued; the awaitable it returns completes when the
    broker acknowledged it and raises when the broker refused it or never answered.
    """

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, *,
        partition: int | None = None, headers: list[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]: ...


@dataclass
class Services:
    settings: Settings
    topics: Topics
    storage: LocalStorage
    imager: Imager
    worker_id: str
    executor: ThreadPoolExecutor
    stats: Counter[str] = field(default_factory=Counter)
    ledger: DeliveryLedger | None = None  # delivery counts; None in unit tests
    io: ThreadPoolExecutor | None = None  # for JobResult.after; None: the job executor


@dataclass(frozen=True)
class Record:
    """The parts of a consumed Kafka record the runner uses (faust-independent)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    generation: int = 0  # the consumer generation it was fetched in (a rebalance bumps it)


@dataclass(frozen=True, kw_only=True)
class Failure:
    """One failed delivery, as the failure path (route, records, log) needs it."""

    record: Record
    error: Exception
    attempt: int  # 1-based: the attempt that just failed, earlier rounds included
    round_base: int  # attempts before the latest replay: the tries budget counts from here
    origin: headers.Origin  # where the record first came from, before any retry topic
    first_failure_ms: int  # when its first attempt failed; 0: this is the first failure
    started: float  # time.perf_counter() when this delivery began
    event: JobEvent | None  # None: the value did not decode (or was never reached)
    uuid: str  # the event's, or the key's text when there is no event

    @classmethod
    def of(cls, rec: Record, exc: Exception, state: headers.ControlState, *, started: float,
           event: JobEvent | None, uuid: str) -> Failure:
        return cls(
            record=rec, error=exc, attempt=state.prior_attempts + 1, round_base=state.round_base,
            origin=headers.Origin(topic=state.origin_topic, partition=state.origin_partition,
                                     offset=state.origin_offset,
                                     timestamp_ms=state.origin_timestamp_ms),
            first_failure_ms=state.first_failure_ms, started=started, event=event, uuid=uuid,
        )


def now_ms() -> int:
    return int(time.time() * 1000)


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


# A finish step; its argument, when set, says the next record's count is acknowledged.
Finish = Callable[[asyncio.Event | None], Awaitable[Outcome]]

# How long a finish step holds its deferred writes for the next record's count: writes
# beside a count slow its round trip (the wait between two jobs) by 1.5-2 ms. When no
# record follows, a preview lands this much later.
WRITES_WAIT_S = 0.02


class JobRunner:
    def __init__(self, job: Job, handler: Handler, services: Services, sender: Sender) -> None:
        self.job = job
        self.handler = handler
        self.s = services
        self.sender = sender
        self.topic = services.topics.job(job)

    async def process(self, rec: Record, slot: Slot | None = None) -> Outcome:
        """Handle one record end to end; returns the outcome, never raises (but cancellation).

        A job past its timeout leaves its still-running thread in ``slot``."""
        finish = await self.start(rec, slot)
        return await finish(None)

    async def start(self, rec: Record, slot: Slot | None = None,
                    counted: Callable[[], None] | None = None) -> Finish:
        """Count the delivery, run the job and queue the records it owes; returns the step
        that finishes the record: its deferred writes (JobResult.after), the broker's
        acknowledgments (or the failure's route), the log line. The agent runs the next
        record meanwhile (app._register), so they overlap the next job. Never raises (but
        cancellation): a failure here is routed by the finish step. ``counted`` is called
        once this record's delivery count is acknowledged, before its job runs."""
        start = time.perf_counter()
        event: JobEvent | None = None
        uuid = (rec.key or b"").decode("utf-8", "replace")
        # Until the headers parse, the record's own coordinates are its origin.
        state = headers.ControlState(0, 0, rec.topic, rec.partition, rec.offset, rec.timestamp_ms, 0)
        deliveries = await self._count_delivery(rec)
        if counted is not None:
            counted()
        forgotten = False
        try:
            state = headers.parse_control(rec.headers, topic=rec.topic, partition=rec.partition,
                                          offset=rec.offset, timestamp_ms=rec.timestamp_ms)
            if self.s.ledger is not None and deliveries > self.s.ledger.max_deliveries:
                raise PoisonRecord(
                    f"delivered {deliveries} times; the {deliveries - 1} before ended without an "
                    f"outcome (each died with its worker: killed, out of memory or crashed), so it "
                    f"is not run again (INGEST_WORKER__MAX_DELIVERIES={self.s.ledger.max_deliveries})"
                )
            event = codec.decode_job(self.job, rec.value)
            uuid = event.uuid
            result = await self._run(event, slot)
            # The job returned: it did not take the worker down, so its count goes. With the
            # next record's count, in the same produce request, acknowledged before that job
            # starts: should that job kill the worker, this record is not charged for it.
            await self._forget_delivery(rec)
            forgotten = True
            attempt = state.prior_attempts + 1
            sent = None if result.after else await self._publish(event, result, attempt, rec)
        except asyncio.CancelledError:
            raise  # shutdown: not acked, redelivered to whoever takes the partition
        except Exception as exc:  # noqa: BLE001 - every failure is routed, none escapes
            failure = Failure.of(rec, exc, state, started=start, event=event, uuid=uuid)
            run_ms = _ms_since(start)
            return lambda _: self._fail(failure, run_ms, forgotten=forgotten)
        run_ms = _ms_since(start)

        async def finish(next_counted: asyncio.Event | None) -> Outcome:
            # The commit rule: the job counts as done only once the broker holds every
            # record it owes; a refusal is a failure like any other, routed to retry.
            try:
                owed = sent if sent is not None else \
                    await self._publish(event, await self._after(result, next_counted), attempt,
                                        rec)
                await confirm(owed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                return await self._fail(Failure.of(rec, exc, state, started=start, event=event,
                                                   uuid=uuid), run_ms, forgotten=True)
            await self._clear_counts()  # none came: no next record to take it along
            self.s.stats["processed"] += 1
            self._log(rec, uuid, attempt, start, Outcome.OK, note=result.note, run_ms=run_ms)
            return Outcome.OK

        return finish

    async def _publish(self, event: JobEvent | None, result: JobResult, attempt: int,
                       rec: Record) -> list[Awaitable[Any]]:
        """Queue the job's outputs and traces; the deliveries to await."""
        sent = [await self.sender.send(out.topic, out.key, out.value) for out in result.outputs]
        return sent + await self._trace(event, result.attempts, attempt, rec)

    async def _after(self, result: JobResult, next_counted: asyncio.Event | None) -> JobResult:
        """The job's deferred part on the I/O pool, within the job's timeout, once the next
        record's count is in (at most WRITES_WAIT_S); raises what it raised (a
        StorageUnavailable is retried like any other failure)."""
        assert result.after is not None
        if next_counted is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(next_counted.wait(), WRITES_WAIT_S)
        thread = (self.s.io or self.s.executor).submit(result.after)
        try:
            more = await asyncio.wait_for(asyncio.wrap_future(thread),
                                          timeout=self.s.settings.worker.timeout_s)
        except TimeoutError:
            # as a job's thread: it finishes in the background, its writes atomic
            raise JobTimeout(f"the job's writes ran longer than "
                             f"{self.s.settings.worker.timeout_s:g} s and were abandoned") from None
        return replace(result, attempts=[*result.attempts, *more], after=None)

    async def _fail(self, failure: Failure, run_ms: float, *, forgotten: bool = False) -> Outcome:
        outcome = await self._route(failure)
        if not forgotten:
            await self._forget_delivery(failure.record)
        await self._clear_counts()
        self._log(failure.record, failure.uuid, failure.attempt, failure.started, outcome,
                  error=failure.error, run_ms=run_ms)
        return outcome

    async def _count_delivery(self, rec: Record) -> int:
        """Count this delivery durably before the job starts; returns the count, this one
        included. Waits (the record pinned) while the broker cannot take the count."""
        ledger = self.s.ledger
        if ledger is None:
            return 1
        await ledger.ensure_synced(rec.generation)
        key = ledger.key(rec.topic, rec.partition, rec.offset)
        n = ledger.delivered(key) + 1
        pause = 0.5
        while True:
            try:
                # the cleared counts first, in the same produce request: durable before this
                # job starts, so a record before it is not charged if this one kills us
                await self._clear_counts()
                await confirm([await self.sender.send(ledger.topic, key, str(n).encode())])
                ledger.counts[key] = n
                return n
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker away: wait, never run uncounted
                log.error("cannot count the delivery of %s/%d@%d (%s); retrying in %.1f s",
                          rec.topic, rec.partition, rec.offset, exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)

    async def _forget_delivery(self, rec: Record) -> None:
        """The job ended without killing the worker: drop its count. The tombstone waits for
        the next count, which sends it first (_clear_counts): aiokafka keeps one produce
        request in flight per broker, so a tombstone in a request of its own made that
        count wait a round trip. Its own finish step sends it if no count came first."""
        ledger = self.s.ledger
        if ledger is None:
            return
        key = ledger.key(rec.topic, rec.partition, rec.offset)
        ledger.counts.pop(key, None)
        ledger.to_clear.append(key)

    async def _clear_counts(self) -> None:
        """Send the tombstones waiting. Not awaited: a lost one only leaves one count too
        many, for a record that is committed and not seen again."""
        ledger = self.s.ledger
        if ledger is None or not ledger.to_clear:
            return
        keys, ledger.to_clear = ledger.to_clear, []
        for key in keys:
            try:
                delivery = await self.sender.send(ledger.topic, key, None)
            except Exception as exc:  # noqa: BLE001
                log.warning("delivery count %s not cleared: %s", key.decode(errors="replace"), exc)
                continue
            fut = asyncio.ensure_future(delivery)
            fut.add_done_callback(_log_lost_tombstone)

    async def _run(self, event: JobEvent, slot: Slot | None) -> JobResult:
        thread = self.s.executor.submit(self.handler, event, self.s)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(thread),
                                          timeout=self.s.settings.worker.timeout_s)
        except TimeoutError:
            # The thread cannot be killed; it finishes in the background and its atomic
            # writes land whole or not at all. The job itself is retried; the slot keeps
            # the thread, so the next job does not wait for it (runtime.Slot).
            if slot is not None:
                slot.thread = thread
            raise JobTimeout(
                f"job ran longer than {self.s.settings.worker.timeout_s:g} s and was abandoned"
            ) from None

    async def _route(self, failure: Failure) -> Outcome:
        """Route a failure: its traces and its retry or dead letter, built once. Until the
        broker acknowledged each of them, send again what it did not (never what it did:
        a second retry record would run the job twice); returning earlier would let faust
        ack a record that went nowhere."""
        rec = failure.record
        outcome, records = self._failure_records(failure)
        left = records
        pause = 0.5
        while True:
            try:
                sent = [await self.sender.send(r.topic, r.key, r.value, partition=r.partition,
                                               headers=r.headers) for r in left]
                results = await asyncio.gather(*sent, return_exceptions=True)
                refused = [(r, res) for r, res in zip(left, results, strict=True)
                           if isinstance(res, BaseException)]
                if not refused:
                    break
                left = [r for r, _ in refused]
                raise DeliveryFailed(f"{len(refused)} record(s) not acknowledged: "
                                     f"{type(refused[0][1]).__name__}: {refused[0][1]}"[:500])
            except asyncio.CancelledError:
                raise
            except Exception as route_exc:  # noqa: BLE001
                log.error("cannot route failed record %s/%d@%d (%s); retrying in %.1f s",
                          rec.topic, rec.partition, rec.offset, route_exc, pause)
                self.s.stats["route_errors"] += 1
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
        if outcome is Outcome.RETRY:
            self.s.stats["retried"] += 1
        else:
            self.s.stats["dead_lettered"] += 1
            if failure.event is None:
                self.s.stats["invalid"] += 1
        return outcome

    def _failure_records(self, failure: Failure) -> tuple[Outcome, list[Pending]]:
        """The outcome of a failure and the records it owes: traces, then the retry or the
        dead letter."""
        w = self.s.settings.worker
        rec, exc, attempt, origin = failure.record, failure.error, failure.attempt, failure.origin
        if attempt > headers.MAX_ATTEMPTS and not isinstance(exc, InvalidHeader):
            exc = InvalidHeader(f"{attempt} attempts: more than any round of retries makes "
                                f"({headers.MAX_ATTEMPTS} at most); last error: {exc}")
        decision = retry.decide(exc, attempt - failure.round_base, w.tries, w.backoff_base_s,
                                w.backoff_max_s)
        first_failure = failure.first_failure_ms or now_ms()
        attempts = list(getattr(exc, "attempts", []) or [])
        # the decision closes the run's traces: trace_type is the outcome
        kind = Outcome.RETRY if isinstance(decision, retry.Retry) else Outcome.DEAD_LETTER
        took_ms = round((time.perf_counter() - failure.started) * 1000, 3)
        attempts.append(Attempt(kind, type(exc).__name__, 1, False, took_ms, str(exc)[:500]))
        records = self._trace_records(failure.event, attempts, attempt, rec, uuid=failure.uuid)
        if isinstance(decision, retry.Retry):
            carry = {k: v for k, v in rec.headers.items() if k.startswith(headers.PREFIX)}
            carry.update({
                headers.H_ATTEMPT: str(attempt),
                headers.H_NOT_BEFORE: str(now_ms() + int(decision.delay_s * 1000)),
                headers.H_RETRY_FIRST_FAILURE_MS: str(first_failure),
                headers.H_ORIGINAL_TOPIC: origin.topic,
                headers.H_ORIGINAL_PARTITION: str(origin.partition),
                headers.H_ORIGINAL_OFFSET: str(origin.offset),
                headers.H_ORIGINAL_TIMESTAMP: str(origin.timestamp_ms),
                headers.H_LAST_ERROR: f"{type(exc).__name__}: {exc}"[:500],
            })
            records.append(Pending(self.s.topics.retry(self.job), rec.key, rec.value, rec.partition,
                                   [(k, v.encode()) for k, v in carry.items()]))
            return Outcome.RETRY, records
        dlt_headers = headers.build_headers(
            origin=origin, group=self.s.settings.kafka.group_id, exc=exc, reason=decision.reason,
            attempts=attempt, worker=self.s.worker_id, first_failure_ms=first_failure,
            last_failure_ms=now_ms(), replay_of=rec.headers.get(headers.H_REPLAY_OF),
        )
        records.append(Pending(self.s.topics.dead_letter(self.job), rec.key, rec.value,
                               rec.partition, dlt_headers))
        return Outcome.DEAD_LETTER, records

    async def _trace(
        self, event: JobEvent | None, attempts: list[Attempt], attempt: int, rec: Record,
    ) -> list[Awaitable[Any]]:
        return [await self.sender.send(r.topic, r.key, r.value)
                for r in self._trace_records(event, attempts, attempt, rec)]

    def _trace_records(
        self, event: JobEvent | None, attempts: list[Attempt], attempt: int, rec: Record,
        uuid: str | None = None,
    ) -> list[Pending]:
        image_uuid = event.uuid if event is not None else uuid
        uploaded_at = getattr(event, "uploaded_at", None)
        out: list[Pending] = []
        for a in attempts:
            try:
                trace = TraceEvent(
                    image_uuid=image_uuid or "", job=self.job.value, trace_type=a.trace_type,
                    method_tried=a.method_tried, method_order=a.method_order, success=a.success,
                    failure_reason=a.failure_reason, duration_ms=a.duration_ms,
                    size_bytes=a.size_bytes, width=a.width, height=a.height, attempt=attempt,
                    worker_id=self.s.worker_id, source_topic=rec.topic,
                    source_partition=rec.partition, source_offset=rec.offset,
                    uploaded_at=uploaded_at,
                )
            except ValueError as exc:
                if image_uuid:  # without a valid UUID (undecodable record) the dead letter is all
                    log.warning("trace of %s dropped, it does not validate: %s", image_uuid, exc)
                continue
            out.append(Pending(self.s.topics.traces, trace.image_uuid.encode(),
                               trace.model_dump_json().encode()))
        return out

    def _log(
        self, rec: Record, uuid: str, attempt: int, start: float, outcome: Outcome,
        error: Exception | None = None, note: str = "", run_ms: float | None = None,
    ) -> None:
        # duration_ms: until the outcome (acks included); run_ms: until the job slot was
        # free again (count, job, records queued), the rest overlapping the next record
        fields: dict[str, object] = {
            "job": self.job.value, "uuid": uuid, "topic": rec.topic, "partition": rec.partition,
            "offset": rec.offset, "attempt": attempt, "outcome": outcome,
            "duration_ms": round(_ms_since(start), 1),
        }
        if run_ms is not None:
            fields["run_ms"] = round(run_ms, 1)
        if error is not None:
            fields["error"] = f"{type(error).__name__}: {error}"[:500]
        if note:
            fields["note"] = note
        level = logging.INFO if outcome is Outcome.OK else logging.WARNING
        log.log(level, " ".join(f"{k}={v}" for k, v in fields.items()), extra={"fields": fields})


def _log_lost_tombstone(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("delivery count not cleared: %s", fut.exception())


async def confirm(sent: list[Awaitable[Any]]) -> None:
    """Wait for every broker acknowledgment; the first refusal raises DeliveryFailed."""
    results = await asyncio.gather(*sent, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        first = errors[0]
        raise DeliveryFailed(f"{len(errors)} of {len(sent)} record(s) not acknowledged by the broker: "
                             f"{type(first).__name__}: {first}"[:500])


def worker_id(configured: str) -> str:
    return f"{configured}:{os.getpid()}"
