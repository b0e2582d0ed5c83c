"""``prophoto-ingest topics``: create and describe the declared topics."""

from __future__ import annotations

import sys

import click

from .. import kafka
from ..topics import ensure_topics
from .context import EXIT_KAFKA, Ctx, failures, pass_ctx


# -- topics -------------------------------------------------------------------------------
@click.group()
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
    admin = kafka.admin(ctx.settings.kafka)
    try:
        md = admin.list_topics(timeout=ctx.settings.kafka.request_timeout_s)
    except Exception as exc:  # noqa: BLE001 - any client error means unreachable here
        click.secho(f"error: Kafka unreachable: {exc}", fg="red", err=True)
        sys.exit(EXIT_KAFKA)
    for spec in ctx.topics.specs():
        t = md.topics.get(spec.name)
        have = "missing" if t is None or t.error else f"{len(t.partitions)} partitions"
        click.echo(f"{spec.name:32} declared {spec.partitions:3}  broker: {have}")
