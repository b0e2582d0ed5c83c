"""``prophoto-ingest worker`` runs a worker process; ``restart`` asks every running worker to
finish its jobs and exit."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import click

from ..producer import EventProducer
from ..topics import ensure_topics
from .context import EXIT_FAILED, EXIT_KAFKA, Ctx, failures, pass_ctx


# -- worker -------------------------------------------------------------------------------
@click.command()
@click.option("--topics", "topic_list", default="ingest,ingest-preview,ingest-enhance",
              show_default=True, help="Job topics to consume, in priority order.")
@click.option("--concurrency", type=int, default=None, help="Jobs in flight at once.")
@click.option("--timeout", type=float, default=None, help="Seconds a job may run (then retried).")
@click.option("--tries", type=int, default=None, help="Attempts before a dead letter.")
@click.option("--max-jobs", type=int, default=None, help="Stop after N jobs.")
@click.option("--max-time", type=float, default=None, help="Stop after N seconds.")
@click.option("--memory", type=float, default=None, help="Stop (exit 12) above N MB resident.")
@click.option("--once", is_flag=True, help="Process one job and stop.")
@click.option("--stop-when-empty", is_flag=True, help="Stop when the assigned partitions have no lag.")
@click.option("-v", "--verbose", is_flag=True, help="Log one line per job.")
@pass_ctx
def worker(ctx: Ctx, topic_list: str, concurrency: int | None, timeout: float | None,
           tries: int | None, max_jobs: int | None, max_time: float | None, memory: float | None,
           once: bool, stop_when_empty: bool, verbose: bool) -> None:
    """Run a worker: consume job topics, make previews, ingest originals.

    Start more processes with the same settings to share the partitions. On SIGTERM or
    SIGINT the worker finishes its jobs in flight, commits and leaves the group; a second
    signal stops it at once. Exit codes: 0 stopped normally (signal, a limit, restart),
    12 over --memory, 13 every job thread stuck past --timeout (let the supervisor restart
    it), 3 Kafka went away while it started, 1 it could not start or stopped on its own.

    Example: prophoto-ingest worker --topics ingest,ingest-preview --concurrency 4 --max-jobs 1000
    """
    from ..logs import logging_config
    from ..worker.app import IngestWorker, create_app
    from ..worker.runtime import Limits, WorkerRuntime, keep_freed_memory

    keep_freed_memory()
    overrides: dict[str, Any] = {}
    for key, value in (("concurrency", concurrency), ("timeout_s", timeout), ("tries", tries)):
        if value is not None:
            overrides[key] = value
    settings = ctx.settings
    if overrides:
        settings = settings.model_copy(
            update={"worker": settings.worker.model_copy(update=overrides)}
        )
    w = settings.worker
    with failures():
        jobs = ctx.topics.parse_jobs(topic_list)
        ensure_topics(settings.kafka, ctx.topics.specs())
    if verbose:
        logging.getLogger("streams.jobs").setLevel(logging.INFO)
    elif logging.getLogger().level > logging.DEBUG:
        logging.getLogger("streams.jobs").setLevel(logging.WARNING)
    runtime = WorkerRuntime(
        kafka=settings.kafka, topics=ctx.topics, jobs=jobs, concurrency=w.concurrency,
        grace_s=w.grace_s or w.timeout_s,
        limits=Limits(max_jobs=1 if once else max_jobs, max_time_s=max_time, memory_mb=memory,
                      stop_when_empty=stop_when_empty),
        lag_threshold=w.priority_lag_threshold, health_port=w.health_port,
        timeout_s=w.timeout_s, heartbeat_s=w.heartbeat_s,
    )
    with failures():  # PauseTail raises KafkaUnavailable
        runtime.load_pauses()
    app, services = create_app(settings, jobs, runtime)
    runtime.worker_id = services.worker_id
    click.echo(f"worker {services.worker_id}: group {settings.kafka.group_id}, topics "
               + ", ".join(ctx.topics.job(j) for j in jobs), err=True)
    fw = IngestWorker(app, runtime, loglevel=settings.log_level.lower(), quiet=True,
                      logging_config=logging_config(settings.log_level, w.log_json))
    try:
        fw.execute_from_commandline()
    except SystemExit:
        pass
    finally:
        services.executor.shutdown(wait=False, cancel_futures=True)
        if services.io is not None:
            services.io.shutdown(wait=False, cancel_futures=True)
    if runtime.stop_reason is None:
        # Nobody asked it to stop (signal, limit, restart): faust gave up, e.g. the broker
        # went away while it started. Say so, and exit non-zero for the supervisor.
        crash = getattr(app, "_crash_reason", None) or getattr(fw, "_crash_reason", None)
        runtime.stop_reason = f"stopped on its own: {crash!r}" if crash else "stopped on its own"
        runtime.exit_code = EXIT_KAFKA if _kafka_trouble(crash) else EXIT_FAILED
    click.echo(f"worker {services.worker_id}: stopped ({runtime.stop_reason}), "
               f"{runtime.done} jobs, exit {runtime.exit_code}", err=True)
    if runtime.stuck:
        # Interpreter exit would join the stuck job threads and never return; the offsets
        # are committed and the group left by now, so leave without them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(runtime.exit_code)
    sys.exit(runtime.exit_code)


def _kafka_trouble(exc: BaseException | None) -> bool:
    from aiokafka.errors import KafkaError

    return isinstance(exc, (KafkaError, ConnectionError)) or "Kafka" in type(exc).__name__


@click.command()
@pass_ctx
def restart(ctx: Ctx) -> None:
    """Tell every running worker to finish its current jobs and exit (like queue:restart).

    Workers started after this command are not affected. A supervisor, systemd or
    Kubernetes then starts them again, on new code.

    Example: prophoto-ingest restart
    """
    import json as _json
    import os
    import socket

    at_ms = int(time.time() * 1000)
    body = {"command": "restart", "at_ms": at_ms, "by": f"{socket.gethostname()}:{os.getpid()}"}
    with failures(), EventProducer(ctx.settings.kafka) as producer:
        producer.send(ctx.topics.control, b"restart", _json.dumps(body).encode())
    click.echo("restart broadcast: running workers will finish their jobs and exit")
