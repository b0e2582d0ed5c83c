"""Publishing as the web app does: ``upload`` (stage and announce files), ``confirm``
(ingest them), ``enhance`` (a larger preview)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .. import codec
from ..errors import KafkaUnavailable
from ..producer import EventProducer, PublishError, broker_answers, end_offsets, keys_written_since
from ..storage import LocalStorage
from ..topics import Job
from ..uploads import enhance_request, find_upload, ingest_request, stage_upload, unstage_upload
from .context import EXIT_FAILED, EXIT_KAFKA, Ctx, failures, pass_ctx


# -- publishing ---------------------------------------------------------------------------
def _publish(ctx: Ctx, job: Job, events: list[Any]) -> None:
    topic = ctx.topics.job(job)
    with failures(), EventProducer(ctx.settings.kafka) as producer:
        for ev in events:
            producer.send(topic, ev.key, codec.encode(ev))


@click.command()
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
    kafka, topic, storage = ctx.settings.kafka, ctx.topics.job(Job.PREVIEW), ctx.storage
    delivered, uncertain = set(exc.delivered_keys), set(exc.uncertain_keys) - exc.delivered_keys
    if uncertain:
        try:  # ask the broker what it holds
            found = keys_written_since(kafka, topic, since, uncertain, kafka.request_timeout_s)
            delivered |= found
            uncertain = set()
        except KafkaUnavailable:
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


@click.command()
@click.argument("uuids", nargs=-1, required=True)
@pass_ctx
def confirm(ctx: Ctx, uuids: tuple[str, ...]) -> None:
    """The user confirmed these uploads: ingest them into permanent storage.

    Example: prophoto-ingest confirm 3f2c...-...
    """
    _publish(ctx, Job.INGEST, _staged(ctx, uuids, ingest_request))
    click.echo(f"confirmed {len(uuids)}")


@click.command()
@click.argument("uuids", nargs=-1, required=True)
@click.option("--long-edge", type=int, default=None, help="Long edge in px (default: setting).")
@pass_ctx
def enhance(ctx: Ctx, uuids: tuple[str, ...], long_edge: int | None) -> None:
    """Ask for higher-resolution previews.

    Example: prophoto-ingest enhance 3f2c...-... --long-edge 4096
    """
    _publish(ctx, Job.ENHANCE, _staged(ctx, uuids, lambda u: enhance_request(u, long_edge)))
    click.echo(f"enhance requested for {len(uuids)}")
