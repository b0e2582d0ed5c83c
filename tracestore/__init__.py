"""The trace store: every attempt on the traces topic, batched into ClickHouse, and read back.

Data flows one way: agents -> traces topic -> sink (``prophoto-ingest traces sink``) ->
ClickHouse -> readers (``traces`` CLI, status page) through ``reader.open_reader``.

Decisions, and why:

* **One writer per chDB store.** chDB opens a data directory from one process at a time,
  and several workers, the CLI and the status page run on one host. So workers never touch
  the store (they only produce trace events); the sink is its own process and the store's
  only writer, holding an exclusive ``flock`` on ``<path>.lock`` for its life (released by
  the kernel if it dies). It serves read-only queries on a loopback HTTP endpoint whose URL
  it writes into the lock file; readers use that endpoint while a sink runs, and take the
  lock for one query when none does (``store.py``, ``reader.py``). With a ClickHouse server
  (``INGEST_CLICKHOUSE__BACKEND=server``) there is no lock: any number of sinks and readers.
* **Redelivery does not double-count.** ``traces`` is a ReplacingMergeTree on
  ``(image_uuid, trace_id)``: a re-consumed event has the same ``trace_id`` and timestamp
  (so the same daily partition), and merges keep one row. Until a merge runs, duplicates can
  be on disk, so every pack query reads ``traces FINAL`` (merge at read time; exact, and
  cheap at the sizes a TTL keeps). The per-minute rollup is a materialized view of
  ``uniq`` states of ids, which a duplicate leaves unchanged. Offsets are committed only
  after the batch's rows are stored and its bad records' dead letters are confirmed.
* **Speed.** The sink consumes with confluent-kafka in batches of ``flush_rows``, checks a
  whole batch in one msgspec call (``codec.py``, derived from ``TraceEvent``), and sends
  the records' own JSON to ClickHouse as one JSONEachRow insert, parsed there in C++; the
  insert of one batch runs on a writer thread (without the GIL) while the next is consumed.
* **Bad records** (undecodable, wrong schema, or refused by ClickHouse) go to the traces
  dead-letter topic with the usual headers; a store that fails is retried, then the sink
  exits without committing, so nothing is lost.
* **Schema as code**: ``schema/NNN_*.sql``, applied at every start, idempotently, by the
  sink and by readers alike, for both backends (``schema.py``).

Modules: ``codec`` (wire checks), ``schema``, ``backends`` (chDB, clickhouse-connect),
``store`` (lock, open store, read-only guard), ``sink``, ``endpoint``, ``reader``, ``pack``
(the SQL pack in ``tracestore/sql``), ``errors``.
"""
