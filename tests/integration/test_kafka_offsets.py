"""The batched offset queries against the real broker: what the worker's lag check and every
topic reader ask once a second must answer as the per-partition watermarks do, a log start
moved by deleted records included."""

from __future__ import annotations

from types import SimpleNamespace as NS

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from streams import kafka
from streams.settings import Settings
from streams.topics import Topics
from streams.worker.runtime import LagReader


def test_watermarks_in_one_query_match_the_per_partition_ones(settings: Settings,
                                                              topics: Topics) -> None:
    topic = topics.traces
    producer = kafka.producer(settings.kafka)
    counts = {0: 7, 1: 0, 2: 3, 3: 12}  # partition 1 stays empty
    for p, n in counts.items():
        for i in range(n):
            producer.produce(topic, key=b"k", value=str(i).encode(), partition=p)
    assert producer.flush(15) == 0
    # retention as the broker applies it: partition 3's log now starts at 5
    admin = AdminClient(settings.kafka.confluent_config())
    admin.delete_records([TopicPartition(topic, 3, 5)])[TopicPartition(topic, 3, 5)].result(15)

    c = kafka.consumer(settings.kafka, settings.kafka.group_id)
    try:
        tps = [(topic, p) for p in counts]
        got = kafka.watermarks(c, tps, 10)
        each = {(topic, p): c.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                                    cached=False) for p in counts}
        assert got == each
        assert got == {(topic, 0): (0, 7), (topic, 1): (0, 0), (topic, 2): (0, 3),
                       (topic, 3): (5, 12)}
        # the group committed 2 on partition 0 and 1 on partition 3 (below its log start)
        c.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 3, 1)],
                 asynchronous=False)
    finally:
        c.close()

    reader = LagReader(settings.kafka)
    try:
        lags = reader.lags([NS(topic=t, partition=p) for t, p in tps])
    finally:
        reader.close()
    assert lags is not None
    assert lags[0] == {(topic, 0): 5, (topic, 1): 0, (topic, 2): 3, (topic, 3): 7}
    assert lags[1][(topic, 3)] == 5  # the position: the log start, not the stale commit


def test_a_partition_the_broker_does_not_have_is_no_answer(settings: Settings,
                                                          topics: Topics) -> None:
    reader = LagReader(settings.kafka)
    try:
        assert reader.lags([NS(topic=topics.traces, partition=99)]) is None
    finally:
        reader.close()
