"""The status service's core: a sampler on its own clock (one Kafka round per
``sample_interval_s``, whether or not anyone asks); requests read the latest evaluation.

Rounds run off the event loop and are never waited on longer than the Kafka timeout. A
round that outlives it is left to finish in its thread while the answer says "unknown"; no
second round starts beside it, so a slow broker is never queried by a growing pile of
threads. Without a running sampler (``status check``, tests) a request older than one
interval starts the round itself, and concurrent requests share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol

from streams.settings import Settings

from .errors import StatusError
from .probe import DeadLetterLookup, KafkaRound, Probe
from .report import StatusReport, Tracker, unreachable

log = logging.getLogger("status.service")

# What the event loop allows beyond the Kafka budget: thread hand-off and report building.
SLACK_S = 0.3


class ProbeLike(Protocol):
    def round(self) -> KafkaRound: ...

    def lookup_dead_letters(self, uuid: str) -> DeadLetterLookup: ...

    def close(self) -> None: ...


class StatusService:
    def __init__(
        self, settings: Settings, probe: ProbeLike | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._probe = probe
        self.tracker = Tracker(settings)
        self._report: StatusReport | None = None
        self._fresh_until = 0.0  # monotonic
        self._sampler: asyncio.Task[None] | None = None
        self.last_good_at: float | None = None  # wall clock of the last round that answered
        self._inflight: asyncio.Task[StatusReport] | None = None
        self._running: Future[KafkaRound] | None = None
        self._json: tuple[StatusReport, bytes, float] | None = None
        self.rounds = 0  # Kafka rounds started, the number the cache exists to bound
        self.late = 0
        self.rebuilds = 0  # times the Kafka clients were rebuilt after a failed round
        self._injected = probe is not None  # a test's probe is kept as it is
        self._running_since = 0.0
        self.abandon_after_s = max(10.0, 4 * settings.status.kafka_timeout_s)

    @property
    def probe(self) -> ProbeLike:
        if self._probe is None:
            self._probe = Probe(self.settings, clock=self.clock)
        return self._probe

    # -- the sampler -------------------------------------------------------------------
    def start(self) -> None:
        """Sample on the running loop until ``stop``: the windows then hold evenly spaced
        samples, so "since the last look" means one interval, not the last request."""
        if self._sampler is None:
            self._sampler = asyncio.create_task(self._sample_forever(), name="status-sampler")

    async def stop(self) -> None:
        task, self._sampler = self._sampler, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sample_forever(self) -> None:
        interval = self.settings.status.sample_interval_s
        next_at = time.monotonic()
        while True:
            try:
                await self._shared_round()
            except Exception:
                log.exception("status sampler: round failed")
            next_at += interval
            now = time.monotonic()
            # A late round skips the ticks it missed rather than bursting to catch up.
            next_at = max(next_at, now)
            await asyncio.sleep(next_at - now)

    @property
    def sampling(self) -> bool:
        return self._sampler is not None and not self._sampler.done()

    async def latest(self, refresh: bool = False) -> StatusReport:
        """The latest evaluation (its age not filled in); a new round only for ``refresh``,
        for the first request, or (no sampler running) when it is older than one interval."""
        cached = self._report
        if cached is not None and not refresh and (
                self.sampling or time.monotonic() < self._fresh_until):
            return cached
        return await self._shared_round()

    async def report(self, refresh: bool = False) -> StatusReport:
        return (await self.latest(refresh)).with_age(self.clock())

    async def _shared_round(self) -> StatusReport:
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._refresh())
            self._inflight.add_done_callback(self._clear_inflight)
        return await asyncio.shield(self._inflight)

    async def report_json(self, refresh: bool = False) -> bytes:
        """The report as JSON, serialized once per round: only its age changes per request."""
        report = await self.latest(refresh=refresh)
        if self._json is None or self._json[0] is not report:
            # sample_age_s is the document's second field: its first occurrence is the top one.
            blank = report.model_copy(update={"sample_age_s": -1.0}).model_dump_json().encode()
            self._json = (report, blank, report.checked_at.timestamp())
        _, blank, taken = self._json
        age = round(max(0.0, self.clock() - taken), 3)
        return blank.replace(b'"sample_age_s":-1.0', b'"sample_age_s":%r' % age, 1)

    def _clear_inflight(self, _task: asyncio.Task[StatusReport]) -> None:
        self._inflight = None

    async def _refresh(self) -> StatusReport:
        started = time.monotonic()
        taken_at = self.clock()
        timeout = self.settings.status.kafka_timeout_s
        report: StatusReport
        if self._running is not None and not self._running.done() and \
                started - self._running_since > self.abandon_after_s:
            # A round stuck inside librdkafka (a broker restart can leave a client waiting on
            # a coordinator that moved) would block every later round: leave it to its
            # thread and start over with new clients.
            log.warning("status round stuck for %.0f s; starting over with new Kafka clients",
                        started - self._running_since)
            self._drop_probe(self._running)
            self._running = None
        if self._running is not None and not self._running.done():
            report = self._unknown(taken_at, f"the previous round of queries is still waiting on "
                                             f"{self.settings.kafka.bootstrap_servers}")
        else:
            self.rounds += 1
            loop = asyncio.get_running_loop()
            self._running_since = started
            self._running = fut = _in_daemon_thread(self.probe.round)
            try:
                rnd = await asyncio.wait_for(asyncio.wrap_future(fut, loop=loop), timeout + SLACK_S)
                report = self.tracker.build(rnd)
                self.last_good_at = rnd.taken_at
            except TimeoutError:
                self.late += 1
                report = self._unknown(taken_at, f"Kafka did not answer within {timeout:g} s")
                self._drop_probe(fut)
            except StatusError as exc:
                report = self._unknown(taken_at, str(exc))
                self._drop_probe(fut)
            except Exception as exc:  # the page must say why, not answer 500
                log.exception("status round failed")
                report = self._unknown(taken_at, f"status round failed: {type(exc).__name__}: {exc}")
                self._drop_probe(fut)
        self._report = report
        self._fresh_until = started + self.settings.status.sample_interval_s
        return report

    def _unknown(self, taken_at: float, error: str) -> StatusReport:
        return unreachable(self.settings, taken_at, error, last_good_at=self.last_good_at)

    def _drop_probe(self, fut: Future[KafkaRound] | None) -> None:
        """Any failed round rebuilds the Kafka clients for the next one: clients that lived
        through a broker restart may never answer again. The old ones are closed once
        their last round has ended, off the event loop."""
        old, self._probe = self._probe, None
        self.rebuilds += 1
        if old is None or self._injected:
            self._probe = old if self._injected else None
            return

        def close(_: object = None) -> None:
            threading.Thread(target=_close_quietly, args=(old,), daemon=True).start()

        if fut is not None and not fut.done():
            fut.add_done_callback(close)
        else:
            close()

    def lookup_dead_letters(self, uuid: str) -> DeadLetterLookup:
        """From the index the rounds keep: no Kafka call, so no thread and no wait."""
        return self.probe.lookup_dead_letters(uuid)

    def close(self) -> None:
        if self._probe is not None:
            _close_quietly(self._probe)


def _in_daemon_thread(fn: Callable[[], KafkaRound]) -> Future[KafkaRound]:
    """Run a round in a daemon thread of its own (not a pool's): a round stuck inside
    librdkafka can be left behind, and never holds up the process's exit."""
    fut: Future[KafkaRound] = Future()

    def run() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
            fut.set_exception(exc)

    threading.Thread(target=run, name="status-kafka", daemon=True).start()
    return fut


def _close_quietly(probe: ProbeLike) -> None:
    with contextlib.suppress(Exception):
        probe.close()
