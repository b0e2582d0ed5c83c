"""The per-event runner with a fake sender: routing decisions and the headers they carry."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from imaging import Imager
from streams import headers as dl
from streams.errors import StorageUnavailable
from streams.events import UploadReceived
from streams.settings import Settings
from streams.storage import LocalStorage
from streams.topics import Job, Topics
from streams.worker.runner import JobResult, JobRunner, Record, Services

UID = "0b6f1c2e-9d3a-4f4e-8a1b-2c3d4e5f6a7b"


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None, *,
                   partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future[None]:
        self.sent.append({"topic": topic, "key": key, "value": value, "partition": partition,
                          "headers": dl.headers_to_dict(headers)})
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        error = self.refuse(topic)
        if error is None:
            delivery.set_result(None)
        else:
            delivery.set_exception(error)
        return delivery

    def refuse(self, topic: str) -> Exception | None:
        return None

    def to(self, topic: str) -> list[dict[str, Any]]:
        return [s for s in self.sent if s["topic"] == topic]


@pytest.fixture
def services(tmp_path: Path) -> Services:
    settings = Settings(worker={"tries": 3, "backoff_base_s": 0.01, "timeout_s": 0.5},  # type: ignore[arg-type]
                        storage={"root": tmp_path})  # type: ignore[arg-type]
    return Services(settings=settings, topics=Topics.from_settings(settings.kafka),
                    storage=LocalStorage(tmp_path), imager=Imager(), worker_id="w:1",
                    executor=ThreadPoolExecutor(2))


def record(value: bytes | None, headers: dict[str, str] | None = None, offset: int = 7) -> Record:
    return Record(topic="ingest-preview", partition=2, offset=offset, timestamp_ms=1_700_000_000_000,
                  key=UID.encode(), value=value, headers=headers or {})


def good_value() -> bytes:
    return UploadReceived(uuid=UID, path="uploads/x.jpg", original_filename="x.jpg", size=1) \
        .model_dump_json().encode()


def run(runner: JobRunner, rec: Record) -> str:
    return asyncio.run(runner.process(rec))


def test_invalid_record_dead_letters_at_once(services: Services) -> None:
    sender = FakeSender()
    runner = JobRunner(Job.PREVIEW, lambda e, s: JobResult(), services, sender)
    assert run(runner, record(b"{not json")) == "dead_letter"
    [d] = sender.to("ingest-preview.dlq")
    assert d["value"] == b"{not json" and d["partition"] == 2
    assert d["headers"][dl.H_REASON] == "permanent" and d["headers"][dl.H_OFFSET] == "7"
    assert services.stats["invalid"] == 1
    assert sender.to("ingest-preview.retry") == []


def test_transient_error_goes_to_retry_topic_then_dead_letters_when_exhausted(services: Services) -> None:
    sender = FakeSender()

    def broken(event: Any, s: Services) -> JobResult:
        raise StorageUnavailable("disk gone")

    runner = JobRunner(Job.PREVIEW, broken, services, sender)
    assert run(runner, record(good_value())) == "retry"
    [r1] = sender.to("ingest-preview.retry")
    h = r1["headers"]
    assert h[dl.H_ATTEMPT] == "1" and h[dl.H_ORIGINAL_OFFSET] == "7"
    assert int(h[dl.H_NOT_BEFORE]) > int(h[dl.H_RETRY_FIRST_FAILURE_MS]) - 1
    # the retry topic's record comes back with its own coordinates; the origin is kept
    again = Record(topic="ingest-preview.retry", partition=2, offset=99, timestamp_ms=1, key=r1["key"],
                   value=r1["value"], headers=h)
    assert run(runner, again) == "retry"
    third = Record(topic="ingest-preview.retry", partition=2, offset=100, timestamp_ms=1,
                   key=r1["key"], value=r1["value"], headers=sender.to("ingest-preview.retry")[1]["headers"])
    assert run(runner, third) == "dead_letter"
    [d] = sender.to("ingest-preview.dlq")
    assert d["headers"][dl.H_ATTEMPTS] == "3"
    assert d["headers"][dl.H_REASON] == "retries-exhausted"
    assert d["headers"][dl.H_OFFSET] == "7" and d["headers"][dl.H_TOPIC] == "ingest-preview"
    assert d["headers"][dl.H_ID] == dl.dead_letter_id("ingest-preview", 2, 7)
    kinds = [s["topic"] for s in sender.sent if s["topic"].endswith("traces")]
    assert len(kinds) == 3  # one failure trace per attempt


def test_replayed_record_gets_a_fresh_tries_budget(services: Services) -> None:
    sender = FakeSender()

    def broken(event: Any, s: Services) -> JobResult:
        raise StorageUnavailable("disk gone")

    runner = JobRunner(Job.PREVIEW, broken, services, sender)
    headers = {dl.H_ATTEMPT: "3", dl.H_ROUND_BASE: "3", dl.H_REPLAY_OF: "abc"}
    assert run(runner, record(good_value(), headers)) == "retry"
    assert sender.to("ingest-preview.retry")[0]["headers"][dl.H_ATTEMPT] == "4"


def test_timeout_is_a_transient_failure(services: Services) -> None:
    import time

    sender = FakeSender()

    def slow(event: Any, s: Services) -> JobResult:
        time.sleep(1.0)
        return JobResult()

    runner = JobRunner(Job.PREVIEW, slow, services, sender)
    assert run(runner, record(good_value())) == "retry"
    assert "JobTimeout" in sender.to("ingest-preview.retry")[0]["headers"][dl.H_LAST_ERROR]


def test_success_publishes_outputs_and_traces(services: Services) -> None:
    from imaging import Attempt
    from streams.worker.runner import Output

    sender = FakeSender()

    def ok(event: Any, s: Services) -> JobResult:
        return JobResult(attempts=[Attempt("preview_extraction", "m", 1, True, 1.0)],
                         outputs=[Output("images", b"k", b"v")])

    runner = JobRunner(Job.PREVIEW, ok, services, sender)
    assert run(runner, record(good_value())) == "ok"
    assert sender.to("images") == [{"topic": "images", "key": b"k", "value": b"v", "partition": None,
                                    "headers": {}}]
    assert len(sender.to("ingest-traces")) == 1
    assert services.stats["processed"] == 1


# -- untrusted control headers: every one parsed inside the error handling -----------------

@pytest.mark.parametrize("headers", [
    {dl.H_ATTEMPT: "two"},
    {dl.H_ATTEMPT: "-4"},
    {dl.H_ATTEMPT: "1", dl.H_ROUND_BASE: "x"},
    {dl.H_ATTEMPT: "1", dl.H_ROUND_BASE: "5"},  # a round cannot start after the attempts
    {dl.H_ORIGINAL_PARTITION: "p"},
    {dl.H_ORIGINAL_OFFSET: "1e9"},
    {dl.H_ORIGINAL_TIMESTAMP: "yesterday"},
    {dl.H_RETRY_FIRST_FAILURE_MS: "0x10"},
    {dl.H_ATTEMPT: "9" * 400},
    {dl.H_ATTEMPT: "\u00b2"},  # isdigit() says yes, int() says no
    {dl.H_ATTEMPT: "1", dl.H_ROUND_BASE: "\u0663"},  # an Arabic-Indic three
])
def test_malformed_control_header_is_a_dead_letter_with_the_reason(
    services: Services, headers: dict[str, str]
) -> None:
    sender = FakeSender()
    ran: list[Any] = []
    runner = JobRunner(Job.PREVIEW, lambda e, s: ran.append(e) or JobResult(), services, sender)
    value = good_value()
    assert run(runner, record(value, headers)) == "dead_letter"
    assert ran == []  # a record whose headers lie is not run
    [d] = sender.to("ingest-preview.dlq")
    h = d["headers"]
    assert h[dl.H_EXC_CLASS] == "streams.errors.InvalidHeader"
    name = next(iter(headers)) if len(headers) == 1 else list(headers)[-1]
    assert name in h[dl.H_EXC_MESSAGE]
    # the record's own coordinates stand in for an origin the headers cannot give
    assert (h[dl.H_TOPIC], h[dl.H_PARTITION], h[dl.H_OFFSET]) == ("ingest-preview", "2", "7")
    assert d["value"] == value


def test_forged_round_base_cannot_make_retries_unbounded(services: Services) -> None:
    sender = FakeSender()

    def broken(event: Any, s: Services) -> JobResult:
        raise StorageUnavailable("disk gone")

    runner = JobRunner(Job.PREVIEW, broken, services, sender)
    headers = {dl.H_ATTEMPT: "1000000", dl.H_ROUND_BASE: "1000000"}
    assert run(runner, record(good_value(), headers)) == "dead_letter"
    [d] = sender.to("ingest-preview.dlq")
    assert d["headers"][dl.H_EXC_CLASS] == "streams.errors.InvalidHeader"
    assert sender.to("ingest-preview.retry") == []


def test_forged_not_before_waits_at_most_the_backoff_bound() -> None:
    from streams.headers import retry_delay_s

    now_ms = 1_700_000_000_000
    far = {dl.H_NOT_BEFORE: str(now_ms + 10**12)}
    assert retry_delay_s(far, now_ms, max_s=2.0) == 2.0
    assert retry_delay_s({dl.H_NOT_BEFORE: "soon"}, now_ms, max_s=2.0) == 0.0
    assert retry_delay_s({dl.H_NOT_BEFORE: str(now_ms + 500)}, now_ms, max_s=2.0) == 0.5
    assert retry_delay_s({}, now_ms, max_s=2.0) == 0.0
    assert retry_delay_s({dl.H_NOT_BEFORE: "\u00b2"}, now_ms, max_s=2.0) == 0.0


class RefusingSender(FakeSender):
    """The broker refuses every record for some topics (too large, not authorized)."""

    def __init__(self, *topics: str, times: int = 10**9) -> None:
        super().__init__()
        self.topics, self.left = set(topics), times

    def refuse(self, topic: str) -> Exception | None:
        if topic in self.topics and self.left > 0:
            self.left -= 1
            return RuntimeError(f"[Error 10] MessageSizeTooLargeError: {topic}")
        return None


def test_an_output_the_broker_refuses_is_not_a_success(services: Services) -> None:
    from streams.worker.runner import Output

    sender = RefusingSender("images")
    runner = JobRunner(Job.PREVIEW, lambda e, s: JobResult(outputs=[Output("images", b"k", b"v")]),
                       services, sender)
    assert run(runner, record(good_value())) == "retry"
    [r] = sender.to("ingest-preview.retry")
    assert "DeliveryFailed" in r["headers"][dl.H_LAST_ERROR]
    assert "MessageSizeTooLarge" in r["headers"][dl.H_LAST_ERROR]
    assert services.stats["processed"] == 0


def test_a_refused_dead_letter_is_sent_again_until_acknowledged(services: Services) -> None:
    sender = RefusingSender("ingest-preview.dlq", times=2)
    runner = JobRunner(Job.PREVIEW, lambda e, s: JobResult(), services, sender)

    async def main() -> str:
        return await asyncio.wait_for(runner.process(record(b"{not json")), 10)

    assert asyncio.run(main()) == "dead_letter"
    assert len(sender.to("ingest-preview.dlq")) == 3  # two refused, the third acknowledged
    assert services.stats["route_errors"] == 2


# -- a job past its timeout keeps its slot until its thread ends ---------------------------

def _runtime(concurrency: int) -> Any:
    from streams.worker.runtime import Limits, WorkerRuntime

    settings = Settings()
    return WorkerRuntime(kafka=settings.kafka, topics=Topics.from_settings(settings.kafka),
                         jobs=[Job.PREVIEW], concurrency=concurrency, grace_s=1, limits=Limits())


def test_a_timed_out_job_keeps_its_slot_so_the_next_job_is_not_starved(tmp_path: Path) -> None:
    """Two slots, one taken by a thread hung past its timeout: the next two jobs take
    turns on the free thread, neither waits for a thread inside its own timeout, and no
    more than two job threads ever run."""
    import threading
    import time

    settings = Settings(worker={"timeout_s": 0.3}, storage={"root": tmp_path})  # type: ignore[arg-type]
    services = Services(settings=settings, topics=Topics.from_settings(settings.kafka),
                        storage=LocalStorage(tmp_path), imager=Imager(), worker_id="w:1",
                        executor=ThreadPoolExecutor(2))
    release = threading.Event()
    lock = threading.Lock()
    running, peak, calls = 0, 0, 0

    def handler(event: Any, s: Services) -> JobResult:
        nonlocal running, peak, calls
        with lock:
            running += 1
            calls += 1
            first = calls == 1
            peak = max(peak, running)
        try:
            if first:
                release.wait(10)  # hangs past its timeout
            else:
                time.sleep(0.2)  # each well inside the timeout, two in a row are not
        finally:
            with lock:
                running -= 1
        return JobResult()

    rt = _runtime(2)
    runner = JobRunner(Job.PREVIEW, handler, services, FakeSender())

    async def one(offset: int) -> str:
        async with rt.slot(Job.PREVIEW) as slot:
            return await runner.process(record(good_value(), offset=offset), slot)

    async def main() -> list[str]:
        outcomes = [await one(1)]
        outcomes += await asyncio.gather(one(2), one(3))
        release.set()
        return outcomes

    # before: both later jobs got a slot, one queued for the only free thread and timed out
    assert asyncio.run(main()) == ["retry", "ok", "ok"]
    assert peak <= 2 and rt.stop_reason is None


def test_worker_stops_for_its_supervisor_when_every_thread_is_stuck(tmp_path: Path) -> None:
    import threading

    from streams.worker.runtime import EXIT_STUCK

    settings = Settings(worker={"timeout_s": 0.2}, storage={"root": tmp_path})  # type: ignore[arg-type]
    services = Services(settings=settings, topics=Topics.from_settings(settings.kafka),
                        storage=LocalStorage(tmp_path), imager=Imager(), worker_id="w:1",
                        executor=ThreadPoolExecutor(2))
    release = threading.Event()
    rt = _runtime(2)
    runner = JobRunner(Job.PREVIEW, lambda e, s: release.wait(10) and JobResult(), services,
                       FakeSender())

    async def one(offset: int) -> str:
        async with rt.slot(Job.PREVIEW) as slot:
            return await runner.process(record(good_value(), offset=offset), slot)

    async def main() -> list[str]:
        outcomes = list(await asyncio.gather(one(1), one(2)))
        await asyncio.sleep(0)
        assert rt.stop_reason is not None and "stuck" in rt.stop_reason
        assert rt.exit_code == EXIT_STUCK and rt.stuck == 2
        release.set()
        await asyncio.sleep(0.2)
        assert rt.stuck == 0
        return outcomes

    assert asyncio.run(main()) == ["retry", "retry"]


# -- a record that kills its worker is counted before it runs ------------------------------

def test_a_record_whose_deliveries_die_with_the_worker_becomes_a_dead_letter(tmp_path: Path) -> None:
    """Three deliveries are cut off mid-job (the worker died: here, the task is cancelled
    as a SIGKILL would end it); the fourth is not run but dead-lettered as poison."""
    import threading

    from streams.worker.deliveries import DeliveryLedger

    settings = Settings(storage={"root": tmp_path})  # type: ignore[arg-type]
    ledger = DeliveryLedger(settings.kafka, "ingest-deliveries", max_deliveries=3)
    ledger._synced_generation = 0  # as if it had read the ledger topic (written below)
    services = Services(settings=settings, topics=Topics.from_settings(settings.kafka),
                        storage=LocalStorage(tmp_path), imager=Imager(), worker_id="w:1",
                        executor=ThreadPoolExecutor(2), ledger=ledger)
    sender = FakeSender()
    started = threading.Event()
    runs: list[int] = []

    def hangs(event: Any, s: Services) -> JobResult:
        runs.append(1)
        started.set()
        threading.Event().wait(0.5)
        return JobResult()

    runner = JobRunner(Job.PREVIEW, hangs, services, sender)

    async def killed_mid_job() -> None:
        started.clear()
        task = asyncio.create_task(runner.process(record(good_value())))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def main() -> str:
        for _ in range(3):
            await killed_mid_job()
        return await runner.process(record(good_value()))

    assert asyncio.run(main()) == "dead_letter"
    assert len(runs) == 3, "the fourth delivery did not run"
    counts = [s["value"] for s in sender.to("ingest-deliveries")]
    assert counts == [b"1", b"2", b"3", b"4", None]  # each count before its run; tombstone last
    [d] = sender.to("ingest-preview.dlq")
    assert d["headers"][dl.H_EXC_CLASS] == "streams.errors.PoisonRecord"
    assert "delivered 4 times" in d["headers"][dl.H_EXC_MESSAGE]
    assert ledger.counts == {}


# -- two runs of one ingest at once --------------------------------------------------------

def test_an_ingest_finished_by_a_concurrent_run_is_republished_not_dead_lettered(
    services: Services, tmp_path: Path
) -> None:
    """Run 2 found the upload, then run 1 finished the whole ingest (and removed the upload)
    before run 2 could open it: run 2 republishes the stored record, unchanged."""
    from streams.uploads import ingest_request, stage_upload
    from streams.worker.jobs import ingest
    from tests.integration.helpers import make_jpeg

    st = services.storage
    st.ensure()
    up = stage_upload(st, make_jpeg(tmp_path / "in" / "a.jpg", (320, 240)))
    event = ingest_request(up)
    real_copy = LocalStorage.copy_in
    first: list[JobResult] = []

    def copy_after_the_other_run(self: LocalStorage, src: Path, dest: Path) -> str:
        if not first:
            st.copy_in = real_copy.__get__(st)  # type: ignore[method-assign]
            first.append(ingest.handle(event, services))  # run 1, start to finish
        return real_copy(self, src, dest)

    st.copy_in = copy_after_the_other_run.__get__(st)  # type: ignore[method-assign]
    second = ingest.handle(event, services)  # before: SourceMissing, a dead letter
    stored = st.metadata_path(up.uuid).read_bytes()
    assert [o.value for o in first[0].outputs] == [stored]
    assert [o.value for o in second.outputs] == [stored]
    assert "duplicate" in second.note
    assert not st.resolve(up.path).exists()
    assert sorted(p.name for p in st.original_dir(up.uuid).iterdir()) == ["metadata.json", "original.jpg"]


def test_an_ingest_that_finishes_second_keeps_the_first_record(services: Services, tmp_path: Path) -> None:
    """Both runs copied; run 1 wrote the metadata first: run 2 publishes that record, not a
    second one with another ingested_at."""
    from streams.uploads import ingest_request, stage_upload
    from streams.worker.jobs import ingest
    from tests.integration.helpers import make_jpeg

    st = services.storage
    st.ensure()
    up = stage_upload(st, make_jpeg(tmp_path / "in" / "b.jpg", (320, 240)))
    event = ingest_request(up)
    real_copy = LocalStorage.copy_in
    first: list[JobResult] = []

    def copy_then_let_the_other_finish(self: LocalStorage, src: Path, dest: Path) -> str:
        with open(src, "rb"):  # run 2 holds the upload open: its copy can finish
            sha = real_copy(self, src, dest)
            if not first:
                st.copy_in = real_copy.__get__(st)  # type: ignore[method-assign]
                first.append(ingest.handle(event, services))
        return sha

    st.copy_in = copy_then_let_the_other_finish.__get__(st)  # type: ignore[method-assign]
    second = ingest.handle(event, services)
    stored = st.metadata_path(up.uuid).read_bytes()
    assert [o.value for o in first[0].outputs] == [stored] == [o.value for o in second.outputs]


def test_a_route_sends_again_only_what_the_broker_refused(services: Services) -> None:
    """The retry record is acknowledged, a trace is refused twice: the trace goes again,
    the retry record does not (a second one would run the job twice)."""
    sender = RefusingSender("ingest-traces", times=2)

    def broken(event: Any, s: Services) -> JobResult:
        raise StorageUnavailable("disk gone")

    runner = JobRunner(Job.PREVIEW, broken, services, sender)

    async def main() -> str:
        return await asyncio.wait_for(runner.process(record(good_value())), 10)

    assert asyncio.run(main()) == "retry"
    assert len(sender.to("ingest-preview.retry")) == 1
    assert len(sender.to("ingest-traces")) == 3  # refused, refused, acknowledged
    assert services.stats["retried"] == 1 and services.stats["route_errors"] == 2


def test_a_repeated_ingest_with_another_extension_keeps_the_original(
    services: Services, tmp_path: Path
) -> None:
    """Ingested as a.jpg; a second request for the same UUID names x.png: the stored
    original stays, no copy under another name, the same record is published again."""
    from streams.uploads import ingest_request, stage_upload
    from streams.worker.jobs import ingest
    from tests.integration.helpers import make_jpeg

    st = services.storage
    st.ensure()
    up = stage_upload(st, make_jpeg(tmp_path / "in" / "a.jpg", (320, 240)))
    first = ingest.handle(ingest_request(up), services)
    again = ingest_request(up).model_copy(update={"original_filename": "x.png"})
    second = ingest.handle(again, services)
    assert sorted(p.name for p in st.original_dir(up.uuid).iterdir()) == ["metadata.json", "original.jpg"]
    assert [o.value for o in second.outputs] == [o.value for o in first.outputs]
