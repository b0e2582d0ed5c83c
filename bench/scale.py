"""Throughput of one worker process against two, in one run, on the local broker.

    .venv/bin/python bench/scale.py [--images 60] [--size 3000x2000]

Each round gets its own topic prefix and consumer group; the workers (concurrency 1 each,
so the measure is per process) are started and have joined before the clock starts; the
clock stops when every preview exists. Prints images/s for both and, last,
``ratio: N.NN`` (two workers / one). On 2 cores the ideal is 2.0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka.admin import AdminClient  # noqa: E402
from PIL import Image  # noqa: E402

from streams.producer import EventProducer  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.storage import LocalStorage  # noqa: E402
from streams.topics import Job, Topics, ensure_topics  # noqa: E402
from streams.uploads import stage_upload  # noqa: E402


def make_input(path: Path, size: tuple[int, int]) -> Path:
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    im = Image.merge("RGB", (im.getchannel(0), im.rotate(90, expand=False).getchannel(0),
                             Image.effect_noise(size, 40)))
    im.save(path, quality=90)
    return path


def group_members(settings: Settings) -> int:
    admin = AdminClient(settings.kafka.confluent_config())
    g = settings.kafka.group_id
    desc = admin.describe_consumer_groups([g])[g].result(timeout=10)
    return sum(1 for m in desc.members if m.assignment.topic_partitions)


def run(workers: int, n: int, src: Path, base: Path, bootstrap: str) -> float:
    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    settings = Settings(kafka={"bootstrap_servers": bootstrap, "topic_prefix": prefix,  # type: ignore[arg-type]
                               "group_id": f"{prefix}group", "partitions": 12},
                        storage={"root": base / prefix})  # type: ignore[arg-type]
    topics = Topics.from_settings(settings.kafka)
    ensure_topics(settings.kafka, topics.specs())
    st = LocalStorage(settings.storage.root)
    st.ensure()
    events = [stage_upload(st, src) for _ in range(n)]
    env = {**os.environ, "INGEST_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "INGEST_KAFKA__TOPIC_PREFIX": prefix, "INGEST_KAFKA__GROUP_ID": f"{prefix}group",
           "INGEST_KAFKA__PARTITIONS": "12", "INGEST_STORAGE__ROOT": str(settings.storage.root),
           "INGEST_WORKER__CONCURRENCY": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "streams", "worker", "--topics", "ingest-preview"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(workers)]
    try:
        deadline = time.monotonic() + 90
        while group_members(settings) < workers:
            if time.monotonic() > deadline:
                raise SystemExit("workers did not join the group")
            time.sleep(0.5)
        time.sleep(2)  # let the last rebalance settle
        start = time.perf_counter()
        with EventProducer(settings.kafka) as p:
            for ev in events:
                p.send(topics.job(Job.PREVIEW), ev.key, ev.model_dump_json().encode())
        while sum(st.preview_path(e.uuid).exists() for e in events) < n:
            if time.perf_counter() - start > 600:
                raise SystemExit("timed out")
            time.sleep(0.05)
        return n / (time.perf_counter() - start)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--size", default="3000x2000")
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = make_input(base / "input.jpg", (w, h))
        print(f"input: {args.size} JPEG {src.stat().st_size / 1e6:.1f} MB, {args.images} uploads, "
              f"{os.cpu_count()} cores")
        one = run(1, args.images, src, base, args.bootstrap)
        print(f"1 worker : {one:6.2f} images/s")
        two = run(2, args.images, src, base, args.bootstrap)
        print(f"2 workers: {two:6.2f} images/s")
        print(f"ratio: {two / one:.2f}")


if __name__ == "__main__":
    main()
