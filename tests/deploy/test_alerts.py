"""The chart's Prometheus alert rules (files/alerts.yaml): promtool checks them and runs their
unit tests (alerts-test.yaml); every metric and label they and those tests use is one the
status service really renders (status/metrics.py on a report built from real heartbeats)."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from status import metrics
from status.heartbeats import Seen
from status.probe import DeadLetterDepth, KafkaRound, Member, PartitionOffsets
from status.report import Tracker
from streams.heartbeat import Heartbeat, InFlightJob, LatencySketch
from streams.settings import Settings
from streams.topics import Job, Topics

from .helpers import ALL_FEATURES, by_kind, render

TESTS = Path(__file__).parent / "alerts-test.yaml"
ALERTS = [
    "IngestPreviewLatencySLOBreach",
    "IngestWorkerStalled",
    "IngestKafkaUnreachable",
    "IngestDeadLettersGrowing",
    "IngestNoWorkerRunning",
    "IngestStatusSampleStale",
    "IngestStatusMetricsAbsent",
]
# Labels a scrape adds (ServiceMonitor: job, namespace, container, instance, pod, ...).
TARGET_LABELS = {"job", "namespace", "container", "instance", "pod", "service", "endpoint"}
# Labels with a fixed set of values, all of which the fixture report renders.
ENUM_LABELS = {"window", "quantile", "state"}
DEAD_LETTER_TOPICS = {Topics(prefix="", partitions=1).dead_letter(j) for j in Job}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"')
_SELECTOR = re.compile(r"\b(ingest_[a-z0-9_]+)\b(\{[^}]*\})?")


def promtool(binary: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def rule_file(*args: str) -> str:
    """The rules as the chart renders them for a Prometheus of your own (the ConfigMap's file)."""
    manifests = render(None, "--set", "alerts.enabled=true", "--set", "alerts.kind=ConfigMap", *args)
    (cm,) = [m for m in by_kind(manifests, "ConfigMap") if m["metadata"]["name"].endswith("-alerts")]
    text: str = cm["data"]["alerts.yaml"]
    return text


def rules_of(text: str) -> list[dict[str, Any]]:
    groups = yaml.safe_load(text)["groups"]
    return [r for g in groups for r in g["rules"]]


def run_unit_tests(binary: str, rules: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "alerts.yaml").write_text(rules)
    shutil.copy(TESTS, tmp_path / "alerts-test.yaml")
    return promtool(binary, "test", "rules", "alerts-test.yaml", cwd=tmp_path)


# -- promtool ----------------------------------------------------------------------------------
def test_promtool_check_rules(promtool_bin: str, tmp_path: Path) -> None:
    (tmp_path / "alerts.yaml").write_text(rule_file())
    proc = promtool(promtool_bin, "check", "rules", "alerts.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout, proc.stdout


def test_promtool_check_rules_rejects_a_broken_expression(promtool_bin: str, tmp_path: Path) -> None:
    (tmp_path / "alerts.yaml").write_text(rule_file("--set", 'alerts.selector=job=~"(unclosed'))
    proc = promtool(promtool_bin, "check", "rules", "alerts.yaml", cwd=tmp_path)
    assert proc.returncode != 0, proc.stdout
    assert "FAILED" in proc.stdout + proc.stderr


def test_promtool_unit_tests_pass(promtool_bin: str, tmp_path: Path) -> None:
    proc = run_unit_tests(promtool_bin, rule_file(), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout, proc.stdout


def test_unit_tests_fail_when_the_slo_is_not_the_one_they_test(promtool_bin: str, tmp_path: Path) -> None:
    """The 90 s breach is no breach of a 120 s SLO: the same tests must then fail, on that alert."""
    proc = run_unit_tests(promtool_bin, rule_file("--set", "alerts.previewLatency.sloSeconds=120"), tmp_path)
    assert proc.returncode != 0, proc.stdout
    out = proc.stdout + proc.stderr
    assert "IngestPreviewLatencySLOBreach" in out
    assert "IngestWorkerStalled" not in out, "only the SLO alert's tests should notice"


def test_unit_tests_see_keep_firing_for(promtool_bin: str, tmp_path: Path) -> None:
    """Without keep_firing_for the alert resolves at 16m, when the p95 recovers: at 17m promtool
    gets no alert where the tests expect the kept one."""
    proc = run_unit_tests(
        promtool_bin, rule_file("--set", "alerts.previewLatency.keepFiringFor=0s"), tmp_path
    )
    assert proc.returncode != 0, proc.stdout
    out = proc.stdout + proc.stderr
    at_17m = out.split("time: 17m", 1)
    assert len(at_17m) == 2, out
    assert "got:[]" in at_17m[1].split("name:", 1)[0], out


# -- what the status service renders -----------------------------------------------------------
@cache
def rendered_series() -> dict[str, list[dict[str, str]]]:
    """metric name -> label sets, from status/metrics.py on a report the Tracker builds from a
    round with a preview backlog, dead letters and a worker whose heartbeat carries latencies."""
    s = Settings(kafka={"partitions": 1}, status={"stall_threshold_s": 30, "sample_interval_s": 5})
    topics = Topics.from_settings(s.kafka)
    preview = topics.job(Job.PREVIEW)
    sketch = LatencySketch()
    for i in range(20):
        sketch.add(1.0 + i, now=990.0)
    beat = Heartbeat(
        id="w:1", host="w", pid=1, version="0.1.0", started_at=0.0, sent_at=999.0, interval_s=3.0,
        topics=[preview], concurrency=2, timeout_s=120.0, jobs_done=7, rss_bytes=50_000_000,
        in_flight=[InFlightJob(topic=preview, partition=0, offset=4, uuid="u1", running_s=2.0)],
        preview_latency=sketch.minutes(),
    )  # fmt: skip
    rnd = KafkaRound(
        taken_at=1000.0, duration_s=0.01, cluster_id="c", brokers=1, group_state="STABLE",
        members=(Member("m-w:1", "w:1", "/127.0.0.1", ((preview, 0),)),),
        partitions=(PartitionOffsets(preview, 0, 0, 9, 4, 995.0),),
        missing_topics=(), calls=1, heartbeats=(Seen(beat, 999.0),),
        dead_letters=DeadLetterDepth(2, {topics.dead_letter(Job.PREVIEW): 2}, ""),
    )  # fmt: skip
    text = metrics.render(Tracker(s).build(rnd), rounds=1, late=0)
    out: dict[str, list[dict[str, str]]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            if line.startswith("# TYPE "):
                out.setdefault(line.split()[2], [])
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out[m.group(1)].append({k: v for k, _, v in _LABEL.findall(m.group(2) or "")})
    return out


def test_the_rendered_report_has_every_family_the_alerts_need() -> None:
    """Guards the fixture: an empty family would make the checks below vacuous."""
    series = rendered_series()
    for name in ["ingest_preview_latency_seconds", "ingest_preview_latency_count", "ingest_workers",
                 "ingest_dead_letter_depth", "ingest_jobs_pending", "ingest_worker_status",
                 "ingest_kafka_reachable", "ingest_status_sample_age_seconds"]:  # fmt: skip
        assert series.get(name), f"{name}: no sample rendered"
    windows = {(x["window"], x["quantile"]) for x in series["ingest_preview_latency_seconds"]}
    assert ("5m", "0.95") in windows


def _check_selector(name: str, matchers: str, where: str) -> list[str]:
    series = rendered_series()
    if name not in series:
        return [f"{where}: {name} is not a metric the status service renders"]
    problems = []
    keys = set().union(*(s.keys() for s in series[name])) if series[name] else set()
    for label, op, value in _LABEL.findall(matchers):
        if label in TARGET_LABELS:
            continue
        if label not in keys:
            problems.append(f"{where}: {name} has no label {label!r} (it has {sorted(keys)})")
        elif op == "=" and label in ENUM_LABELS and value not in {s[label] for s in series[name]}:
            seen = sorted({s[label] for s in series[name]})
            problems.append(f"{where}: {name}{{{label}={value!r}}} is never rendered (values: {seen})")
        elif name == "ingest_dead_letter_depth" and label == "topic" and value not in DEAD_LETTER_TOPICS:
            problems.append(f"{where}: {value!r} is not a dead-letter topic ({sorted(DEAD_LETTER_TOPICS)})")
    return problems


def test_rules_use_only_metrics_and_labels_the_status_service_renders() -> None:
    rules = rules_of(rule_file())
    assert [r["alert"] for r in rules] == ALERTS
    problems: list[str] = []
    for r in rules:
        used = _SELECTOR.findall(r["expr"])
        assert used, f"{r['alert']}: no ingest_ metric in {r['expr']!r}"
        for name, matchers in used:
            problems += _check_selector(name, matchers, r["alert"])
    assert problems == []


def test_the_unit_tests_feed_series_the_status_service_renders() -> None:
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    series = rendered_series()
    problems: list[str] = []
    fed = 0
    for t in tests:
        for s in t.get("input_series", []):
            m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}", s["series"])
            assert m, s["series"]
            name, matchers = m.groups()
            problems += _check_selector(name, matchers, t["name"])
            own = {k for k, _, _ in _LABEL.findall(matchers)} - TARGET_LABELS
            if name in series and series[name] and own != set(series[name][0]):
                problems.append(
                    f"{t['name']}: {name} with labels {sorted(own)}, rendered with {sorted(series[name][0])}"
                )
            fed += 1
    assert problems == []
    assert fed >= 20


# -- the chart ---------------------------------------------------------------------------------
def test_alerts_are_off_by_default(default_manifests: list[dict[str, Any]]) -> None:
    assert by_kind(default_manifests, "PrometheusRule") == []
    assert [m["metadata"]["name"] for m in by_kind(default_manifests, "ConfigMap")] == ["rel-prophoto-ingest"]


def test_prometheus_rule_and_rule_file_hold_the_same_rules(all_manifests: list[dict[str, Any]]) -> None:
    (rule,) = by_kind(all_manifests, "PrometheusRule")
    assert rule["metadata"]["name"] == "rel-prophoto-ingest-alerts"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    as_file = yaml.safe_load(rule_file("-f", str(ALL_FEATURES)))
    assert rule["spec"] == as_file


def test_thresholds_and_labels_come_from_values(helm_bin: str) -> None:
    text = rule_file(
        "--set", "alerts.previewLatency.sloSeconds=45",
        "--set", "alerts.previewLatency.for=10m",
        "--set", "alerts.previewLatency.keepFiringFor=0s",
        "--set", "alerts.deadLetters.window=1h",
        "--set", "alerts.noWorkerRunning.severity=page",
        "--set", "alerts.extraLabels.team=platform",
        "--set", 'alerts.selector=namespace="ingest"',
    )  # fmt: skip
    rules = {r["alert"]: r for r in rules_of(text)}
    slo = rules["IngestPreviewLatencySLOBreach"]
    assert "> 45\n" in slo["expr"] and "above the 45 s SLO" in slo["annotations"]["summary"]
    assert (slo["for"], slo["keep_firing_for"]) == ("10m", "0s")
    assert "[1h]" in rules["IngestDeadLettersGrowing"]["expr"]
    assert rules["IngestNoWorkerRunning"]["labels"]["severity"] == "page"
    for r in rules.values():
        assert r["labels"]["team"] == "platform", r["alert"]
        assert 'job="' not in r["expr"] and 'namespace="ingest"' in r["expr"], r["alert"]


def test_recovery_is_spelt_out_for_the_slo_alert() -> None:
    (slo,) = [r for r in rules_of(rule_file()) if r["alert"] == "IngestPreviewLatencySLOBreach"]
    assert slo["keep_firing_for"] == "2m"
    assert "send_resolved" in slo["annotations"]["resolved"]
