"""The cost of Kafka: one worker (concurrency 1) over N uploads through the real broker, against
the same files through the imaging chain inline, in one run.

    .venv/bin/python bench/e2e.py [--images 200] [--size 6000x4000] [--sources 4] [--slices 4]
                          [--bootstrap HOST:PORT]

Inputs are camera-like JPEGs (samples.scene at quality 92, orientation 6, an MPF preview too
small for the 2048 target, as bench/imaging.py's), ``--sources`` different ones staged as N
uploads. Imaging-only is ``Imager.preview`` on the staged files in this process, one after
another, in ``--slices`` + 1 slices that alternate with the Kafka round's ``--slices`` (each
slice of uploads published at once, its clock stopped when its previews exist): on a shared
machine whose load drifts by the minute, both sides then run under the same load. The Kafka
round has its own topic prefix and group; one worker process (``--concurrency 1``, preview
topic only) has joined and done one untimed upload before the clock starts (as inline is
warmed); the clock stops when every preview exists. Where the difference goes, per job: the
worker's own job time (its log line's run_ms: delivery count, the job thread, its records
queued) split by the job's trace rows into imaging (preview_extraction,
thumbnail_generation) and the rest (the count's round trip, the thread hop); the storage
writes (timed by their trace) and the broker's acks run while the next job does
(duration_ms - run_ms); what is outside the jobs (fetch, the job gate, offset commits, the
event loop) is wall time minus job time. Prints images/s both ways, the split, CPU per image
by thread (the event loop on the worker's main thread, the job thread, the I/O thread,
librdkafka's), minor page faults per image both ways (a job thread whose malloc arena hands
image buffers back faults them in again each job: runtime.keep_freed_memory),
the worker's peak RSS and, last, ``e2e_ratio: N.NN`` (through Kafka /
imaging-only; 1.0 would be free).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from imaging import Imager, ImagingConfig  # noqa: E402
from streams import kafka  # noqa: E402
from streams.events import UploadReceived  # noqa: E402
from streams.producer import EventProducer  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.storage import LocalStorage  # noqa: E402
from streams.topics import Job, Topics, ensure_topics  # noqa: E402
from streams.uploads import stage_upload  # noqa: E402
from tests.support import samples  # noqa: E402


def make_sources(d: Path, n: int, size: tuple[int, int]) -> list[Path]:
    return [samples.camera_jpeg(d / f"camera-{i}.jpg", size, orientation=6, quality=92,
                                preview=(1920 * size[0] // 6000, 1280 * size[1] // 4000),
                                image=samples.scene(size, seed=7 + i))
            for i in range(n)]


def group_members(settings: Settings) -> int:
    admin = AdminClient(settings.kafka.confluent_config())
    g = settings.kafka.group_id
    try:
        desc = admin.describe_consumer_groups([g])[g].result(timeout=10)
    except Exception:  # noqa: BLE001 - a coordinator still loading: ask again
        return 0
    return sum(1 for m in desc.members if m.assignment.topic_partitions)


def read_all(settings: Settings, topic: str, expect: int, timeout: float = 60) -> list[bytes]:
    c = Consumer({**settings.kafka.confluent_config(), "group.id": f"bench-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10)
    c.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            out += [m.value() or b"" for m in c.consume(500, timeout=0.5) if m.error() is None]
    finally:
        c.close()
    return out


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) per thread name of ``pid`` so far."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = defaultdict(float)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            # the main thread runs the event loop; Python leaves every thread's name "python"
            name = "event loop" if task.name == str(pid) else (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


def minor_faults(pid: int) -> int:
    """Minor page faults of ``pid`` so far: memory the process had to map (again)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def inline(imager: Imager, paths: list[Path], cpu: list[float], faults: list[int]) -> list[float]:
    """Wall seconds per preview; appends this process's CPU seconds and minor page faults
    per preview to ``cpu`` and ``faults``."""
    out = []
    for p in paths:
        start, c0, f0 = time.perf_counter(), time.process_time(), minor_faults(os.getpid())
        imager.preview(p)
        out.append(time.perf_counter() - start)
        cpu.append(time.process_time() - c0)
        faults.append(minor_faults(os.getpid()) - f0)
    return out


@dataclass
class Round:
    """What one Kafka round saw: its wall time and the worker's peak RSS."""

    seconds: float
    peak_rss_mb: float | None
    threads: dict[str, float]  # the worker's CPU seconds per thread name, during the timed part
    machine: float  # all cores' busy fraction during the timed part
    idle_cpu: float  # the worker's CPU seconds per second with nothing to do
    faults: int  # the worker's minor page faults during the timed part


def wait_for(what: str, done: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path,
             timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"{what} (worker exit {proc.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(interval)


def kafka_round(settings: Settings, st: LocalStorage, warm: UploadReceived,
                slices: list[list[UploadReceived]], log: Path, between: Callable[[int], None]) -> Round:
    """The worker over ``slices`` one after another, ``between(i)`` (an inline slice) run
    before slice i and once after the last: both sides then see the same drift of the
    machine's load, not one side its first minutes and the other its last."""
    topic = Topics.from_settings(settings.kafka).job(Job.PREVIEW)
    env = {**os.environ, "INGEST_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "INGEST_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
           "INGEST_KAFKA__GROUP_ID": settings.kafka.group_id,
           "INGEST_STORAGE__ROOT": str(settings.storage.root), "INGEST_WORKER__LOG_JSON": "true"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams", "worker", "--topics", "ingest-preview",
                                 "--concurrency", "1", "-v"],
                                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for("the worker did not join the group", lambda: group_members(settings) >= 1, proc, log,
                 120, 0.5)
        # One upload first, untimed, as inline is warmed: the worker's first job syncs its
        # delivery ledger and fetches topic metadata (seconds, once per process).
        # one producer for the warm-up and every slice: a new one per slice would time its
        # own bootstrap (metadata, connections) into each
        producer = EventProducer(settings.kafka)
        producer.send(topic, warm.key, warm.model_dump_json().encode())
        producer.flush()
        wait_for("the warm-up job did not finish", st.preview_path(warm.uuid).exists, proc, log, 120)
        time.sleep(1)
        idle0, t0 = sum(thread_cpu_s(proc.pid).values()), time.perf_counter()
        time.sleep(5)  # what the worker burns with nothing to do (polling, timers, sensors)
        idle = (sum(thread_cpu_s(proc.pid).values()) - idle0) / (time.perf_counter() - t0)
        seconds, faults = 0.0, 0
        threads: dict[str, float] = defaultdict(float)
        busy, total = 0, 0
        for i, events in enumerate(slices):
            between(i)
            cpu0, busy0, faults0 = thread_cpu_s(proc.pid), machine_busy(), minor_faults(proc.pid)
            start = time.perf_counter()
            for ev in events:
                producer.send(topic, ev.key, ev.model_dump_json().encode())
            producer.flush()
            left = list(events)

            def all_done(left: list[UploadReceived] = left) -> bool:
                left[:] = [e for e in left if not st.preview_path(e.uuid).exists()]
                return not left

            wait_for("timed out", all_done, proc, log, 3600, 0.02)
            seconds += time.perf_counter() - start
            cpu1, busy1, faults1 = thread_cpu_s(proc.pid), machine_busy(), minor_faults(proc.pid)
            for k, v in cpu1.items():
                threads[k] += v - cpu0.get(k, 0.0)
            busy, total, faults = busy + busy1[0] - busy0[0], total + busy1[1] - busy0[1], \
                faults + faults1 - faults0
        between(len(slices))
        return Round(seconds, vm_hwm_mb(proc.pid), dict(threads), busy / max(1, total), idle, faults)
    finally:
        proc.terminate()
        proc.wait(60)


def job_lines(log: str, skip: str) -> list[dict[str, object]]:
    """The worker's own line per preview job (JSON logs), the warm-up's left out."""
    jobs = []
    for line in log.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if (isinstance(rec, dict) and rec.get("job") == "preview" and "duration_ms" in rec
                and rec.get("uuid") != skip):
            jobs.append(rec)
    return jobs


def report(n: int, alone: list[float], cpu: list[float], faults: list[int], rnd: Round,
           jobs: list[dict[str, object]], traces: list[dict[str, object]]) -> None:
    by_type: dict[str, float] = defaultdict(float)
    by_method: dict[str, int] = defaultdict(int)
    for t in traces:
        by_type[str(t["trace_type"])] += float(t["duration_ms"])  # type: ignore[arg-type]
        if t["trace_type"] == "preview_extraction" and t["success"]:
            by_method[str(t["method_tried"])] += 1
    ok = [r for r in jobs if r.get("outcome") == "ok"]
    per_inline = sum(alone) / n * 1000
    per_kafka = rnd.seconds / n * 1000
    # run_ms: the job's hold on the worker (count, job thread, records queued); its acks
    # are awaited behind the next job (duration_ms to the outcome)
    job_ms = statistics.fmean(float(r["run_ms"]) for r in ok) if ok else float("nan")  # type: ignore[arg-type]
    acks_ms = statistics.fmean(float(r["duration_ms"]) - float(r["run_ms"])  # type: ignore[arg-type]
                               for r in ok) if ok else float("nan")
    imaging_ms = (by_type["preview_extraction"] + by_type["thumbnail_generation"]) / n
    storage_ms = by_type["storage"] / n
    print(f"imaging only (inline):   {per_inline:7.1f} ms/image  {1000 / per_inline:6.2f} images/s  "
          f"(median {statistics.median(alone) * 1000:.1f} ms)")
    print(f"through Kafka, 1 worker: {per_kafka:7.1f} ms/image  {1000 / per_kafka:6.2f} images/s  "
          f"({len(ok)} ok of {len(jobs)} jobs; decoded by "
          f"{', '.join(f'{k} {v}' for k, v in sorted(by_method.items()))})")
    print("per image, through Kafka:")
    print(f"  imaging in the worker (preview + thumbnail attempts):   {imaging_ms:7.1f} ms "
          f"({imaging_ms - per_inline:+.1f} against inline)")
    rest = job_ms - imaging_ms
    print(f"  rest of the job (delivery count, thread hop, queueing): {rest:7.1f} ms")
    print(f"  outside the jobs (fetch, gate, commits, event loop):    {per_kafka - job_ms:7.1f} ms")
    print(f"  alongside the next job, not in the sum: storage writes (temp file, fsync, rename) "
          f"{storage_ms:.1f} ms, then the acks {acks_ms - storage_ms:.1f} ms")
    print(f"trace rows: {len(traces)} ({len(traces) / n:.1f} per image); no metadata in a preview job "
          f"(the ingest job extracts it)")
    # CPU time, unlike wall time, does not depend on what else the machine runs meanwhile
    worker_cpu = sum(rnd.threads.values()) / n * 1000
    inline_cpu = sum(cpu) / n * 1000
    top = sorted(rnd.threads.items(), key=lambda kv: -kv[1])[:4]
    print(f"CPU per image: inline {inline_cpu:.1f} ms, the worker process {worker_cpu:.1f} ms "
          f"(threads: {', '.join(f'{k} {v / n * 1000:.1f}' for k, v in top)}): "
          f"cpu_ratio {inline_cpu / worker_cpu:.2f}; all {os.cpu_count()} cores {rnd.machine:.0%} busy "
          f"during the Kafka round (broker, bench, anything else)")
    # a job thread whose allocator hands image buffers back faults them in again every job
    print(f"minor page faults per image: inline {statistics.fmean(faults):.0f}, "
          f"the worker {rnd.faults / n:.0f}")
    print(f"the worker idle burns {rnd.idle_cpu:.1%} of a core ({rnd.idle_cpu * per_kafka:.1f} ms of CPU per "
          f"image's wall time)")
    if rnd.peak_rss_mb is not None:
        print(f"worker peak RSS (VmHWM): {rnd.peak_rss_mb:.1f} MB after {n + 1} preview jobs")
    print(f"e2e_ratio: {per_inline / per_kafka:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", default="6000x4000")
    ap.add_argument("--sources", type=int, default=4)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--slices", type=int, default=4,
                    help="the Kafka round in N slices, inline slices between and around them")
    ap.add_argument("--keep-log", type=Path, default=None, help="copy the worker's log here")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    n = args.images
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        sources = make_sources(base, args.sources, (w, h))
        prefix = f"e2e{uuid.uuid4().hex[:8]}-"
        settings = Settings(kafka={"bootstrap_servers": args.bootstrap,  # type: ignore[arg-type]
                                   "topic_prefix": prefix, "group_id": f"{prefix}group"},
                            storage={"root": base / "storage"})  # type: ignore[arg-type]
        topics = Topics.from_settings(settings.kafka)
        ensure_topics(settings.kafka, topics.specs())
        st = LocalStorage(settings.storage.root)
        st.ensure()
        warm = stage_upload(st, sources[0])
        events = [stage_upload(st, sources[i % len(sources)]) for i in range(n)]
        paths = [st.source_for(e.uuid, e.path) for e in events]
        print(f"inputs: {n} uploads of {len(sources)} camera-like JPEGs {args.size} "
              f"(~{sum(s.stat().st_size for s in sources) / len(sources) / 1e6:.1f} MB, orientation 6, "
              f"MPF preview too small), {os.cpu_count()} cores, broker {args.bootstrap}")
        log = base / "worker.log"
        with Imager(ImagingConfig(**settings.imaging.model_dump())) as imager:
            imager.preview(paths[0])  # warm: exiftool, code paths
            cpu: list[float] = []
            faults: list[int] = []
            alone: list[float] = []
            k = max(1, min(args.slices, n))
            cuts = [n * i // (k + 1) for i in range(k + 2)]  # inline: k + 1 slices around k

            def between(i: int) -> None:
                alone.extend(inline(imager, paths[cuts[i]:cuts[i + 1]], cpu, faults))

            slices = [events[n * i // k:n * (i + 1) // k] for i in range(k)]
            rnd = kafka_round(settings, st, warm, slices, log, between)
        if args.keep_log:
            args.keep_log.write_bytes(log.read_bytes())
        jobs = job_lines(log.read_text(errors="replace"), warm.uuid)
        traces = [t for t in (json.loads(v) for v in read_all(settings, topics.traces, 4 * (n + 1)))
                  if t.get("image_uuid") != warm.uuid]
        kafka.delete_topics(settings.kafka, prefix)  # a broker that keeps them costs more CPU
    report(n, alone, cpu, faults, rnd, jobs, traces)


if __name__ == "__main__":
    main()
