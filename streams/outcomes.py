"""The closed vocabularies of a failed or finished record: what a job run ended in
(``Outcome``) and why a record became a dead letter (``DeadLetterReason``).

Both are ``StrEnum``: a member *is* its string, so log lines (``outcome=ok``), trace rows
(``trace_type=retry``), JSON and the ``x-ingest-dlq-reason`` header read exactly as plain
strings did, while mypy rejects a typo'd member and ``parse`` rejects a typo'd string.
Imports nothing of ours, so the policy, the headers, the runner and the trace model can all
use it.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How one delivery of a job record ended; the runner returns it and logs it."""

    OK = "ok"  # done: its outputs and traces are on the broker
    RETRY = "retry"  # failed, re-published to the job's retry topic
    DEAD_LETTER = "dead_letter"  # failed for good, published to the job's dead-letter topic

    @classmethod
    def parse(cls, text: str) -> Outcome:
        """The member for ``text``; ValueError names the text if it is none of them."""
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a job outcome ({', '.join(cls)})") from None


class DeadLetterReason(StrEnum):
    """Why a record was dead-lettered: the value of the ``x-ingest-dlq-reason`` header."""

    PERMANENT = "permanent"  # an error no retry can fix (malformed record, bad header, poison)
    RETRIES_EXHAUSTED = "retries-exhausted"  # transient errors until the tries ran out
    INVALID = "invalid"  # a trace record the trace store refused (it does not validate)

    @classmethod
    def parse(cls, text: str) -> DeadLetterReason:
        """The member for ``text``; ValueError names the text if it is none of them."""
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a dead-letter reason ({', '.join(cls)})") from None
