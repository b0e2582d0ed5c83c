"""The errors of the status service; each becomes an ``unknown`` status with its message.

    StatusError
    ├── KafkaUnreachable   no broker answered the metadata request in time
    └── KafkaLate          the broker answered part of a round, not all of it, in time

Both are also ``streams.errors.KafkaUnavailable``, the one "Kafka didn't answer" class.
"""

from __future__ import annotations

from streams.errors import KafkaUnavailable


class StatusError(Exception):
    pass


class KafkaUnreachable(StatusError, KafkaUnavailable):
    """No metadata from the bootstrap servers within the Kafka timeout."""


class KafkaLate(StatusError, KafkaUnavailable):
    """A query of the round had no answer within the Kafka timeout."""
