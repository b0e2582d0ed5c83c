"""``prophoto-ingest traces``: run the trace sink, read one upload's timeline, query the store.

    prophoto-ingest traces sink                      the sink process (one per chDB store)
    prophoto-ingest traces 3f2c...-...               that upload's attempts, as a table
    prophoto-ingest traces sql "SELECT ..."          any read-only query; --file, --format
    prophoto-ingest traces report                    the SQL pack's headline queries

Readers go through the sink's query endpoint when a sink owns the chDB store and open the
store themselves when none does (tracestore/store.py).
"""

from __future__ import annotations

import csv
import io
import json
import signal
import sys
import threading
import uuid as uuid_mod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import click

from tracestore.errors import TraceStoreError

from .context import EXIT_FAILED, Ctx, failures, pass_ctx

FORMATS = ("table", "csv", "json")


class _TracesGroup(click.Group):
    """``traces UUID`` is short for ``traces timeline UUID``."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and _is_uuid(args[0]):
            args = ["timeline", *args]
        return super().resolve_command(ctx, args)


def _is_uuid(text: str) -> bool:
    try:
        uuid_mod.UUID(text)
    except ValueError:
        return False
    return True


def _store_failures() -> AbstractContextManager[None]:
    return failures(failed=(TraceStoreError, ConnectionError, OSError))


@click.group(cls=_TracesGroup)
def traces() -> None:
    """Trace events in ClickHouse: the sink, one upload's timeline, SQL and the report.

    \b
    Examples:
      prophoto-ingest traces sink
      prophoto-ingest traces 3f2c0b1e-5d4a-4c1b-9a8e-0123456789ab
      prophoto-ingest traces sql "SELECT job, count() FROM traces FINAL GROUP BY job"
      prophoto-ingest traces report --format json
    """


@traces.command()
@pass_ctx
def sink(ctx: Ctx) -> None:
    """Consume the traces topic into ClickHouse in batches (the store's one writer).

    Batch size and interval: INGEST_CLICKHOUSE__FLUSH_ROWS, INGEST_CLICKHOUSE__FLUSH_INTERVAL_S.
    Stops cleanly on SIGTERM or Ctrl-C after storing and committing what it holds.
    Exit codes: 0 stopped, 1 store busy or failing, 3 Kafka unreachable.

    Example: prophoto-ingest traces sink
    """
    from confluent_kafka import KafkaException

    from tracestore import sink as sink_mod

    from ..errors import KafkaUnavailable
    from ..topics import TopicMismatch
    from ..worker.runner import worker_id

    settings = ctx.settings
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def ready(url: str | None) -> None:
        where = f", queries on {url}" if url else ""
        click.echo(f"traces sink: group {sink_mod.sink_group(settings)}, store "
                   f"{_store_name(ctx)}{where}", err=True)

    # A raw KafkaException too: the sink's consumer is librdkafka's own.
    with failures(failed=(TopicMismatch,), unreachable=(KafkaUnavailable, KafkaException)), \
            _store_failures():
        stats = sink_mod.run(settings, stop, worker=worker_id(settings.worker.id), on_ready=ready)
    click.echo(f"traces sink stopped: {stats.consumed} consumed, {stats.written} written, "
               f"{stats.dead_lettered} dead-lettered", err=True)


def _store_name(ctx: Ctx) -> str:
    ch = ctx.settings.clickhouse
    return str(ch.path) if ch.backend == "chdb" else f"{ch.host}:{ch.port}/{ch.database}"


@traces.command("timeline")
@click.argument("uuid")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_ctx
def timeline(ctx: Ctx, uuid: str, fmt: str) -> None:
    """One upload's attempts, oldest first (also: ``traces UUID``).

    Exits 1 when nothing is recorded for that UUID.

    Example: prophoto-ingest traces 3f2c0b1e-5d4a-4c1b-9a8e-0123456789ab
    """
    from tracestore.reader import open_reader

    with _store_failures():
        reader = open_reader(ctx.settings)
        try:
            rows = reader.timeline(uuid)
        finally:
            reader.close()
    if not rows:
        click.secho(f"no traces for {uuid} (is the sink running? see 'traces sink')", fg="yellow", err=True)
        sys.exit(EXIT_FAILED)
    columns = list(rows[0])
    click.echo(render(columns, [tuple(r.values()) for r in rows], fmt), nl=False)


@traces.command()
@click.argument("query", required=False)
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the query from a file (e.g. one of tracestore/sql/).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A query parameter, for {name:Type} placeholders. Repeatable.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_ctx
def sql(ctx: Ctx, query: str | None, file: Path | None, params: tuple[str, ...], fmt: str) -> None:
    """Run one read-only query against the trace store.

    Tables: traces (read it as `traces FINAL`), traces_per_minute.

    \b
    Examples:
      prophoto-ingest traces sql "SELECT job, count() FROM traces FINAL GROUP BY job"
      prophoto-ingest traces sql --file tracestore/sql/timeline.sql --param uuid=3f2c... --format csv
    """
    from tracestore.reader import open_reader

    if (query is None) == (file is None):
        raise click.UsageError("give a query or --file, not both")
    text = file.read_text(encoding="utf-8") if file is not None else str(query)
    bound: dict[str, object] = {}
    for p in params:
        name, sep, value = p.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--param wants NAME=VALUE, got {p!r}")
        bound[name] = value
    with _store_failures():
        reader = open_reader(ctx.settings)
        try:
            columns, rows = reader.query(text, bound or None)
        finally:
            reader.close()
    click.echo(render(columns, rows, fmt), nl=False)


@traces.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_ctx
def report(ctx: Ctx, fmt: str) -> None:
    """The SQL pack's headline queries, one section each (JSON: one object keyed by name).

    Example: prophoto-ingest traces report
    """
    from tracestore import pack
    from tracestore.reader import open_reader

    results: dict[str, tuple[str, list[str], list[tuple[object, ...]]]] = {}
    with _store_failures():
        reader = open_reader(ctx.settings)
        try:
            for q in pack.headline():
                columns, rows = reader.query(q.sql)
                results[q.name] = (q.answers, columns, rows)
        finally:
            reader.close()
    if fmt == "json":
        doc = {name: [dict(zip(cols, r, strict=True)) for r in rows]
               for name, (_, cols, rows) in results.items()}
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    for name, (answers, cols, rows) in results.items():
        if fmt == "table":
            click.secho(f"== {name}", bold=True)
            click.echo(f"   {answers}")
        else:
            click.echo(f"# {name}")
        click.echo(render(cols, rows, fmt))


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([dict(zip(columns, r, strict=True)) for r in rows], indent=2, default=str) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows([[_csv_cell(v) for v in r] for r in rows])
        return buf.getvalue()
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    widths = [min(w, 60) for w in widths]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for row in cells:
        lines.append("  ".join(_clip(c, w).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


def _cell(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _csv_cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
