"""The errors of the status service; each becomes an ``unknown`` status with its message.

    StatusError
    ├── KafkaUnreachable   no broker answered the metadata request in time
    └── KafkaLate          the broker answered part of a round, not all of it, in time
"""

from __future__ import annotations


class StatusError(Exception):
    pass


class KafkaUnreachable(StatusError):
    """No metadata from the bootstrap servers within the Kafka timeout."""


class KafkaLate(StatusError):
    """A query of the round had no answer within the Kafka timeout."""
