"""The trace sink: the traces topic, in batches, into the store; bad records to dead letters.

``TraceSink`` is the batching half (``add()`` per record, ``flush()`` per checkpoint);
``run()`` is the process around it (``prophoto-ingest traces sink``): a confluent-kafka
consumer in its own group, reading up to ``flush_rows`` records per call, flushing when the
batch is full or ``flush_interval_s`` has passed, and committing offsets only once the rows
are stored and the bad records' dead letters are confirmed. A crash between insert and
commit redelivers the batch; the store keeps one row per ``trace_id`` (schema/001).

For chDB the sink is the store's only writer and holds its lock for life; it answers
readers on a loopback query endpoint (``endpoint.py``, token in the lock file) so the CLI
and the status page never need the store's files.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from streams import kafka
from streams.headers import Origin, build_headers
from streams.outcomes import DeadLetterReason
from streams.producer import EventProducer
from streams.settings import Settings
from streams.topics import Topics, ensure_topics

from . import codec
from .backends import DATA_ERROR_CODES, error_code
from .endpoint import QueryServer, new_token
from .errors import InvalidTrace, QueryFailed
from .store import Store, StoreLock, open_store

log = logging.getLogger("tracestore.sink")

STORE_RETRIES = 3


def sink_group(settings: Settings) -> str:
    """The sink's consumer group: apart from the workers', so each has its own offsets."""
    return f"{settings.kafka.group_id}.traces-sink"


@dataclass(frozen=True)
class Batch:
    values: list[bytes | None]
    refs: list[Any]


@dataclass
class FlushResult:
    written: int = 0
    # (the reference given to add(), why the record was refused)
    rejected: list[tuple[Any, str]] = field(default_factory=list)


class TraceSink:
    """Collects raw trace records and writes them to a store in one insert per flush."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._values: list[bytes | None] = []
        self._refs: list[Any] = []

    def __len__(self) -> int:
        return len(self._values)

    def add(self, value: bytes | None, ref: Any = None) -> None:
        self._values.append(value)
        self._refs.append(ref)

    def extend(self, values: list[bytes | None], refs: list[Any]) -> None:
        self._values += values
        self._refs += refs

    def take(self) -> Batch:
        """Hand over what was added (to write now or on another thread) and start afresh."""
        batch = Batch(self._values, self._refs)
        self._values, self._refs = [], []
        return batch

    def flush(self) -> FlushResult:
        return self.write(self.take())

    def write(self, batch: Batch, checked: codec.Checked | None = None) -> FlushResult:
        """Store a batch; bad records come back as rejected, store errors raise QueryFailed.

        ``checked`` is ``codec.check(batch.values)`` if the caller already ran it. A batch
        that raised may be written again: a row stored twice is kept once.
        """
        values, refs = batch.values, batch.refs
        if not values:
            return FlushResult()
        if checked is None:
            checked = codec.check(values)
        result = FlushResult(rejected=[(refs[i], reason) for i, reason in checked.bad])
        good = checked.good
        if good:
            result.written, refused = self._insert(values, good)
            result.rejected += [(refs[i], reason) for i, reason in refused]
        return result

    def _insert(self, values: Sequence[bytes | None], idx: list[int]) -> tuple[int, list[tuple[int, str]]]:
        body = codec.json_rows(values, None if len(idx) == len(values) else idx)
        try:
            # Rows sent, not ClickHouse's rows_written: that one counts the rollup's rows too.
            self.store.insert_json(codec.COLUMNS, body)
            return len(idx), []
        except QueryFailed as exc:
            if error_code(exc) not in DATA_ERROR_CODES:
                raise
            if len(idx) == 1:
                return 0, [(idx[0], f"refused by ClickHouse: {exc}"[:2000])]
        # Some record passed the checks yet does not fit the table: halve until it is found.
        # A single insert is atomic, so the halves never write a row twice.
        mid = len(idx) // 2
        w1, r1 = self._insert(values, idx[:mid])
        w2, r2 = self._insert(values, idx[mid:])
        return w1 + w2, r1 + r2


@dataclass
class SinkStats:
    consumed: int = 0
    written: int = 0
    dead_lettered: int = 0
    flushes: int = 0
    seconds_in_flush: float = 0.0
    # Monotonic times of the first record received and the last commit, for throughput.
    first_record_at: float = 0.0
    last_commit_at: float = 0.0


class SinkRunner:
    """The consume -> flush -> dead-letter -> commit loop around one TraceSink."""

    def __init__(self, settings: Settings, store: Store, worker: str) -> None:

        self.settings = settings
        self.topics = Topics.from_settings(settings.kafka)
        self.sink = TraceSink(store)
        self.worker = worker
        self.stats = SinkStats()
        self.group = sink_group(settings)
        self._pending: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset
        self._consumer = kafka.consumer(settings.kafka, self.group, {
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # Deep prefetch and large fetches: the sink is throughput-bound, not latency-bound.
            "queued.min.messages": 200_000,
            "max.partition.fetch.bytes": 8 << 20,
        })
        self._dlq = EventProducer(settings.kafka)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="trace-writer")
        self._inflight: tuple[Future[tuple[FlushResult, float]], dict[tuple[str, int], int]] | None = None

    def run(self, stop: threading.Event) -> SinkStats:
        ch = self.settings.clickhouse
        self._consumer.subscribe([self.topics.traces], on_revoke=self._on_revoke)
        last_flush = time.monotonic()
        try:
            while not stop.is_set():
                room = max(1, ch.flush_rows - len(self.sink))
                wait = max(0.0, ch.flush_interval_s - (time.monotonic() - last_flush))
                batch = self._consumer.consume(num_messages=min(room, 100_000), timeout=min(wait, 0.5))
                if batch:
                    self._take(batch)
                due = time.monotonic() - last_flush >= ch.flush_interval_s
                if len(self.sink) >= ch.flush_rows or (due and self._pending):
                    self.checkpoint(wait=False)
                elif self._inflight is not None and self._inflight[0].done():
                    self._complete_inflight()  # commit as soon as it is stored, not at the next batch
                if due or not self._pending:
                    last_flush = time.monotonic()
            self.checkpoint()
        finally:
            self._writer.shutdown(wait=True)
            self._consumer.close()
        return self.stats

    def _take(self, batch: list[Any]) -> None:
        if not self.stats.first_record_at:
            self.stats.first_record_at = time.monotonic()
        if any(m.error() is not None for m in batch):
            for m in batch:
                if m.error() is not None:
                    log.warning("consumer: %s", m.error())
            batch = [m for m in batch if m.error() is None]
        # Comprehensions, not a loop of method calls: this runs for every record.
        self.sink.extend([m.value() for m in batch], batch)
        # Records of one partition arrive in offset order, so the last one seen wins.
        self._pending.update({(m.topic(), m.partition()): m.offset() for m in batch})
        self.stats.consumed += len(batch)

    def _on_revoke(self, consumer: Any, partitions: Any) -> None:
        # Store and commit what we hold before another member takes the partitions.
        self.checkpoint()

    def checkpoint(self, wait: bool = True) -> None:
        """Start writing the current batch; with ``wait``, finish every write and commit.

        One batch is written on the writer thread while the next is consumed (the insert
        runs in ClickHouse without the GIL). Batches complete in order; a batch's offsets are
        committed only after its rows are stored and its bad records' dead letters confirmed.
        """
        if self._pending:
            batch, offsets = self.sink.take(), self._pending
            self._pending = {}
            # Checked here while the previous batch is inserted there: the check holds the
            # GIL, the insert does not.
            checked = codec.check(batch.values)
            self._complete_inflight()
            self._inflight = (self._writer.submit(self._write_with_retries, batch, checked), offsets)
        if wait:
            self._complete_inflight()

    def _complete_inflight(self) -> None:
        if self._inflight is None:
            return
        future, offsets = self._inflight
        self._inflight = None
        result, took = future.result()  # a store that stays down raises here: nothing committed
        if result.rejected:
            self._dead_letter(result.rejected)
        from confluent_kafka import TopicPartition

        self._consumer.commit(
            offsets=[TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()], asynchronous=False
        )
        self.stats.last_commit_at = time.monotonic()
        self.stats.written += result.written
        self.stats.dead_lettered += len(result.rejected)
        self.stats.flushes += 1
        self.stats.seconds_in_flush += took
        log.debug("stored %d rows, %d dead-lettered, write took %.3f s",
                  result.written, len(result.rejected), took)

    def _write_with_retries(self, batch: Batch, checked: codec.Checked) -> tuple[FlushResult, float]:
        start = time.perf_counter()
        for n in range(1, STORE_RETRIES + 1):
            try:
                return self.sink.write(batch, checked), time.perf_counter() - start
            except QueryFailed as exc:
                if n == STORE_RETRIES:
                    raise
                log.warning("store insert failed (try %d of %d): %s", n, STORE_RETRIES, exc)
                time.sleep(0.5 * 2**n)
        raise AssertionError("unreachable")

    def _dead_letter(self, rejected: list[tuple[Any, str]]) -> None:
        now = int(time.time() * 1000)
        for m, reason in rejected:
            ts = m.timestamp()[1] if m.timestamp() else now
            headers = build_headers(
                origin=Origin(m.topic(), m.partition(), m.offset(), ts), group=self.group,
                exc=InvalidTrace(reason), reason=DeadLetterReason.INVALID, attempts=1, worker=self.worker,
                first_failure_ms=now, last_failure_ms=now, replay_of=None,
            )
            self._dlq.send(self.topics.traces_dead_letter, m.key(), m.value(), headers=headers,
                           partition=m.partition())
            log.warning("dead-lettered trace record %s[%d]@%d: %s", m.topic(), m.partition(),
                        m.offset(), reason[:300])
        self._dlq.flush()  # raises PublishError: then nothing is committed, nothing lost


def run(
    settings: Settings, stop: threading.Event, *, worker: str = "",
    on_ready: Callable[[str | None], None] | None = None,
) -> SinkStats:
    """The sink process's life: lock, store, query endpoint, topics, loop, clean exit."""
    ch = settings.clickhouse
    lock: StoreLock | None = None
    if ch.backend == "chdb":
        lock = StoreLock(ch.path)
        lock.acquire(ch.lock_timeout_s)
    server: QueryServer | None = None
    store: Store | None = None
    try:
        store = open_store(ch)
        if lock is not None:
            token = new_token()
            server = QueryServer(store, token, port=ch.query_port).start()
            lock.publish(server.url, token)
        topics = Topics.from_settings(settings.kafka)
        spec_names = {topics.traces, topics.traces_dead_letter}
        ensure_topics(settings.kafka, [s for s in topics.specs() if s.name in spec_names])
        runner = SinkRunner(settings, store, worker)
        if on_ready is not None:
            on_ready(server.url if server else None)
        return runner.run(stop)
    finally:
        if server is not None:
            server.stop()
        if store is not None:
            store.close()
        if lock is not None:
            lock.release()
