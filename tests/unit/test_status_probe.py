"""The probe's reading of Kafka's answers, with fake clients: what an error means."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace as NS
from typing import Any

from status.health import State
from status.probe import Probe
from status.report import Tracker
from streams.settings import Settings
from streams.topics import Job, Topics


def _done(value: Any) -> Future[Any]:
    f: Future[Any] = Future()
    f.set_result(value)
    return f


class FakeAdmin:
    def __init__(self, topics: list[str], ends: dict[tuple[str, int], int]) -> None:
        self.names = topics
        self.ends = ends

    def list_topics(self, timeout: float) -> Any:
        parts = {0: None, 1: None}
        return NS(topics={n: NS(error=None, partitions=parts) for n in self.names},
                  brokers={1: None}, cluster_id="c1")

    def describe_consumer_groups(self, groups: list[str], request_timeout: float) -> Any:
        return {groups[0]: _done(NS(members=[], state=NS(name="EMPTY")))}

    def list_offsets(self, specs: dict[Any, Any], request_timeout: float) -> Any:
        earliest = "earliest" in repr(next(iter(specs.values()))).lower()
        return {tp: _done(NS(offset=0 if earliest else self.ends.get((tp.topic, tp.partition), 0)))
                for tp in specs}


class FakeCommitted:
    """``committed()`` answering per partition: an offset, or an error for one."""

    def __init__(self, offsets: dict[tuple[str, int], int], failing: tuple[str, int]) -> None:
        self.offsets = offsets
        self.failing = failing

    def committed(self, specs: list[Any], timeout: float) -> list[Any]:
        out = []
        for tp in specs:
            key = (tp.topic, tp.partition)
            err = "COORDINATOR_LOAD_IN_PROGRESS" if key == self.failing else None
            out.append(NS(topic=tp.topic, partition=tp.partition,
                          offset=-1001 if err else self.offsets.get(key, -1001), error=err))
        return out

    def close(self) -> None:
        pass


class NoPeek:
    def assign(self, _: Any) -> None: ...
    def unassign(self) -> None: ...
    def consume(self, n: int, timeout: float) -> list[Any]:
        return []
    def close(self) -> None: ...


class NoTally:
    def update(self, watermarks: Any, deadline: float) -> tuple[dict[str, int], bool]:
        return {}, True
    def close(self) -> None: ...


class NoPauses:
    def __init__(self) -> None:
        self.pauses: dict[str, Any] = {}

    def update(self, timeout_s: float) -> dict[str, Any]:
        return {}

    def close(self) -> None: ...


class NoBeats:
    def update(self, deadline: float) -> dict[str, Any]:
        return {}
    def close(self) -> None: ...


def test_a_committed_offset_kafka_would_not_give_is_unknown_not_a_full_backlog() -> None:
    s = Settings(kafka={"bootstrap_servers": "127.0.0.1:1", "topic_prefix": "p-",  # type: ignore[arg-type]
                        "partitions": 2}, status={"kafka_timeout_s": 0.3})
    topics = Topics.from_settings(s.kafka)
    preview = topics.job(Job.PREVIEW)
    probe = Probe(s)
    probe.close()
    probe._admin = FakeAdmin([preview], {(preview, 0): 50, (preview, 1): 50})  # type: ignore[assignment]
    probe._offsets = FakeCommitted({(preview, 0): 50, (preview, 1): 50},  # type: ignore[assignment]
                                   failing=(preview, 1))
    probe._consumer = NoPeek()  # type: ignore[assignment]
    probe._tally = NoTally()  # type: ignore[assignment]
    probe._beats = NoBeats()  # type: ignore[assignment]
    probe._pauses = NoPauses()  # type: ignore[assignment]
    rnd = probe.round()
    report = Tracker(s).build(rnd)
    parts = {p.partition: p for p in report.topics[preview].partitions}
    assert parts[0].status is State.IDLE and parts[0].lag == 0
    # Partition 1 committed at 50 too, but Kafka answered its offset with an error: that is
    # not "never committed" (a backlog of 50), it is not known.
    assert parts[1].status is State.UNKNOWN, parts[1]
    assert "COORDINATOR_LOAD_IN_PROGRESS" in parts[1].reason
    assert report.jobs.pending == 0


class CountingPeek(NoPeek):
    """Serves the record at each assigned position, with a timestamp; counts the reads."""

    def __init__(self) -> None:
        self.assigned: list[Any] = []
        self.reads = 0

    def assign(self, tps: Any) -> None:
        self.assigned = list(tps)
        self.reads += 1

    def consume(self, n: int, timeout: float) -> list[Any]:
        out = [NS(topic=lambda tp=tp: tp.topic, partition=lambda tp=tp: tp.partition,
                  offset=lambda tp=tp: tp.offset, error=lambda: None,
                  timestamp=lambda tp=tp: (1, 1_000_000 + tp.offset * 1000)) for tp in self.assigned]
        self.assigned = []
        return out


def test_the_oldest_waiting_record_is_read_once_per_committed_offset() -> None:
    s = Settings(kafka={"bootstrap_servers": "127.0.0.1:1", "topic_prefix": "p-",  # type: ignore[arg-type]
                        "partitions": 2}, status={"kafka_timeout_s": 0.3})
    preview = Topics.from_settings(s.kafka).job(Job.PREVIEW)
    probe = Probe(s)
    probe.close()
    committed = FakeCommitted({(preview, 0): 10, (preview, 1): 50}, failing=("-", -1))
    probe._admin = FakeAdmin([preview], {(preview, 0): 30, (preview, 1): 50})  # type: ignore[assignment]
    probe._offsets = committed  # type: ignore[assignment]
    peek = probe._consumer = CountingPeek()  # type: ignore[assignment]
    probe._tally = NoTally()  # type: ignore[assignment]
    probe._beats = NoBeats()  # type: ignore[assignment]
    probe._pauses = NoPauses()  # type: ignore[assignment]
    first = {p.partition: p for p in probe.round().partitions}
    assert first[0].oldest_ts == 1010.0 and first[1].oldest_ts is None  # no lag on 1
    probe.round()
    assert peek.reads == 1  # same committed offset: its timestamp came from the cache
    committed.offsets[(preview, 0)] = 20
    again = {p.partition: p for p in probe.round().partitions}
    assert peek.reads == 2 and again[0].oldest_ts == 1020.0
