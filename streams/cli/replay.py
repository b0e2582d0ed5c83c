"""Operator commands for failures, named after the queue commands operators know:
``failed`` (queue:failed), ``replay`` (queue:retry), ``forget``, ``flush``, ``clear``."""

from __future__ import annotations

import json
import sys
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

import click

from ..errors import KafkaUnavailable
from ..replay import DeadLetterEntry, DeadLetters, Filter
from .context import EXIT_FAILED, Ctx, failures, pass_ctx


def _since(value: str | None) -> datetime | None:
    """``2026-11-28T10:00`` or a duration back from now: ``30m``, ``2h``, ``7d``."""
    if not value:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: use an ISO time or 30m / 2h / 7d") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _store(ctx: Ctx) -> DeadLetters:
    return DeadLetters(ctx.settings.kafka, ctx.topics)


def _kafka_failures() -> AbstractContextManager[None]:
    return failures(failed=(), unreachable=(KafkaUnavailable,))


def _load(ctx: Ctx, flt: Filter) -> list[DeadLetterEntry]:
    with _kafka_failures():
        return [e for e in _store(ctx).entries() if flt.match(e)]


def _filter_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--gallery", default=None, help="Only this gallery id (the event's).")(f)
    f = click.option("--owner", default=None, help="Only this owner id (the event's).")(f)
    f = click.option("--uuid", default=None, help="Only this image UUID.")(f)
    f = click.option("--since", default=None, help="Failed at or after: ISO time or 30m/2h/7d.")(f)
    f = click.option("--error", default=None, help="Substring of the error class or message.")(f)
    f = click.option("--topic", "topics", multiple=True, help="Source topic (repeatable).")(f)
    return f


def _table(entries: list[DeadLetterEntry]) -> None:
    click.echo(f"{'ID':16}  {'UUID':36}  {'TOPIC':16}  {'FAILED AT':24}  TRIES  ERROR")
    for e in entries:
        s = e.summary()
        flag = click.style(" [poison]", fg="red") if e.poison else ""
        msg = f"{s['error_class']}: {e.error_message}".replace("\n", " ")[:80]
        click.echo(f"{e.id:16}  {e.uuid[:36]:36}  {e.source_topic[:16]:16}  {e.failed_at[:24]:24}  "
                   f"{e.attempts:5}  {msg}{flag}")


@click.command()
@_filter_options
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@pass_ctx
def failed(ctx: Ctx, topics: tuple[str, ...], error: str | None, since: str | None,
           uuid: str | None, owner: str | None, gallery: str | None, as_json: bool) -> None:
    """List unresolved dead letters.

    Entries marked [poison] failed again after a replay; replay skips them without --force.

    Example: prophoto-ingest failed --topic ingest-preview --since 2h
    """
    entries = _load(ctx, Filter(topics=topics, error=error, since=_since(since), uuid=uuid,
                                owner=owner, gallery=gallery))
    if as_json:
        click.echo(json.dumps([e.summary() for e in entries], indent=2))
    elif entries:
        _table(entries)
    else:
        click.echo("no unresolved dead letters")


@click.command()
@click.argument("ids", nargs=-1)
@_filter_options
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; send nothing.")
@click.option("--limit", type=int, default=None, help="Replay at most N entries.")
@click.option("--rate", type=float, default=None, help="At most N records per second.")
@click.option("--force", is_flag=True, help="Also replay resolved and poison entries.")
@pass_ctx
def replay(ctx: Ctx, ids: tuple[str, ...], topics: tuple[str, ...], error: str | None,
           since: str | None, uuid: str | None, owner: str | None, gallery: str | None,
           dry_run: bool, limit: int | None, rate: float | None, force: bool) -> None:
    """Send dead letters back to their source topic: IDS, 'all', or a filter.

    The record goes back with its key and value, its attempt count carried on and a
    header naming the dead letter it replays; the entry is then resolved.

    Example: prophoto-ingest replay all --topic ingest-preview --rate 50
    """
    if not ids and not (topics or error or since or uuid or owner or gallery):
        raise click.UsageError("name dead-letter IDs, 'all', or a filter "
                               "(--topic/--error/--since/--uuid/--owner/--gallery)")
    picked = tuple(i for i in ids if i != "all")
    flt = Filter(topics=topics, error=error, since=_since(since), uuid=uuid, ids=picked,
                 owner=owner, gallery=gallery)
    store = _store(ctx)
    with _kafka_failures():
        entries = [e for e in store.entries(include_resolved=force) if flt.match(e)]
        if picked and not force:
            resolved = store.resolved()
            for i in picked:
                if i in resolved:
                    click.echo(f"skip {i}: already resolved ({resolved[i].get('how')}); --force to resend")
    poison = [e for e in entries if e.poison and not force]
    for e in poison:
        click.echo(f"skip {e.id}: poison ({e.uuid} failed again after a replay); --force to resend")
    entries = [e for e in entries if force or not e.poison]
    if limit is not None:
        entries = entries[:limit]
    if dry_run:
        for e in entries:
            click.echo(f"would replay {e.id} {e.uuid} -> {e.source_topic}")
        click.echo(f"dry run: {len(entries)} would be replayed, nothing sent")
        return
    with _kafka_failures(), click.progressbar(length=len(entries), label="replaying",
                                              file=sys.stderr) as bar:
        sent = store.replay(entries, rate=rate, progress=lambda _e: bar.update(1))
    skipped = len(entries) - len(sent)
    click.echo(f"replayed {len(sent)}" + (f" ({skipped} resolved meanwhile or by an earlier, "
                                          "interrupted replay: not sent again)" if skipped else ""))


@click.command()
@click.argument("ids", nargs=-1, required=True)
@pass_ctx
def forget(ctx: Ctx, ids: tuple[str, ...]) -> None:
    """Resolve dead letters without replaying them.

    Example: prophoto-ingest forget 3c1d9a0b2e4f5a6b
    """
    store = _store(ctx)
    known = {e.id for e in _load(ctx, Filter())}
    unknown = [i for i in ids if i not in known]
    for i in unknown:
        click.secho(f"no unresolved dead letter {i}", fg="yellow", err=True)
    n = store.resolve([i for i in ids if i in known], "forget")
    click.echo(f"forgot {n}")
    if unknown:
        sys.exit(EXIT_FAILED)


@click.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_filter_options
@pass_ctx
def flush(ctx: Ctx, yes: bool, topics: tuple[str, ...], error: str | None, since: str | None,
          uuid: str | None, owner: str | None, gallery: str | None) -> None:
    """Resolve every unresolved dead letter (or those matching a filter) without replay.

    Example: prophoto-ingest flush --yes
    """
    entries = _load(ctx, Filter(topics=topics, error=error, since=_since(since), uuid=uuid,
                                owner=owner, gallery=gallery))
    if not entries:
        click.echo("nothing to flush")
        return
    if not yes:
        click.confirm(f"resolve {len(entries)} dead letters without replaying them?", abort=True)
    n = _store(ctx).resolve([e.id for e in entries], "flush")
    click.echo(f"flushed {n}")


@click.command()
@click.argument("topic")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def clear(ctx: Ctx, topic: str, yes: bool) -> None:
    """Skip a topic's pending backlog: move the group's committed offsets to the end.

    Workers must be stopped (Kafka refuses to move offsets of an active group).

    Example: prophoto-ingest clear ingest-enhance --yes
    """
    names = {s.name for s in ctx.topics.specs()}
    name = topic if topic in names else ctx.topics.prefix + topic
    if name not in names:
        raise click.BadParameter(f"{topic!r} is not a declared topic", param_hint="TOPIC")
    store = _store(ctx)
    group = ctx.settings.kafka.group_id
    with failures(failed=(ValueError,), unreachable=(KafkaUnavailable,)):
        pending = store.clear(group, name, apply=False)
        total = sum(pending.values())
        if total == 0:
            click.echo(f"{name}: nothing pending for group {group}")
            return
        if not yes:
            click.confirm(f"skip {total} pending records of {name} for group {group}?", abort=True)
        skipped = store.clear(group, name, apply=True)
    for p, n in sorted(skipped.items()):
        if n:
            click.echo(f"{name}[{p}]: skipped {n}")
    click.echo(f"{name}: skipped {sum(skipped.values())} records")
