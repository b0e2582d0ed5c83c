"""Requests/s on /status from a second process, and the Kafka rounds the service issued
meanwhile (one per sampling interval, however many requests).

    .venv/bin/python bench/status.py [--seconds 22] [--concurrency 16] [--bootstrap host:port]

Starts ``prophoto-ingest status serve`` (sampling every 5 s by default) against the broker
on 127.0.0.1:9092 with its own topics and a small backlog, then drives it from this
process. Baseline, same client and run: /healthz (no Kafka, no JSON building); the ratio
says what serving the latest evaluation costs. Also shows ?refresh=1 (every request wants
a round; the service shares in-flight rounds) for contrast.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.producer import EventProducer  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.topics import Job, Topics, ensure_topics  # noqa: E402


async def hammer(url: str, seconds: float, concurrency: int) -> tuple[int, set[str], float]:
    """Requests completed, distinct ``checked_at`` seen (for /status), end time (wall)."""
    done = 0
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    is_status = "/status" in url
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def one() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with http.get(url) as r:
                    if r.status != 200:
                        raise RuntimeError(f"{url}: HTTP {r.status}")
                    if is_status:
                        body = await r.json()
                        seen.add(body["checked_at"])
                    else:
                        await r.read()
                done += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return done, seen, time.time()


async def metric(base: str, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
        text = await r.text()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    if not m:
        raise RuntimeError(f"{name} missing from /metrics")
    return float(m.group(1))


async def bench(base: str, seconds: float, concurrency: int, sample_interval_s: float) -> int:
    n_base, _, _ = await hammer(base + "/healthz", 5.0, concurrency)
    base_rps = n_base / 5.0
    before = await metric(base, "ingest_status_kafka_rounds_total")
    start = time.time()
    n, seen, end = await hammer(base + "/status", seconds, concurrency)
    after = await metric(base, "ingest_status_kafka_rounds_total")
    rps = n / seconds
    # The sampler's clock alone decides the rounds: one per interval, none per request.
    rounds = int(after - before)
    ticks = (end - start) / sample_interval_s
    n_ref, _, _ = await hammer(base + "/status?refresh=1", 3.0, concurrency)
    after_ref = await metric(base, "ingest_status_kafka_rounds_total")

    print(f"client: {concurrency} connections, one process; server: status serve, "
          f"sampling every {sample_interval_s:g} s")
    print(f"baseline /healthz           {base_rps:9.0f} req/s")
    print(f"/status                     {rps:9.0f} req/s  ({n} requests in {seconds:g} s)")
    print(f"ratio: /status : /healthz   {rps / base_rps:9.2f}")
    print(f"Kafka rounds during the run {rounds:9d}  (sampling intervals elapsed: {ticks:.1f}; "
          f"distinct samples served: {len(seen)})")
    print(f"/status?refresh=1           {n_ref / 3.0:9.0f} req/s, {int(after_ref - after)} rounds in 3 s "
          "(in-flight rounds are shared)")
    ok = abs(rounds - ticks) <= 1
    print("one round per interval:", "yes" if ok else "NO")
    print(f"target >= 2000 req/s on /status: {'met' if rps >= 2000 else 'not met'} "
          f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=22.0)  # not a multiple of the interval
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--sample-interval-s", type=float, default=5.0)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = ap.parse_args()

    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    settings = Settings(kafka={"bootstrap_servers": args.bootstrap, "topic_prefix": prefix,  # type: ignore[arg-type]
                               "group_id": f"{prefix}group", "partitions": 12},
                        status={"sample_interval_s": args.sample_interval_s})
    topics = Topics.from_settings(settings.kafka)
    ensure_topics(settings.kafka, topics.specs())
    with EventProducer(settings.kafka) as producer:  # a backlog, so the round peeks records
        for i in range(200):
            producer.send(topics.job(list(Job)[i % 3]), str(uuid.uuid4()).encode(), b"{}")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "INGEST_KAFKA__BOOTSTRAP_SERVERS": args.bootstrap,
           "INGEST_KAFKA__TOPIC_PREFIX": prefix, "INGEST_KAFKA__GROUP_ID": f"{prefix}group",
           "INGEST_KAFKA__PARTITIONS": "12", "INGEST_STATUS__SAMPLE_INTERVAL_S": str(args.sample_interval_s),
           "INGEST_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "streams", "status", "serve", "--port", str(port)],
                            cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        return asyncio.run(bench(base, args.seconds, args.concurrency, args.sample_interval_s))
    finally:
        proc.terminate()
        proc.wait(20)


if __name__ == "__main__":
    sys.exit(main())
