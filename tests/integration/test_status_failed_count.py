"""The status service's failed count subtracts resolved dead letters (real broker)."""

from __future__ import annotations

import time

from status.deadletters import DeadLetterTally
from streams.headers import DEAD_LETTER_ID_HEADER
from streams.producer import EventProducer
from streams.replay import DeadLetters
from streams.settings import Settings
from streams.topics import Job, Topics


def test_failed_count_drops_when_dead_letters_are_resolved(settings: Settings, topics: Topics) -> None:
    dlq = topics.dead_letter(Job.PREVIEW)
    with EventProducer(settings.kafka) as p:
        for i in range(4):
            p.send(dlq, f"k{i}".encode(), b"v", headers=[(DEAD_LETTER_ID_HEADER, f"id{i}".encode())])
        # the same dead letter written twice (a redelivered failure) counts once
        p.send(dlq, b"k0", b"v", headers=[(DEAD_LETTER_ID_HEADER, b"id0")])
    tally = DeadLetterTally({**settings.kafka.confluent_config(), "group.id": "tally-test"},
                            topics, [topics.dead_letter(j) for j in Job])
    try:
        def count() -> int:
            from confluent_kafka import Consumer, TopicPartition

            c = Consumer({**settings.kafka.confluent_config(), "group.id": "wm"})
            marks = {(dlq, part): c.get_watermark_offsets(TopicPartition(dlq, part), timeout=5)
                     for part in range(settings.kafka.partitions)}
            c.close()
            per_topic, caught_up = tally.update(marks, time.monotonic() + 10)
            assert caught_up
            return per_topic[dlq]

        assert count() == 4
        DeadLetters(settings.kafka, topics).resolve(["id1", "id3"], "forget")
        assert count() == 2
        assert count() == 2  # incremental: nothing new, nothing double-counted
    finally:
        tally.close()


def test_unread_dead_letters_count_as_open_until_read(settings: Settings, topics: Topics) -> None:
    dlq = topics.dead_letter(Job.PREVIEW)
    with EventProducer(settings.kafka) as p:
        for i in range(3):
            p.send(dlq, f"k{i}".encode(), b"v", headers=[(DEAD_LETTER_ID_HEADER, f"id{i}".encode())])
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**settings.kafka.confluent_config(), "group.id": "wm"})
    marks = {(dlq, part): c.get_watermark_offsets(TopicPartition(dlq, part), timeout=5)
             for part in range(settings.kafka.partitions)}
    c.close()
    tally = DeadLetterTally({**settings.kafka.confluent_config(), "group.id": "tally-test2"},
                            topics, [topics.dead_letter(j) for j in Job])
    try:
        per_topic, caught_up = tally.update(marks, time.monotonic())  # no time to read anything
        assert not caught_up and per_topic[dlq] == 3
        per_topic, caught_up = tally.update(marks, time.monotonic() + 10)
        assert caught_up and per_topic[dlq] == 3
    finally:
        tally.close()
