"""Lag, the one definition: end minus the committed offset, where a commit below the log
start (retention deleted those records) or no commit at all counts from the log start."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import pytest

from streams import replay
from streams.settings import KafkaSettings
from streams.topics import Topics
from streams.worker.runtime import LagReader

# (log start, log end, committed) -> lag
CASES = [
    ((100, 130, 40), 30),    # committed below the log start: 40..99 are gone, not waiting
    ((100, 130, None), 30),  # never committed: the workers start at the log start
    ((100, 130, 120), 10),
    ((0, 0, None), 0),
    ((5, 5, 5), 0),
]


class FakeConsumer:
    def __init__(self, watermarks: tuple[int, int], committed: int | None) -> None:
        self.wm = watermarks
        self.offset = -1001 if committed is None else committed

    def committed(self, tps: list[Any], timeout: float) -> list[Any]:
        return [NS(topic=tp.topic, partition=tp.partition, offset=self.offset, error=None) for tp in tps]

    def get_watermark_offsets(self, tp: Any, timeout: float, cached: bool = False) -> tuple[int, int]:
        return self.wm

    def offsets_for_times(self, tps: list[Any], timeout: float) -> list[Any]:
        # the worker's lag check asks all partitions at once: -2 the log start, -1 its end
        return [NS(topic=tp.topic, partition=tp.partition, error=None,
                   offset=self.wm[0] if tp.offset == -2 else self.wm[1]) for tp in tps]

    def list_topics(self, topic: str, timeout: float) -> Any:
        return NS(topics={topic: NS(error=None, partitions={0: None})})

    def close(self) -> None:
        pass


@pytest.mark.parametrize("offsets,expected", CASES)
def test_the_workers_priority_lag_counts_from_the_log_start(offsets: tuple[int, int, int | None],
                                                           expected: int) -> None:
    begin, end, committed = offsets
    reader = LagReader(KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    reader.close()
    reader._c = FakeConsumer((begin, end), committed)  # type: ignore[assignment]
    got = reader.lags([NS(topic="t", partition=0)])
    assert got is not None
    assert got[0] == {("t", 0): expected}


@pytest.mark.parametrize("offsets,expected", CASES)
def test_clear_counts_only_records_that_are_still_there(
    offsets: tuple[int, int, int | None], expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    begin, end, committed = offsets
    fake = FakeConsumer((begin, end), committed)
    monkeypatch.setattr(replay, "_consumer", lambda kafka: fake)
    monkeypatch.setattr(replay.kafka, "consumer", lambda kafka, group, conf=None: fake)
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    dl = replay.DeadLetters(kafka, Topics.from_settings(kafka))
    assert dl.clear("g", "t", apply=False) == {0: expected}
