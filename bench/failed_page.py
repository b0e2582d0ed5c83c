"""The failed-jobs page at 10,000 unresolved dead letters: /api/failed?page=1 and the page's
first render, against baselines measured in the same run.

    .venv/bin/python bench/failed_page.py [--dead-letters 10000] [--requests 50] [--bootstrap host:port]

Seeds the dead letters on topics of its own (a fresh prefix, deleted at the end), starts
``prophoto-ingest status serve`` and measures, from this process:
  - /healthz (no Kafka, no JSON of size): the baseline for the API's ratios;
  - the first /api/failed?page=1 (the service builds its index: one pass over the topics);
  - /api/failed?page=1 warm (the index caught up at most once per sampling interval);
  - /api/failed?page=1&refresh=1 (every request asks Kafka for what is new: nothing);
  - DeadLetters.entries() in this process: what one request would cost if it read the
    whole dead-letter topic as the CLI's ``failed`` does;
  - the page's first render in Chromium (navigation to the first row drawn), against the
    dashboard's first render (navigation to its first status drawn).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams import headers as dl  # noqa: E402
from streams import kafka  # noqa: E402
from streams.producer import EventProducer  # noqa: E402
from streams.replay import DeadLetters  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.topics import Job, Topics, ensure_topics  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def seed(settings: Settings, topics: Topics, n: int) -> None:
    base_ms = int(time.time() * 1000) - n * 1000
    with EventProducer(settings.kafka) as p:
        for i in range(n):
            job = list(Job)[i % 3]
            origin = dl.Origin(topic=topics.job(job), partition=i % settings.kafka.partitions,
                               offset=i, timestamp_ms=base_ms)
            headers = dl.build_headers(
                origin=origin, group=settings.kafka.group_id, exc=RuntimeError(f"bench failure {i}"),
                reason="permanent", attempts=1, worker="bench:1", first_failure_ms=base_ms + i * 1000,
                last_failure_ms=base_ms + i * 1000, replay_of=None)
            key = str(uuid.uuid4())
            value = (f'{{"schema_version":1,"uuid":"{key}","type":"upload.received",'
                     f'"path":"uploads/00/{key}.jpg","original_filename":"IMG_{i}.jpg","size":1}}')
            p.send(topics.dead_letter(job), key.encode(), value.encode(), headers=headers)
            if i % 2000 == 1999:
                p.flush()


def timed_get(url: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}")
    return time.perf_counter() - t0, body


def median_ms(url: str, n: int) -> float:
    return statistics.median(timed_get(url)[0] for _ in range(n)) * 1000


def first_render_ms(base: str, n: int) -> tuple[float, float]:
    """Median ms from navigation to the first row of /failed, and to the dashboard's first
    status, each in a fresh page."""
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    failed: list[float] = []
    dashboard: list[float] = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            for _ in range(n):
                page = b.new_page()
                t0 = time.perf_counter()
                page.goto(base + "/failed?every=600")
                page.wait_for_selector("#failed tbody tr[data-id]", timeout=120_000)
                failed.append((time.perf_counter() - t0) * 1000)
                page.close()
                page = b.new_page()
                t0 = time.perf_counter()
                page.goto(base + "/?every=600")
                page.wait_for_function("document.getElementById('count-failed').textContent !== '\\u2013'",
                                       timeout=120_000)
                dashboard.append((time.perf_counter() - t0) * 1000)
                page.close()
        finally:
            b.close()
    return statistics.median(failed), statistics.median(dashboard)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dead-letters", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--renders", type=int, default=5)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = ap.parse_args()

    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    settings = Settings(kafka={"bootstrap_servers": args.bootstrap, "topic_prefix": prefix,  # type: ignore[arg-type]
                               "group_id": f"{prefix}group", "partitions": 12})
    topics = Topics.from_settings(settings.kafka)
    ensure_topics(settings.kafka, topics.specs())
    t0 = time.perf_counter()
    seed(settings, topics, args.dead_letters)
    print(f"seeded {args.dead_letters} dead letters on {prefix}* in {time.perf_counter() - t0:.1f} s")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "INGEST_KAFKA__BOOTSTRAP_SERVERS": args.bootstrap,
           "INGEST_KAFKA__TOPIC_PREFIX": prefix, "INGEST_KAFKA__GROUP_ID": f"{prefix}group",
           "INGEST_KAFKA__PARTITIONS": "12", "INGEST_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "streams", "status", "serve", "--port", str(port)],
                            cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                timed_get(base + "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        cold_s, body = timed_get(base + "/api/failed?page=1")
        total = int(body.split(b'"total": ', 1)[1].split(b",", 1)[0])
        if total != args.dead_letters:
            raise RuntimeError(f"/api/failed says {total} unresolved, seeded {args.dead_letters}")
        healthz = median_ms(base + "/healthz", args.requests)
        warm = median_ms(base + "/api/failed?page=1", args.requests)
        fresh = median_ms(base + "/api/failed?page=1&refresh=1", args.requests)
        t0 = time.perf_counter()
        full = len(DeadLetters(settings.kafka, topics).entries())
        full_ms = (time.perf_counter() - t0) * 1000
        render, dash = first_render_ms(base, args.renders)
    finally:
        proc.terminate()
        proc.wait(20)
        kafka.delete_topics(settings.kafka, prefix)

    print(f"{'/healthz (baseline)':36} {healthz:9.2f} ms  median of {args.requests}")
    print(f"{'/api/failed?page=1, first (index)':36} {cold_s * 1000:9.2f} ms  once, {total} unresolved")
    print(f"{'/api/failed?page=1, warm':36} {warm:9.2f} ms  median of {args.requests}; "
          f"ratio to /healthz {warm / healthz:.1f}")
    print(f"{'/api/failed?page=1&refresh=1':36} {fresh:9.2f} ms  median of {args.requests}; "
          f"ratio to /healthz {fresh / healthz:.1f}")
    print(f"{'whole-topic read (DeadLetters.entries)':36} {full_ms:9.2f} ms  once, {full} entries; "
          f"ratio to warm /api/failed {full_ms / warm:.0f}")
    print(f"{'/failed first render':36} {render:9.2f} ms  median of {args.renders} (to the first row)")
    print(f"{'dashboard first render (baseline)':36} {dash:9.2f} ms  median of {args.renders}; "
          f"ratio /failed : dashboard {render / dash:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
