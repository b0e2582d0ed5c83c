"""What a worker process does besides running jobs: priorities, limits, graceful stop,
the restart broadcast, heartbeats, and a liveness endpoint.

- Priority: all agents of a worker share ``concurrency`` job slots through a priority gate,
  so a free slot always goes to the highest-priority job waiting; and while a higher-
  priority topic has lag above ``priority_lag_threshold`` on this worker's partitions,
  lower-priority jobs do not start even for a free slot. Their records wait in bounded
  stream buffers (faust stops fetching a partition whose buffer is under pressure).
- Graceful stop (SIGTERM/SIGINT, a job limit, ``restart``): no new job starts, in-flight
  jobs finish within the grace period, faust commits what was acked and leaves the group.
  A second signal stops at once; unfinished records are redelivered to the next owner.
- Exit codes: 0 a normal stop (signal, --once, --max-jobs, --max-time, --stop-when-empty,
  restart); 12 resident memory over --memory, 13 every job thread stuck past --timeout
  (the supervisor restarts it either way).
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from .. import heartbeat, kafka
from .. import kafka as kafka_clients  # where a KafkaSettings named kafka shadows it
from ..pauses import Pause, PauseTail
from ..settings import KafkaSettings
from ..topics import Job, Topics
from .gate import PriorityGate
from .stall import Stall

log = logging.getLogger("streams.worker")

EXIT_OK = 0
EXIT_MEMORY = 12
EXIT_STUCK = 13

# mallopt(3) parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(trim_mb: int = 128) -> bool:
    """Keep the memory a job frees for the next job instead of handing it back to the OS.

    Jobs run in a pool thread, and glibc gives such a thread its own arena, which returns
    a job's 20-40 MB image buffers to the OS as they are freed; the next job faults every
    page in again: about 12,000 minor faults and 40 ms of CPU per 24 MP preview, where the
    same call on the main thread faults none (bench/e2e.py's inline side). Fixed thresholds
    (which also turn off glibc's self-adjusting ones) keep up to ``trim_mb`` of it; buffers
    over 32 MB are still mapped and unmapped whole. False where there is no glibc malloc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_mb << 20))


@dataclass
class Slot:
    """A job slot; a job whose thread outlives it (a timeout) leaves the thread here."""

    thread: Future[Any] | None = None


@dataclass(frozen=True)
class Limits:
    max_jobs: int | None = None
    max_time_s: float | None = None
    memory_mb: float | None = None
    stop_when_empty: bool = False


class WorkerRuntime:
    def __init__(self, *, kafka: KafkaSettings, topics: Topics, jobs: list[Job], concurrency: int,
                 grace_s: float, limits: Limits, lag_threshold: int = 0,
                 health_port: int = 0, worker_id: str = "", timeout_s: float = 0.0,
                 heartbeat_s: float = 3.0) -> None:
        self.kafka = kafka
        self.topics = topics
        self.jobs = jobs
        self.limits = limits
        self.grace_s = grace_s
        self.lag_threshold = lag_threshold
        self.health_port = health_port
        self.worker_id = worker_id
        self.gate = PriorityGate(concurrency)
        self.concurrency = concurrency
        self.stuck = 0
        self.priority = {job: i for i, job in enumerate(jobs)}
        self.started = time.monotonic()
        self.started_wall_ms = int(time.time() * 1000)
        self.done = 0
        self.in_flight = 0
        self.finishing = 0  # records whose job ran, awaiting the broker's acks (hold())
        self.exit_code = EXIT_OK
        self.stop_reason: str | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._shutdown: Callable[[], None] | None = None
        self.paused: set[str] = set()
        self.pause_reason = ""
        self.timeout_s = timeout_s
        self.heartbeat_s = heartbeat_s
        # Jobs in their slot: (topic, partition, offset, uuid, monotonic start).
        self.running: dict[int, tuple[str, int, int, str, float]] = {}
        self._job_ids = itertools.count()
        self.latency = heartbeat.LatencySketch()
        self.assignment: Callable[[], set[Any]] = set
        self.operator_paused: dict[Job, Pause] = {}  # job -> its operator's pause
        self.stall = Stall()
        self.rejoin: Callable[[], None] = lambda: None  # the app binds its consumer's

    # -- jobs ---------------------------------------------------------------------------
    @asynccontextmanager
    async def slot(self, job: Job, where: tuple[str, int, int, str] | None = None
                   ) -> AsyncIterator[Slot]:
        """A job slot for the record at ``where`` (topic, partition, offset, uuid)."""
        prio = self.priority.get(job, 99)
        await self.gate.acquire(prio)
        self.in_flight += 1
        self._idle.clear()
        held = Slot()
        job_id = next(self._job_ids)
        if where is not None:
            self.running[job_id] = (*where, time.monotonic())
        try:
            yield held
        finally:
            self.running.pop(job_id, None)
            self.in_flight -= 1
            self.done += 1
            self._maybe_idle()
            thread = held.thread
            if thread is not None and not thread.done():
                self._keep_until_done(prio, thread)
            else:
                self.gate.release(prio)
            if self.limits.max_jobs is not None and self.done >= self.limits.max_jobs:
                self.request_stop(f"--max-jobs {self.limits.max_jobs} reached")

    def hold(self) -> Callable[[], None]:
        """A record whose job leaves its slot with its acks still awaited: the worker is
        not idle until the returned release is called, so a graceful stop, --once and
        --stop-when-empty wait for its outcome. Take it inside the slot: the slot's exit
        would otherwise count the worker idle first."""
        self.finishing += 1
        self._idle.clear()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.finishing -= 1
                self._maybe_idle()

        return release

    @property
    def idle(self) -> bool:
        return self._idle.is_set()

    def _maybe_idle(self) -> None:
        if self.in_flight == 0 and self.finishing == 0:
            self._idle.set()

    def _keep_until_done(self, prio: int, thread: Future[Any]) -> None:
        """A job past its timeout was routed, but its thread runs on (threads cannot be
        killed): its slot stays taken until the thread ends, so the worker never runs more
        than ``concurrency`` jobs and the next job never queues behind it for a thread.
        When every slot is taken so, nothing can run: exit for the supervisor."""
        loop = asyncio.get_running_loop()
        self.stuck += 1

        def freed() -> None:
            self.stuck -= 1
            self.gate.release(prio)

        thread.add_done_callback(lambda _: loop.call_soon_threadsafe(freed))
        log.warning("a job thread is still running past --timeout; its slot stays taken "
                    "(%d of %d stuck)", self.stuck, self.concurrency)
        if self.stuck >= self.concurrency:
            self.request_stop(f"all {self.concurrency} job thread(s) stuck past --timeout",
                              EXIT_STUCK)

    # -- stopping -----------------------------------------------------------------------
    def bind_shutdown(self, shutdown: Callable[[], None]) -> None:
        self._shutdown = shutdown

    def request_stop(self, reason: str, code: int = EXIT_OK) -> None:
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        self.exit_code = code
        self.gate.closed = True
        log.warning("stopping: %s; finishing %d job(s) in flight (grace %.0f s)",
                    reason, self.in_flight, self.grace_s)
        asyncio.get_running_loop().create_task(self._drain_then_stop())

    def on_signal(self, signum: int) -> None:
        if self.stop_reason is None:
            self.request_stop(f"signal {signal.Signals(signum).name}")
        else:
            log.warning("second signal: stopping now; unfinished records will be redelivered")
            self._stop_now()

    async def _drain_then_stop(self) -> None:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=self.grace_s)
        except TimeoutError:
            log.warning("grace period over with %d job(s) still running; they will be redelivered",
                        self.in_flight)
        self._stop_now()

    def _stop_now(self) -> None:
        if self._shutdown is not None:
            self._shutdown()

    # -- periodic checks ----------------------------------------------------------------
    async def watch(self, assignment: Callable[[], set[Any]]) -> None:
        """Limits, priority pauses and stop-when-empty, once a second."""
        lag_reader = LagReader(self.kafka)
        try:
            while self.stop_reason is None:
                await asyncio.sleep(1.0)
                self._check_limits()
                tps = list(assignment())
                if not tps or self.stop_reason is not None:
                    continue
                got = await asyncio.to_thread(lag_reader.lags, tps)
                if got is None:
                    continue  # broker slow or away: decide next time
                lags, _ = got
                self._apply_priority(lags)
                self._check_stall(lags)
                if (self.limits.stop_when_empty and self.idle
                        and sum(lags.values()) == 0):
                    self.request_stop("--stop-when-empty: no lag on the assigned partitions")
        finally:
            lag_reader.close()

    def _check_stall(self, lags: dict[tuple[str, int], int]) -> None:
        """Records waiting on job topics nothing holds back, and no job taken (stall.py)."""
        watched = ({self.topics.job(j) for j in self.jobs} - self.paused
                   - {self.topics.job(j) for j in self.operator_paused})
        waiting = sum(lag for (topic, _), lag in lags.items() if topic in watched)
        if self.stall.check(time.monotonic(), waiting, self.in_flight + self.finishing,
                            self.done):
            log.error("%d record(s) wait on this worker's partitions and none was taken for "
                      "%.0f s: rejoining the group for a new assignment", waiting,
                      self.stall.after_s)
            try:
                self.rejoin()
            except Exception as exc:  # noqa: BLE001 - the watch must go on (limits, priority)
                log.error("could not ask for a rejoin: %s", exc)

    def _check_limits(self) -> None:
        lim = self.limits
        if lim.max_time_s is not None and time.monotonic() - self.started >= lim.max_time_s:
            self.request_stop(f"--max-time {lim.max_time_s:g} s reached")
        if lim.memory_mb is not None:
            import psutil

            rss_mb = psutil.Process().memory_info().rss / (1024 * 1024)
            if rss_mb > lim.memory_mb:
                self.request_stop(f"--memory: resident {rss_mb:.0f} MB over {lim.memory_mb:g} MB",
                                  EXIT_MEMORY)

    def _apply_priority(self, lags: dict[tuple[str, int], int]) -> None:
        """Hold back lower-priority jobs at the gate while a higher-priority job topic has
        lag. Fetching is never paused (see stream_buffer in app.py): their records wait in
        the stream buffers, and faust stops fetching a partition whose buffer fills."""
        if len(self.jobs) < 2:
            return
        lag_by_job = {job: 0 for job in self.jobs}
        for (topic, _), lag in lags.items():
            job = self.topics.job_for_topic(topic)
            # Only the job topic itself: a retry waiting out its backoff is no reason to
            # hold back lower-priority work.
            if job in lag_by_job and topic == self.topics.job(job):
                lag_by_job[job] += lag
        blocked_from: int | None = None
        reason = ""
        for i, job in enumerate(self.jobs):
            if lag_by_job[job] > self.lag_threshold:
                blocked_from = i + 1
                reason = (f"waiting for priority: {self.topics.job(job)} has {lag_by_job[job]} "
                          f"waiting on this worker's partitions (threshold {self.lag_threshold})")
                break
        lower = self.jobs[blocked_from:] if blocked_from else []
        want_paused = {self.topics.job(j) for j in lower} | {self.topics.retry(j) for j in lower}
        if want_paused != self.paused:
            log.info("priority: paused %s", sorted(want_paused) or "nothing")
        self.paused = want_paused
        self.pause_reason = reason
        self.gate.block_from(blocked_from)

    # -- restart broadcast --------------------------------------------------------------
    async def listen_for_restart(self) -> None:
        """Exit cleanly when a restart newer than this process appears on the control topic."""
        from confluent_kafka import TopicPartition

        c = kafka.consumer(self.kafka, f"control-{os.getpid()}")
        try:
            tp = TopicPartition(self.topics.control, 0, self.started_wall_ms)
            offsets = await asyncio.to_thread(c.offsets_for_times, [tp], 10.0)
            c.assign(offsets)
            while self.stop_reason is None:
                msgs = await asyncio.to_thread(c.consume, 10, 1.0)
                for m in msgs:
                    if m.error() is not None:
                        continue
                    try:
                        body = json.loads(m.value() or b"{}")
                    except ValueError:
                        continue
                    if body.get("command") == "restart" and body.get("at_ms", 0) >= self.started_wall_ms:
                        self.request_stop(f"restart requested by {body.get('by', '?')}")
        except Exception as exc:  # noqa: BLE001 - the worker runs on without the listener
            log.error("restart listener stopped: %s", exc)
        finally:
            c.close()

    # -- operator pauses -------------------------------------------------------------------
    def apply_pauses(self, pauses: dict[str, Pause]) -> None:
        """Hold back the jobs an operator paused (their retry topics too), at the gate."""
        mine = {job: pauses[self.topics.job(job)] for job in self.jobs
                if self.topics.job(job) in pauses}
        if mine.keys() != self.operator_paused.keys():
            log.warning("operator pause: %s", ", ".join(
                f"{self.topics.job(j)} ({p.describe()})" for j, p in mine.items()) or "none")
        self.operator_paused = mine
        self.gate.pause(frozenset(self.priority[job] for job in mine))

    def load_pauses(self, timeout_s: float = 10.0) -> None:
        """Before the first job: a worker that starts while a topic is paused honours it."""
        tail = PauseTail(self.kafka, self.topics.pauses, f"pauses-{os.getpid()}")
        try:
            self.apply_pauses(tail.update(timeout_s))
        finally:
            tail.close()

    async def follow_pauses(self) -> None:
        """Every second, the operators' pauses (faust calls an app task with no argument)."""
        tail = PauseTail(self.kafka, self.topics.pauses, f"pauses-{os.getpid()}")
        try:
            while self.stop_reason is None:
                try:
                    self.apply_pauses(await asyncio.to_thread(tail.update, 5.0))
                except Exception as exc:  # noqa: BLE001 - broker away: keep the last state
                    log.debug("pauses not read: %s", exc)
                await asyncio.sleep(1.0)
        finally:
            tail.close()

    # -- heartbeats ----------------------------------------------------------------------
    def heartbeat(self, rss_bytes: int | None = None) -> heartbeat.Heartbeat:
        """What this worker is doing now, as the status service reads it."""
        now = time.monotonic()
        held: dict[str, list[int]] = {}
        for tp in self.assignment():
            held.setdefault(tp.topic, []).append(tp.partition)
        host, _, pid = self.worker_id.rpartition(":")
        return heartbeat.Heartbeat(
            id=self.worker_id, host=host or self.worker_id,
            pid=int(pid) if pid.isdigit() else os.getpid(), version=_version(),
            started_at=self.started_wall_ms / 1000, sent_at=time.time(),
            interval_s=self.heartbeat_s,
            topics=[t for job in self.jobs for t in (self.topics.job(job), self.topics.retry(job))],
            concurrency=self.concurrency, timeout_s=self.timeout_s, jobs_done=self.done,
            rss_bytes=rss_bytes,
            in_flight=[heartbeat.InFlightJob(topic=t, partition=p, offset=o, uuid=u,
                                             running_s=round(now - t0, 3))
                       for t, p, o, u, t0 in self.running.values()],
            paused=[heartbeat.PausedTopic(topic=t, partitions=sorted(held.get(t, [])),
                                          reason=self.pause_reason)
                    for t in sorted(self.paused)] + [
                heartbeat.PausedTopic(topic=t, partitions=sorted(held.get(t, [])),
                                      reason=p.describe(), by="operator")
                for job, p in self.operator_paused.items()
                for t in (self.topics.job(job), self.topics.retry(job))],
            stopping=self.stop_reason,
            preview_latency=self.latency.minutes(),
        )

    async def publish_heartbeats(self) -> None:
        """A heartbeat every ``heartbeat_s`` until the worker stops, and one as it stops.
        Best effort: a heartbeat the broker does not take is simply the next one."""

        producer = kafka.producer(self.kafka, {
            "linger.ms": 0, "message.timeout.ms": max(1000, int(self.heartbeat_s * 3000))})
        proc = _this_process()
        try:
            while True:
                rss = proc.memory_info().rss if proc is not None else None
                body = self.heartbeat(rss).model_dump_json().encode()
                try:
                    producer.produce(self.topics.heartbeats, key=self.worker_id.encode(), value=body)
                except Exception as exc:  # noqa: BLE001 - queue full or broker away
                    log.debug("heartbeat not sent: %s", exc)
                producer.poll(0)
                if self.stop_reason is not None:
                    return  # the last one says why it stops
                await asyncio.sleep(self.heartbeat_s)
        finally:
            await asyncio.to_thread(producer.flush, 1.0)

    # -- liveness ------------------------------------------------------------------------
    async def serve_health(self) -> None:
        if not self.health_port:
            return
        from aiohttp import web

        async def healthz(_: web.Request) -> web.Response:
            body = {"status": "stopping" if self.stop_reason else "ok", "worker": self.worker_id,
                    "jobs_done": self.done, "in_flight": self.in_flight,
                    "paused": sorted(self.paused)}
            return web.json_response(body)

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", self.health_port).start()
        log.info("health endpoint on :%d/healthz", self.health_port)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("prophoto-ingest-streams")
    except metadata.PackageNotFoundError:
        return "unknown"


def _this_process() -> Any:
    try:
        import psutil

        return psutil.Process()
    except Exception:  # noqa: BLE001 - RSS is optional in a heartbeat
        return None


class LagReader:
    """Lag (end offset minus the group's committed offset) of given partitions."""

    def __init__(self, kafka: KafkaSettings) -> None:

        self._c = kafka_clients.consumer(kafka, kafka.group_id)
        self.timeout = min(5.0, kafka.request_timeout_s)

    def lags(
        self, tps: list[Any]
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]] | None:
        """(lag, committed offset) per partition, or None when the broker does not answer."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            parts = [TopicPartition(tp.topic, tp.partition) for tp in tps]
            committed = self._c.committed(parts, timeout=self.timeout)
            marks = kafka.watermarks(self._c, [(p.topic, p.partition) for p in committed],
                                     self.timeout)
            out: dict[tuple[str, int], int] = {}
            starts: dict[tuple[str, int], int] = {}
            for p in committed:
                lo, hi = marks[(p.topic, p.partition)]
                out[(p.topic, p.partition)] = kafka.lag(lo, hi, p.offset)
                starts[(p.topic, p.partition)] = kafka.position(lo, p.offset)
            return out, starts
        except KafkaException:
            return None

    def close(self) -> None:
        self._c.close()
