from __future__ import annotations

import pytest

from streams.settings import KafkaSettings
from streams.topics import Job, Topics, murmur2, partition_for


# Reference values from Apache Kafka's UtilsTest.testMurmur2 (Java ints as signed 32-bit).
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_java(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected & 0xFFFFFFFF


def test_murmur2_matches_aiokafka_partitioner() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    for i in range(200):
        key = f"0b6f{i:04d}-aaaa-4bbb-8ccc-0123456789ab".encode()
        parts = list(range(12))
        assert DefaultPartitioner()(key, parts, parts) == partition_for(key, 12)


def test_names_prefix_and_twins() -> None:
    t = Topics.from_settings(KafkaSettings(topic_prefix="x-", partitions=6))
    assert t.job(Job.INGEST) == "x-ingest"
    assert t.job(Job.PREVIEW) == "x-ingest-preview"
    assert t.dead_letter(Job.ENHANCE) == "x-ingest-enhance.dlq"
    assert t.retry(Job.PREVIEW) == "x-ingest-preview.retry"
    names = [s.name for s in t.specs()]
    assert len(names) == len(set(names))
    job_specs = [s for s in t.specs() if t.job_for_topic(s.name)]
    assert {s.partitions for s in job_specs} == {6}
    assert next(s for s in t.specs() if s.name == t.images).kafka_config()["cleanup.policy"] == "compact"


def test_parse_jobs_keeps_priority_order_and_rejects_unknown() -> None:
    t = Topics.from_settings(KafkaSettings())
    assert t.parse_jobs("ingest-enhance,ingest") == [Job.ENHANCE, Job.INGEST]
    assert t.parse_jobs("preview, ingest ,preview") == [Job.PREVIEW, Job.INGEST]
    with pytest.raises(ValueError, match="unknown topic 'nope'"):
        t.parse_jobs("ingest,nope")
