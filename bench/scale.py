"""Throughput of one worker process against two, in one run, on the local broker.

    .venv/bin/python bench/scale.py [--images 200] [--size 6000x4000] [--rounds 2]
                                    [--bootstrap HOST:PORT]

Inputs are camera-like JPEGs as bench/e2e.py's (samples.scene at quality 92, orientation 6).
Each round gets its own topic prefix and consumer group; the workers (concurrency 1 each,
so the measure is per process) are started, have joined and have each run one upload
(untimed, as bench/e2e.py warms its worker) before the clock starts; the clock stops when
every preview exists. Rounds alternate, one worker then two, ``--rounds``
times each, so both see the same drift in the machine's load; the medians are compared.
Two workers share the uploads by partition, and keys hash unevenly: a burst of 200 random
UUIDs leaves one worker 10-20% more than the other, and the measure would be the hash's
luck. By default (``--spread even``) the UUIDs are drawn once the workers hold their
partitions, so that each worker gets an equal share spread evenly over its partitions, which
measures the workers; ``--spread random`` takes uuid4 as it falls. Each
two-worker round prints its split and the bound it sets (uploads / the busier worker's
share). Each round also prints where the machine's CPU went per image (the workers, this
script, the rest: the broker and anything else, and idle time). Prints
images/s both ways and, last, ``ratio: N.NN`` (two workers / one). On 2 cores the ideal is
2.0, less what the broker and this script take of them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bench.e2e import machine_busy  # noqa: E402
from streams import kafka  # noqa: E402
from streams.events import UploadReceived  # noqa: E402
from streams.producer import EventProducer  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.storage import LocalStorage  # noqa: E402
from streams.topics import Job, Topics, ensure_topics, partition_for  # noqa: E402
from streams.uploads import stage_upload  # noqa: E402
from tests.support import samples  # noqa: E402


def group_assignment(settings: Settings, topic: str) -> list[list[int]]:
    """The partitions of ``topic`` each member holds, for the members that hold any."""
    desc = kafka.describe_group(kafka.admin(settings.kafka), settings.kafka.group_id, 10)
    held = [[tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic]
            for m in desc.members]
    return [parts for parts in held if parts]


def even_uuids(n: int, held: list[list[int]], partitions: int) -> list[str]:
    """``n`` image UUIDs that give each worker (its partitions in ``held``) an equal share,
    spread evenly over its partitions: drawn until each partition has its quota."""
    quota: dict[int, int] = {}
    for i, parts in enumerate(held):
        share = n // len(held) + (1 if i < n % len(held) else 0)
        for j, q in enumerate(sorted(parts)):
            quota[q] = share // len(parts) + (1 if j < share % len(parts) else 0)
    count: Counter[int] = Counter()
    out: list[str] = []
    while len(out) < n:
        uid = str(uuid.uuid4())
        q = partition_for(uid.encode(), partitions)
        if count[q] < quota.get(q, 0):
            count[q] += 1
            out.append(uid)
    return out


def wait_all(st: LocalStorage, events: list[UploadReceived], start: float) -> None:
    """Until every preview exists. Each poll looks past the previews already seen only as
    far as the first one missing: a stat per finished image, not one per waiting image
    every 50 ms (this script's own CPU comes out of the two cores it measures)."""
    waiting = list(reversed(events))
    while waiting:
        if time.perf_counter() - start > 600:
            raise SystemExit("timed out")
        while waiting and st.preview_path(waiting[-1].uuid).exists():
            waiting.pop()
        if waiting:
            time.sleep(0.05)


def publish(p: EventProducer, topic: str, events: list[UploadReceived]) -> None:
    for ev in events:
        p.send(topic, ev.key, ev.model_dump_json().encode())
    p.flush()


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Split:
    """Where a round's CPU went, in ms per image: the workers, this script, the rest of the
    machine (the broker, anything else), and the cores' idle time."""

    workers: float
    bench: float
    rest: float
    idle: float

    def __str__(self) -> str:
        return (f"CPU ms/image: workers {self.workers:.1f}, bench {self.bench:.1f}, "
                f"rest of the machine (broker) {self.rest:.1f}, idle {self.idle:.1f}")


def run(workers: int, n: int, src: Path, base: Path, bootstrap: str,
        even: bool) -> tuple[float, list[int], Split]:
    """images/s, the uploads each worker was given, and where the CPU went."""
    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    settings = Settings(kafka={"bootstrap_servers": bootstrap, "topic_prefix": prefix,  # type: ignore[arg-type]
                               "group_id": f"{prefix}group", "partitions": 12},
                        storage={"root": base / prefix})  # type: ignore[arg-type]
    topics = Topics.from_settings(settings.kafka)
    ensure_topics(settings.kafka, topics.specs())
    st = LocalStorage(settings.storage.root)
    st.ensure()
    env = {**os.environ, "INGEST_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "INGEST_KAFKA__TOPIC_PREFIX": prefix, "INGEST_KAFKA__GROUP_ID": f"{prefix}group",
           "INGEST_KAFKA__PARTITIONS": "12", "INGEST_STORAGE__ROOT": str(settings.storage.root),
           "INGEST_WORKER__CONCURRENCY": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "streams", "worker", "--topics", "ingest-preview"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(workers)]
    try:
        deadline = time.monotonic() + 90
        while len(group_assignment(settings, topics.job(Job.PREVIEW))) < workers:
            if time.monotonic() > deadline:
                raise SystemExit("workers did not join the group")
            time.sleep(0.5)
        time.sleep(2)  # let the last rebalance settle
        held = group_assignment(settings, topics.job(Job.PREVIEW))
        # staged now the assignment is known: an even share for each worker (the bound
        # printed is then 2.0, where a per-partition spread left 98/102: 1.96)
        ids: list[str | None] = list(even_uuids(n, held, 12)) if even else [None] * n
        events = [stage_upload(st, src, image_uuid=uid) for uid in ids]
        # One upload per worker first, untimed, as bench/e2e.py warms its worker: a
        # process's first job starts its thread pools and learns topic metadata. The same
        # producer then sends the measured uploads: a new idempotent librdkafka producer
        # waits 0.5 s for its producer id when it is used at once, and that would be
        # timed as both cores idle.
        warm = [stage_upload(st, src, image_uuid=uid) for uid in even_uuids(len(held), held, 12)]
        with EventProducer(settings.kafka) as p:
            publish(p, topics.job(Job.PREVIEW), warm)
            wait_all(st, warm, time.perf_counter())
            w0, b0, (busy0, total0) = sum(proc_cpu_s(w.pid) for w in procs), \
                time.process_time(), machine_busy()
            start = time.perf_counter()
            publish(p, topics.job(Job.PREVIEW), events)
            wait_all(st, events, start)
        rate = n / (time.perf_counter() - start)
        tick = os.sysconf("SC_CLK_TCK")
        busy1, total1 = machine_busy()
        worker_s = sum(proc_cpu_s(w.pid) for w in procs) - w0
        bench_s = time.process_time() - b0
        busy_s, total_s = (busy1 - busy0) / tick, (total1 - total0) / tick
        split = Split(*(1000 * x / n for x in (worker_s, bench_s, busy_s - worker_s - bench_s,
                                               total_s - busy_s)))
        per_partition = Counter(partition_for(ev.key, 12) for ev in events)
        return rate, [sum(per_partition[q] for q in parts) for parts in held], split
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
        # A round's 18 topics (about 200 partitions) would stay: the broker's background
        # work (metrics meters per topic, its schedulers) grows with them, round by round.
        kafka.delete_topics(settings.kafka, prefix)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", default="6000x4000")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--spread", choices=("even", "random"), default="even",
                    help="image UUIDs spread evenly over the partitions, or as uuid4 falls")
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = samples.camera_jpeg(base / "input.jpg", (w, h), orientation=6, quality=92,
                                  image=samples.scene((w, h)), preview=None)
        print(f"input: {args.size} camera-like JPEG {src.stat().st_size / 1e6:.1f} MB, "
              f"{args.images} uploads spread {args.spread}ly over 12 partitions, {os.cpu_count()} cores")
        ones: list[float] = []
        twos: list[float] = []
        for r in range(args.rounds):
            one, _, cpu = run(1, args.images, src, base, args.bootstrap, args.spread == "even")
            ones.append(one)
            print(f"round {r + 1}: 1 worker : {one:6.2f} images/s  ({cpu})")
            two, split, cpu = run(2, args.images, src, base, args.bootstrap, args.spread == "even")
            twos.append(two)
            busier = max(split, default=0)
            bound = args.images / busier if busier else float("nan")
            print(f"round {r + 1}: 2 workers: {two:6.2f} images/s  (split "
                  f"{'/'.join(map(str, split))}: at most {bound:.2f}x one; {cpu})")
        one, two = statistics.median(ones), statistics.median(twos)
        print(f"1 worker : {one:6.2f} images/s (median)")
        print(f"2 workers: {two:6.2f} images/s (median)")
        print(f"ratio: {two / one:.2f}")


if __name__ == "__main__":
    main()
