"""Trace sink throughput: rows/s from the traces topic into chDB, sink versus naive.

Both read the same records from the same topic on the real broker into the same chDB
store, in one run:

* project: ``SinkRunner`` as ``prophoto-ingest traces sink`` runs it (confluent-kafka batch
  consume, one msgspec check per batch, one JSONEachRow insert per flush, commit after);
  timed from the first record received to the last commit; ``--rounds`` times, each a new
  consumer group over the same records, and the median reported;
* baseline: one record at a time, validated with the pydantic model, one
  ``INSERT ... VALUES`` per row (what a straightforward sink does), on the first
  ``--baseline-rows`` records.

Prints rows/s for each and ``ratio: N.NN`` (project / baseline) last.

    .venv/bin/python bench/traces.py [--rows 200000] [--flush-rows 50000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.settings import Settings
from streams.topics import Topics, ensure_topics
from streams.traces import TraceEvent
from tracestore import codec, schema
from tracestore.sink import SinkRunner
from tracestore.store import open_store

METHODS = [("preview_extraction", "exiftool_embedded", 1), ("preview_extraction", "pillow_decode", 2),
           ("thumbnail_generation", "from_preview", 1), ("metadata_extraction", "exiftool", 1)]


def produce(settings: Settings, topic: str, rows: int) -> None:
    p = Producer({**settings.kafka.confluent_config(), "linger.ms": 50, "batch.size": 1 << 20,
                  "queue.buffering.max.messages": 1_000_000})
    uploaded = datetime.now(UTC)
    images = [str(uuid.uuid4()) for _ in range(max(1, rows // 4))]
    for i in range(rows):
        tt, method, order = METHODS[i % 4]
        ev = TraceEvent(
            image_uuid=images[i // 4 % len(images)], job="preview", trace_type=tt, method_tried=method,
            method_order=order, success=i % 17 != 0, failure_reason=None if i % 17 else "no embedded preview",
            duration_ms=(i % 500) / 3, size_bytes=200_000 + i % 999, width=2048, height=1365,
            worker_id="bench:1", source_topic="ingest-preview", source_partition=i % 4, source_offset=i,
            uploaded_at=uploaded,
        )
        while True:
            try:
                p.produce(topic, ev.model_dump_json().encode(), ev.image_uuid.encode())
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(60):
        raise SystemExit("producer did not deliver every record in 60 s")


def run_project(settings: Settings, store: object, rows: int, round_: int) -> float:
    # Each round is a new consumer group reading the topic from the start; rows it stores
    # again are the same trace ids, kept once (the count check below proves it).
    group = settings.kafka.model_copy(update={"group_id": f"{settings.kafka.group_id}-{round_}"})
    runner = SinkRunner(settings.model_copy(update={"kafka": group}), store, "bench")  # type: ignore[arg-type]
    stop = threading.Event()
    t = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    t.start()
    deadline = time.monotonic() + 600
    while runner.stats.written < rows and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.05)
    stop.set()
    t.join(60)
    st = runner.stats
    if st.written < rows:
        raise SystemExit(f"sink wrote {st.written} of {rows} rows")
    took = st.last_commit_at - st.first_record_at
    print(f"project round {round_}: {st.written} rows in {took:.2f} s, {st.flushes} flushes "
          f"({st.seconds_in_flush:.2f} s writing on the writer thread), {st.written / took:,.0f} rows/s")
    return st.written / took


def run_baseline(settings: Settings, store: object, topic: str, rows: int) -> float:
    backend = store.backend  # type: ignore[attr-defined]
    schema.apply(backend, "bench_naive", 1)
    cols = ", ".join(codec.COLUMNS)
    c = Consumer({**settings.kafka.confluent_config(), "group.id": f"naive-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10)
    c.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
    done = 0
    start = 0.0
    while done < rows:
        m = c.poll(5)
        if m is None:
            raise SystemExit("baseline: no record within 5 s")
        if m.error():
            continue
        start = start or time.perf_counter()
        ev = TraceEvent.model_validate_json(m.value())
        row = ev.model_dump(mode="json")
        values = ", ".join(_literal(row[k]) for k in codec.COLUMNS)
        backend.execute(f"INSERT INTO bench_naive.traces ({cols}) SETTINGS "
                        f"date_time_input_format='best_effort' VALUES ({values})")
        done += 1
    c.close()
    took = time.perf_counter() - start
    print(f"baseline: {done} rows in {took:.2f} s (one INSERT ... VALUES per row)")
    return done / took


def _literal(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--baseline-rows", type=int, default=2_000)
    ap.add_argument("--flush-rows", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3, help="project rounds; the median is reported")
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-traces-"))
    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    settings = Settings(
        kafka={"bootstrap_servers": args.bootstrap, "topic_prefix": prefix, "group_id": f"{prefix}g",
               "partitions": 4},
        clickhouse={"path": tmp / "traces.chdb", "database": "bench", "flush_rows": args.flush_rows,
                    "flush_interval_s": 1.0},
    )  # type: ignore[arg-type]
    topics = Topics.from_settings(settings.kafka)
    ensure_topics(settings.kafka, [s for s in topics.specs() if s.name in (topics.traces,
                                                                             topics.traces_dead_letter)])
    t = time.perf_counter()
    produce(settings, topics.traces, args.rows)
    print(f"produced {args.rows} trace events to {topics.traces} in {time.perf_counter() - t:.2f} s")
    store = open_store(settings.clickhouse)
    try:
        rates = sorted(run_project(settings, store, args.rows, r) for r in range(1, args.rounds + 1))
        project = rates[len(rates) // 2]  # the median: the machine is shared and noisy
        _, ((n,),) = store.query("SELECT count() FROM bench.traces FINAL")
        if n != args.rows:
            raise SystemExit(f"store holds {n} rows, expected {args.rows}")
        baseline = run_baseline(settings, store, topics.traces, min(args.baseline_rows, args.rows))
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"project rows/s:  {project:,.0f} (median of {len(rates)} rounds)")
    print(f"baseline rows/s: {baseline:,.0f}")
    print(f"ratio: {project / baseline:.2f}")


if __name__ == "__main__":
    main()
