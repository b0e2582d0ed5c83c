"""The errors of the trace store; none of them is retriable by a job runner.

    TraceStoreError
    ├── StoreBusy        another process owns the chDB store and serves no query endpoint
    ├── QueryRejected    a reader sent something other than one read-only statement
    ├── QueryFailed      ClickHouse refused or failed the statement (message says why)
    ├── InvalidTrace     a record on the traces topic is not a trace event (dead-lettered)
    └── SchemaError      a DDL file is malformed or could not be applied
"""

from __future__ import annotations


class TraceStoreError(Exception):
    retriable: bool = False


class StoreBusy(TraceStoreError):
    """The chDB data directory is locked by a process that does not answer queries."""


class QueryRejected(TraceStoreError):
    """Readers may run one SELECT/WITH/SHOW/DESCRIBE/EXPLAIN statement, nothing else."""


class QueryFailed(TraceStoreError):
    """The database returned an error for the statement."""


class SchemaError(TraceStoreError):
    """A schema file could not be parsed or applied."""


class InvalidTrace(TraceStoreError):
    """A record on the traces topic that is not a valid trace event."""
