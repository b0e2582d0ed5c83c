"""The error hierarchy of the streams package; the class decides retry versus dead letter.

    IngestError
    ├── PermanentError           dead-lettered at once
    │   ├── InvalidEvent         undecodable bytes, schema-invalid event, bad UUID or path
    │   │   └── InvalidHeader    a malformed or out-of-range x-ingest-* control header
    │   ├── UnsafePath           a path that resolves outside the storage root
    │   ├── SourceMissing        the uploaded file is not there
    │   └── PoisonRecord         delivered again and again without an outcome (it kills the worker)
    └── TransientError           retried with backoff, dead-lettered when tries run out
        ├── StorageUnavailable   the storage root cannot be read or written
        ├── JobTimeout           the job ran past the worker's --timeout
        └── DeliveryFailed       the broker refused or never acknowledged a record the job owes

Errors from ``imaging`` carry their own ``retriable`` flag; anything unknown is treated as
transient (it may be a hiccup), so it is retried and then dead-lettered, never lost.

Beside the jobs' tree, one class for "Kafka didn't answer" in the operator tools and the
status service (every reader in ``kafka.py`` raises it; the CLI maps it to its exit code):

    KafkaUnavailable             no broker answered, or not in time, or it refused
    ├── producer.PublishError    sends not acknowledged
    ├── status KafkaUnreachable  no metadata at all within the status timeout
    └── status KafkaLate         part of a status round unanswered in time
"""

from __future__ import annotations


class IngestError(Exception):
    retriable: bool = False


class PermanentError(IngestError):
    retriable = False


class InvalidEvent(PermanentError):
    """The record cannot be decoded or does not match the event schema."""


class InvalidHeader(InvalidEvent):
    """A control header (attempt count, origin, round base) is malformed or out of range."""


class UnsafePath(PermanentError):
    """A path resolves outside the storage root (traversal, symlink escape)."""


class SourceMissing(PermanentError):
    """The file an event names does not exist."""


class PoisonRecord(PermanentError):
    """The record was delivered ``max_deliveries`` times and each delivery died with its
    worker (killed for memory, a crashing decoder): it is not tried again."""


class TransientError(IngestError):
    retriable = True


class StorageUnavailable(TransientError):
    """Storage could not be read or written (full disk, unmounted volume, permissions)."""


class JobTimeout(TransientError):
    """A job ran longer than the configured timeout and was cancelled."""


class DeliveryFailed(TransientError):
    """A record the job owes (output, trace, retry, dead letter) was not acknowledged."""


class KafkaUnavailable(RuntimeError):
    """Kafka did not answer (or refused) what an operator tool or the status service asked.
    Not an IngestError: the CLI tells "Kafka is away" (its own exit code) from "failed"."""


def is_retriable(exc: BaseException) -> bool:
    """The one policy: does this failure deserve another try?"""
    flag = getattr(exc, "retriable", None)
    if isinstance(flag, bool):
        return flag
    return not isinstance(exc, (MemoryError, RecursionError))
