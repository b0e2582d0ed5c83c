"""Outcomes and dead-letter reasons where mypy cannot see them: on the wire (log lines,
trace rows, headers) and in the code it does not check (tests, benches, scripts). A typo'd
string there would otherwise pass silently: a log count of ``outcome=dead_leter`` is 0."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from imaging import Imager
from streams import headers as dl
from streams import retry, traces
from streams.errors import InvalidEvent, StorageUnavailable
from streams.events import UploadReceived
from streams.outcomes import DeadLetterReason, Outcome
from streams.replay import entry_from_message
from streams.settings import Settings
from streams.storage import LocalStorage
from streams.topics import Job, Topics
from streams.worker.runner import JobResult, JobRunner, Record, Services

ROOT = Path(__file__).resolve().parents[2]
UID = "0b6f1c2e-9d3a-4f4e-8a1b-2c3d4e5f6a7b"


class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, dict[str, str]]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None, *,
                   partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future[None]:
        self.sent.append((topic, value, dl.headers_to_dict(headers)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _runner(tmp_path: Path, handler: Any) -> tuple[JobRunner, Sender]:
    settings = Settings(worker={"tries": 2, "backoff_base_s": 0.01},  # type: ignore[arg-type]
                        storage={"root": tmp_path})  # type: ignore[arg-type]
    services = Services(settings=settings, topics=Topics.from_settings(settings.kafka),
                        storage=LocalStorage(tmp_path), imager=Imager(), worker_id="w:1",
                        executor=ThreadPoolExecutor(1))
    sender = Sender()
    return JobRunner(Job.PREVIEW, handler, services, sender), sender


def _fails(exc: Exception) -> Any:
    def handler(event: Any, s: Services) -> JobResult:
        raise exc
    return handler


UPLOAD = UploadReceived(uuid=UID, path="uploads/x.jpg", original_filename="x.jpg", size=1) \
    .model_dump_json().encode()


@pytest.mark.parametrize(("handler", "value", "expected"), [
    (lambda e, s: JobResult(), UPLOAD, Outcome.OK),
    (_fails(StorageUnavailable("disk gone")), UPLOAD, Outcome.RETRY),
    (_fails(InvalidEvent("bad")), UPLOAD, Outcome.DEAD_LETTER),
    (lambda e, s: JobResult(), b"{not json", Outcome.DEAD_LETTER),
])
def test_every_outcome_the_runner_returns_logs_and_traces_parses_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, handler: Any, value: bytes, expected: Outcome,
) -> None:
    runner, sender = _runner(tmp_path, handler)
    rec = Record(topic="ingest-preview", partition=0, offset=3, timestamp_ms=1, key=UID.encode(),
                 value=value, headers={})
    with caplog.at_level(logging.INFO, logger="streams.jobs"):
        outcome = asyncio.run(runner.process(rec))
    assert type(outcome) is Outcome and outcome is expected
    [line] = [r for r in caplog.records if r.name == "streams.jobs"]
    fields = line.fields  # type: ignore[attr-defined]
    assert type(fields["outcome"]) is Outcome and fields["outcome"] is expected
    # the text log readers match on (tests, the chaos report, people's greps)
    [text] = re.findall(r"\boutcome=(\S+)", line.getMessage())
    assert Outcome.parse(text) is expected
    assert json.loads(json.dumps(fields))["outcome"] == expected.value  # the JSON log line
    if expected is not Outcome.OK:
        # a failed run's last trace is its decision, with the outcome as its trace_type
        rows = [json.loads(v or b"") for t, v, _ in sender.sent if t == "ingest-traces"]
        assert rows and Outcome.parse(rows[-1]["trace_type"]) is expected
        assert rows[-1]["trace_type"] in traces.TRACE_TYPES


def test_every_failure_outcome_is_a_declared_trace_type() -> None:
    assert {o.value for o in Outcome if o is not Outcome.OK} <= set(traces.TRACE_TYPES)


def test_parse_refuses_a_typo_and_names_it() -> None:
    with pytest.raises(ValueError, match="'dead_leter' is not a job outcome"):
        Outcome.parse("dead_leter")
    with pytest.raises(ValueError, match="'retries_exhausted' is not a dead-letter reason"):
        DeadLetterReason.parse("retries_exhausted")
    assert [Outcome.parse(o.value) for o in Outcome] == list(Outcome)
    assert [DeadLetterReason.parse(r.value) for r in DeadLetterReason] == list(DeadLetterReason)


def test_the_wire_format_is_the_plain_string() -> None:
    assert [o.value for o in Outcome] == ["ok", "retry", "dead_letter"]
    assert [r.value for r in DeadLetterReason] == ["permanent", "retries-exhausted", "invalid"]
    assert f"outcome={Outcome.DEAD_LETTER}" == "outcome=dead_letter"
    assert str(DeadLetterReason.RETRIES_EXHAUSTED).encode() == b"retries-exhausted"


@pytest.mark.parametrize(("exc", "attempt", "reason"), [
    (InvalidEvent("bad"), 1, DeadLetterReason.PERMANENT),
    (MemoryError(), 1, DeadLetterReason.PERMANENT),
    (StorageUnavailable("gone"), 3, DeadLetterReason.RETRIES_EXHAUSTED),
])
def test_the_retry_policy_gives_only_declared_reasons(
    exc: BaseException, attempt: int, reason: DeadLetterReason,
) -> None:
    decision = retry.decide(exc, attempt, tries=3, base_s=0.01, max_s=1)
    assert isinstance(decision, retry.DeadLetter)
    assert type(decision.reason) is DeadLetterReason and decision.reason is reason


def _headers(reason: Any) -> list[tuple[str, bytes]]:
    return dl.build_headers(
        origin=dl.Origin("ingest-preview", 0, 1, 1), group="g", exc=RuntimeError("x"),
        reason=reason, attempts=1, worker="w", first_failure_ms=1, last_failure_ms=2,
        replay_of=None,
    )


def test_dead_letter_headers_accept_only_a_declared_reason() -> None:
    # mypy checks streams/; tests, benches and scripts call build_headers with plain strings
    with pytest.raises(ValueError, match="'permanant'"):
        _headers("permanant")
    assert dict(_headers("permanent"))[dl.H_REASON] == b"permanent"
    for reason in DeadLetterReason:
        assert dl.read_reason(dl.headers_to_dict(_headers(reason))) is reason


class _Msg:
    def __init__(self, headers: list[tuple[str, bytes]]) -> None:
        self._h = headers

    def headers(self) -> list[tuple[str, bytes]]:
        return self._h

    def topic(self) -> str:
        return "ingest-preview.dlq"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 5

    def key(self) -> bytes:
        return UID.encode()

    def value(self) -> bytes:
        return b"{}"


@pytest.mark.parametrize(("header", "reason", "shown"), [
    (b"retries-exhausted", DeadLetterReason.RETRIES_EXHAUSTED, "retries-exhausted"),
    (b"from-a-newer-worker", None, "from-a-newer-worker"),  # kept as it came
    (None, None, "?"),
])
def test_a_dead_letter_entry_types_its_reason_and_shows_it_as_before(
    header: bytes | None, reason: DeadLetterReason | None, shown: str,
) -> None:
    h = [(k, v) for k, v in _headers(DeadLetterReason.PERMANENT) if k != dl.H_REASON]
    if header is not None:
        h.append((dl.H_REASON, header))
    entry = entry_from_message(_Msg(h), Job.PREVIEW)
    assert entry.reason is reason
    assert entry.summary()["reason"] == shown


# -- the code mypy does not check ------------------------------------------------------------

_OUTCOME_TEXT = re.compile(r"""outcome=(\w+)|["']outcome["']\)?\]? == ["'](\w+)["']""")
_REASON_TEXT = re.compile("|".join([
    r"""H_REASON\][^\n]*?== \{?["']([\w-]+)["']""",  # h[dl.H_REASON] == "permanent"
    r"""reason=["']([\w-]+)["'], attempts=""",  # build_headers(..., reason="permanent", ...)
    r"""\b(?:e|entry)\.reason == ["']([\w-]+)["']""",  # a DeadLetterEntry's
    r"""["']x-ingest-dlq-reason["'], b["']([\w-]+)["']""",  # a raw header pair
]))


def _unchecked_sources() -> list[Path]:
    return sorted(p for d in ("tests", "bench", "scripts") for p in (ROOT / d).rglob("*.py"))


def test_outcomes_and_reasons_written_as_text_outside_mypy_are_real_ones() -> None:
    """Log greps (``outcome=retry``), JSON log checks and dead-letter assertions in tests and
    benches are plain strings: each one must name a member."""
    bad: list[str] = []
    seen = 0
    for path in _unchecked_sources():
        if path == Path(__file__):
            continue
        text = path.read_text()
        for m in _OUTCOME_TEXT.finditer(text):
            word = m.group(1) or m.group(2)
            seen += 1
            if word not in {o.value for o in Outcome}:
                bad.append(f"{path.relative_to(ROOT)}: outcome {word!r}")
        for m in _REASON_TEXT.finditer(text):
            seen += 1
            word = next(g for g in m.groups() if g is not None)
            if word not in {r.value for r in DeadLetterReason}:
                bad.append(f"{path.relative_to(ROOT)}: dead-letter reason {word!r}")
    assert seen > 20, "the patterns no longer find the tests' outcome and reason checks"
    assert bad == []
