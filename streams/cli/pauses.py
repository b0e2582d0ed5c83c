"""``prophoto-ingest pause`` / ``continue``: hold back job topics on every worker, and let
them run again."""

from __future__ import annotations

import os
from typing import Any

import click

from .context import Ctx, failures, pass_ctx


def _pause_topics(ctx: Ctx, names: tuple[str, ...]) -> list[str]:
    with failures():
        return [ctx.topics.job(job) for job in ctx.topics.parse_jobs(list(names))]


def _current_pauses(ctx: Ctx) -> dict[str, Any]:
    from ..pauses import PauseTail

    with failures():
        tail = PauseTail(ctx.settings.kafka, ctx.topics.pauses, f"pauses-cli-{os.getpid()}")
        try:
            return dict(tail.update(ctx.settings.kafka.request_timeout_s))
        finally:
            tail.close()


@click.command()
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

    from ..pauses import publish

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


@click.command("continue")
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def continue_(ctx: Ctx, names: tuple[str, ...]) -> None:
    """Let paused job topics run again on every worker (like horizon:continue).

    Example: prophoto-ingest continue ingest-preview
    """
    import socket

    from ..pauses import publish

    topics = _pause_topics(ctx, names)
    with failures():
        publish(ctx.settings.kafka, ctx.topics.pauses, topics, paused=False,
                by=f"{socket.gethostname()}:{os.getpid()}")
    click.echo(f"continued {', '.join(topics)}")
