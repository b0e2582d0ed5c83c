"""The one command line: ``prophoto-ingest`` (or ``python -m streams``).

Exit codes: 0 success, 1 a command failed (the message says why), 2 bad usage,
3 Kafka unreachable.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import codec
from .clictx import EXIT_FAILED, EXIT_KAFKA, Ctx, failures, pass_ctx

# Re-exported for command modules written against cli.py; new ones import streams.clictx.
__all__ = ["EXIT_FAILED", "EXIT_KAFKA", "Ctx", "failures", "main", "pass_ctx"]
from .producer import EventProducer, PublishError, broker_answers, end_offsets, keys_written_since
from .storage import LocalStorage
from .topics import Job, ensure_topics
from .uploads import enhance_request, find_upload, ingest_request, stage_upload, unstage_upload


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING (default: INGEST_LOG_LEVEL).")
@pass_ctx
def main(ctx: Ctx, log_level: str | None) -> None:
    """prophoto-ingest: the photo-ingest job system on Kafka.

    \b
    Settings come from INGEST_* environment variables, e.g.
      INGEST_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092 INGEST_STORAGE__ROOT=var/storage
    """
    logging.basicConfig(
        level=(log_level or ctx.settings.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


# -- topics -------------------------------------------------------------------------------
@main.group()
def topics() -> None:
    """Create or describe the declared topics."""


@topics.command("create")
@pass_ctx
def topics_create(ctx: Ctx) -> None:
    """Create every declared topic that is missing; report partition mismatches.

    Example: prophoto-ingest topics create
    """
    with failures():
        created = ensure_topics(ctx.settings.kafka, ctx.topics.specs())
    for name in created:
        click.echo(f"created {name}")
    click.echo(f"{len(ctx.topics.specs())} topics declared, {len(created)} created")


@topics.command("describe")
@pass_ctx
def topics_describe(ctx: Ctx) -> None:
    """List declared topics with their partition counts on the broker.

    Example: prophoto-ingest topics describe
    """
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(ctx.settings.kafka.confluent_config())
    try:
        md = admin.list_topics(timeout=ctx.settings.kafka.request_timeout_s)
    except Exception as exc:  # noqa: BLE001 - any client error means unreachable here
        click.secho(f"error: Kafka unreachable: {exc}", fg="red", err=True)
        sys.exit(EXIT_KAFKA)
    for spec in ctx.topics.specs():
        t = md.topics.get(spec.name)
        have = "missing" if t is None or t.error else f"{len(t.partitions)} partitions"
        click.echo(f"{spec.name:32} declared {spec.partitions:3}  broker: {have}")


# -- worker -------------------------------------------------------------------------------
@main.command()
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
    from .app import IngestWorker, create_app
    from .logs import logging_config
    from .runtime import Limits, WorkerRuntime, keep_freed_memory

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
    from confluent_kafka import KafkaException

    with failures(unreachable=(PublishError, KafkaException)):
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


@main.command()
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


def _pause_topics(ctx: Ctx, names: tuple[str, ...]) -> list[str]:
    with failures():
        return [ctx.topics.job(job) for job in ctx.topics.parse_jobs(list(names))]


def _current_pauses(ctx: Ctx) -> dict[str, Any]:
    from confluent_kafka import KafkaException

    from .pauses import PauseTail

    with failures(unreachable=(PublishError, KafkaException)):
        tail = PauseTail(ctx.settings.kafka, ctx.topics.pauses, f"pauses-cli-{os.getpid()}")
        try:
            return dict(tail.update(ctx.settings.kafka.request_timeout_s))
        finally:
            tail.close()


@main.command()
@click.argument("names", nargs=-1)
@click.option("--reason", default="", help="Why, shown in status and the workers' logs.")
@pass_ctx
def pause(ctx: Ctx, names: tuple[str, ...], reason: str) -> None:
    """Hold back job topics on every worker, now and for workers that start later (like
    horizon:pause). Their records wait, nothing is skipped; status says "paused by
    operator". Without a topic: list the pauses in force.

    Example: prophoto-ingest pause ingest-preview --reason "storage maintenance"
    """
    import socket

    from .pauses import publish

    if not names:
        current = _current_pauses(ctx)
        for p in sorted(current.values(), key=lambda p: p.topic):
            click.echo(f"{p.topic}: {p.describe()}")
        if not current:
            click.echo("no topic is paused")
        return
    topics = _pause_topics(ctx, names)
    with failures():
        publish(ctx.settings.kafka, ctx.topics.pauses, topics, paused=True,
                by=f"{socket.gethostname()}:{os.getpid()}", reason=reason)
    click.echo(f"paused {', '.join(topics)}: workers hold their jobs back within a second or two")


@main.command("continue")
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def continue_(ctx: Ctx, names: tuple[str, ...]) -> None:
    """Let paused job topics run again on every worker (like horizon:continue).

    Example: prophoto-ingest continue ingest-preview
    """
    import socket

    from .pauses import publish

    topics = _pause_topics(ctx, names)
    with failures():
        publish(ctx.settings.kafka, ctx.topics.pauses, topics, paused=False,
                by=f"{socket.gethostname()}:{os.getpid()}")
    click.echo(f"continued {', '.join(topics)}")


# -- publishing ---------------------------------------------------------------------------
def _publish(ctx: Ctx, job: Job, events: list[Any]) -> None:
    topic = ctx.topics.job(job)
    with failures(), EventProducer(ctx.settings.kafka) as producer:
        for ev in events:
            producer.send(topic, ev.key, codec.encode(ev))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--owner", default=None, help="Owner id to put on the events.")
@click.option("--gallery", default=None, help="Gallery id to put on the events.")
@click.option("--wait", "wait_s", type=float, default=0, help="Wait up to N s for previews.")
@pass_ctx
def upload(ctx: Ctx, paths: tuple[Path, ...], owner: str | None, gallery: str | None,
           wait_s: float) -> None:
    """Stage files in the uploads area and publish upload events, as the web app does.

    Prints one line per file: UUID and original name.

    Example: prophoto-ingest upload photos/*.jpg --wait 60
    """
    storage = ctx.storage
    kafka = ctx.settings.kafka
    topic = ctx.topics.job(Job.PREVIEW)
    if not broker_answers(kafka, kafka.request_timeout_s):
        click.secho(f"error: no Kafka broker answered at {kafka.bootstrap_servers}; nothing "
                    "was staged", fg="red", err=True)
        sys.exit(EXIT_KAFKA)
    with failures():
        storage.ensure()
        since = end_offsets(kafka, topic, kafka.request_timeout_s)
        events = [stage_upload(storage, p, owner_id=owner, gallery_id=gallery) for p in paths]
    try:
        with EventProducer(kafka) as producer:
            for ev in events:
                producer.send(topic, ev.key, codec.encode(ev))
    except PublishError as exc:
        _publish_failed(ctx, events, exc, since)
    for ev in events:
        click.echo(f"{ev.uuid}  {ev.original_filename}")
    if wait_s > 0:
        _wait_for(wait_s, [(ev.uuid, storage.preview_path(ev.uuid)) for ev in events], storage)


def _publish_failed(ctx: Ctx, events: list[Any], exc: PublishError, since: dict[int, int]) -> None:
    """Undo only what was surely not announced: a file whose event may be on the broker
    stays, or its preview job would find no upload."""
    from confluent_kafka import KafkaException

    kafka, topic, storage = ctx.settings.kafka, ctx.topics.job(Job.PREVIEW), ctx.storage
    delivered, uncertain = set(exc.delivered_keys), set(exc.uncertain_keys) - exc.delivered_keys
    if uncertain:
        try:  # ask the broker what it holds
            found = keys_written_since(kafka, topic, since, uncertain, kafka.request_timeout_s)
            delivered |= found
            uncertain = set()
        except KafkaException:
            pass  # it does not answer: keep them
    lost = [ev for ev in events if ev.key not in delivered and ev.key not in uncertain]
    for ev in lost:
        unstage_upload(storage, ev)
    for ev in events:
        if ev.key in delivered:
            click.echo(f"{ev.uuid}  {ev.original_filename}")
        elif ev.key in uncertain:
            click.echo(f"{ev.uuid}  {ev.original_filename}  (unknown: may be published)")
    msg = (f"error: {exc}\n{len(lost)} of {len(events)} files were not uploaded (staged copies "
           "removed); run the command again for them")
    if uncertain:
        msg += (f"\n{len(uncertain)} may have been published (the broker did not confirm and does "
                "not answer): their staged copies are kept; check with 'prophoto-ingest status' "
                "before uploading them again")
    click.secho(msg, fg="red", err=True)
    sys.exit(EXIT_KAFKA)


def _wait_for(wait_s: float, targets: list[tuple[str, Path]], storage: LocalStorage) -> None:
    deadline = time.monotonic() + wait_s
    pending = dict(targets)
    while pending and time.monotonic() < deadline:
        for uid, path in list(pending.items()):
            if path.exists():
                click.echo(f"ready {uid}  {path}")
                del pending[uid]
        time.sleep(0.2)
    if pending:
        click.secho(f"{len(pending)} not ready after {wait_s:g} s (see 'failed' and the worker log)",
                    fg="yellow", err=True)
        sys.exit(EXIT_FAILED)


def _staged(ctx: Ctx, uuids: tuple[str, ...], build: Callable[[Any], Any]) -> list[Any]:
    with failures():
        return [build(find_upload(ctx.storage, u)) for u in uuids]


@main.command()
@click.argument("uuids", nargs=-1, required=True)
@pass_ctx
def confirm(ctx: Ctx, uuids: tuple[str, ...]) -> None:
    """The user confirmed these uploads: ingest them into permanent storage.

    Example: prophoto-ingest confirm 3f2c...-...
    """
    _publish(ctx, Job.INGEST, _staged(ctx, uuids, ingest_request))
    click.echo(f"confirmed {len(uuids)}")


@main.command()
@click.argument("uuids", nargs=-1, required=True)
@click.option("--long-edge", type=int, default=None, help="Long edge in px (default: setting).")
@pass_ctx
def enhance(ctx: Ctx, uuids: tuple[str, ...], long_edge: int | None) -> None:
    """Ask for higher-resolution previews.

    Example: prophoto-ingest enhance 3f2c...-... --long-edge 4096
    """
    _publish(ctx, Job.ENHANCE, _staged(ctx, uuids, lambda u: enhance_request(u, long_edge)))
    click.echo(f"enhance requested for {len(uuids)}")


# Commands that live beside their concept register here, one line each.
from . import cli_traces  # noqa: E402, F401  (the `traces` group)
from .cli_failures import clear, failed, flush, forget, replay  # noqa: E402

for _cmd in (failed, replay, forget, flush, clear):
    main.add_command(_cmd)
from .cli_process import process; main.add_command(process)  # noqa: E402, E702, I001
from .cli_status import status; main.add_command(status)  # noqa: E402, E702, I001
from .cli_search import search; main.add_command(search)  # noqa: E402, E702, I001
