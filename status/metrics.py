"""The status report in Prometheus text exposition format (version 0.0.4), by hand: a dozen
gauges do not need a client library.
"""

from __future__ import annotations

from collections.abc import Iterable

from .health import METRIC_CODE
from .report import StatusReport

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: str | int) -> str:
    if not kv:
        return ""
    return "{" + ",".join(f'{k}="{_label(str(v))}"' for k, v in kv.items()) + "}"


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str, samples: Iterable[tuple[str, float]]) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{labels} {_num(value)}")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def render(report: StatusReport, rounds: int, late: int) -> str:
    o = _Out()
    codes = ", ".join(f"{c} {s.value}" for s, c in sorted(METRIC_CODE.items(), key=lambda x: x[1]))
    o.family("ingest_kafka_reachable", "gauge", "1 if the last round of Kafka queries answered.",
             [("", int(report.kafka.reachable))])
    o.family("ingest_worker_status", "gauge", f"Rolled-up worker status: {codes}.",
             [("", METRIC_CODE[report.worker.status])])
    o.family("ingest_group_members", "gauge", "Members of the workers' consumer group.",
             [(_labels(group=report.group.id), len(report.group.members))])
    parts = [(name, t, p) for name, t in report.topics.items() for p in t.partitions]
    o.family("ingest_consumer_lag", "gauge", "Records after the group's committed offset.",
             [(_labels(topic=n, partition=p.partition), p.lag) for n, _, p in parts])
    o.family("ingest_consumer_lag_seconds", "gauge",
             "Age of the oldest record after the committed offset (0 without lag).",
             [(_labels(topic=n, partition=p.partition), p.lag_s) for n, _, p in parts
              if p.lag_s is not None])
    o.family("ingest_partition_status", "gauge", f"Per-partition status: {codes}.",
             [(_labels(topic=n, partition=p.partition), METRIC_CODE[p.status]) for n, _, p in parts])
    o.family("ingest_topic_paused_by_operator", "gauge",
             "1 while an operator holds the job topic back (pause TOPIC), else 0.",
             [(_labels(topic=n), int(t.paused_by_operator is not None)) for n, t in report.topics.items()
              if t.kind == "job"])
    o.family("ingest_jobs_pending", "gauge", "Total lag over the job and retry topics.",
             [("", report.jobs.pending)] if report.kafka.reachable else [])
    o.family("ingest_dead_letter_depth", "gauge",
             "Unresolved dead letters per dead-letter topic.",
             [(_labels(topic=t), n) for t, n in report.jobs.failed_by_topic.items()])
    lat = report.preview_latency
    windows = [("5m", lat.last_5m), ("60m", lat.last_60m)] if lat is not None else []
    o.family("ingest_preview_latency_seconds", "gauge",
             "Upload (record timestamp) to preview done, from the workers' heartbeats; "
             "quantile 1 is the max.",
             [(_labels(window=w, quantile=q), v) for w, summ in windows
              for q, v in (("0.5", summ.p50_s), ("0.95", summ.p95_s), ("1", summ.max_s))
              if v is not None])
    o.family("ingest_preview_latency_count", "gauge", "Previews done in the window.",
             [(_labels(window=w), summ.count) for w, summ in windows])
    states = ("running", "stopping", "gone", "no heartbeat")
    o.family("ingest_workers", "gauge", "Worker processes by state (heartbeats joined with the group).",
             [(_labels(state=st), sum(1 for w in report.workers if w.state == st)) for st in states]
             if report.kafka.reachable else [])
    o.family("ingest_worker_jobs_in_flight", "gauge", "Jobs running on each live worker.",
             [(_labels(worker=w.id), len(w.in_flight)) for w in report.workers
              if w.state in ("running", "stopping")])
    o.family("ingest_worker_rss_bytes", "gauge", "Resident memory of each live worker.",
             [(_labels(worker=w.id), w.rss_bytes) for w in report.workers
              if w.state in ("running", "stopping") and w.rss_bytes is not None])
    o.family("ingest_status_kafka_rounds_total", "counter",
             "Rounds of Kafka queries the status service started (one per sampling interval, "
             "plus ?refresh=1).", [("", rounds)])
    o.family("ingest_status_kafka_late_total", "counter",
             "Rounds abandoned because Kafka did not answer in time.", [("", late)])
    o.family("ingest_status_sample_age_seconds", "gauge", "Age of the report these values come from.",
             [("", report.sample_age_s)])
    return "\n".join(o.lines) + "\n"
