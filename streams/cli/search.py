"""``prophoto-ingest search``: where an upload is, by UUID, owner id, gallery id or file name,
across pending records, dead letters and traces; the status page's search, run once here.

Exit codes: 0 something found, 1 nothing found, 2 bad usage, 3 Kafka unreachable.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from ..settings import Settings
from .context import EXIT_FAILED, EXIT_KAFKA, Ctx, pass_ctx


async def _run(settings: Settings, field: str, q: str) -> dict[str, Any]:
    from status import search
    from status.console import Console
    from status.service import StatusService

    query = search.parse({"field": field, "q": q})
    svc = StatusService(settings)
    con = Console(settings)
    s = search.Searcher(settings)
    try:
        return await s.search(query, svc, con)
    finally:
        s.close()
        con.close()
        svc.close()


def _line(h: dict[str, Any]) -> str:
    where = f"{h['topic']}/{h['partition']}@{h['offset']}" if h.get("topic") else "-"
    extra = ""
    if h["state"] == "dead letter":
        extra = f"  {h['error_class']} ({h['resolution']}) id {h['id']}"
    elif h["state"] == "pending":
        extra = f"  {h.get('type') or ''}"
    elif h["state"] == "traced":
        extra = f"  {h.get('job')} attempt {h.get('attempt')} {h.get('method')} " + \
            ("ok" if h.get("success") else str(h.get("failure_reason") or "failed"))
    return f"{h['state']:<12} {h.get('uuid') or '-':<36}  {where}{extra}"


@click.command()
@click.argument("field", type=click.Choice(["uuid", "owner", "gallery", "filename"]))
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer as JSON.")
@pass_ctx
def search(ctx: Ctx, field: str, query: str, as_json: bool) -> None:
    """Find uploads: pending records (the group's lag window, capped), dead letters, traces
    (by UUID only). Says how much of each it read, and "partial" when a cap cut it.

    \b
    Exit codes: 0 found, 1 nothing found, 2 bad usage, 3 Kafka unreachable.
    Example: prophoto-ingest search filename IMG_0042
    """
    from status.search import BadSearch

    try:
        answer = asyncio.run(_run(ctx.settings, field, query))
    except BadSearch as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(answer, indent=2, default=str))
    else:
        for h in answer["hits"]:
            click.echo(_line(h))
        for name, src in answer["sources"].items():
            said = src.get("error") or src.get("note")
            if said:
                click.echo(f"{name}: {said}", err=True)
        p = answer["sources"]["pending"]
        click.echo(f"{len(answer['hits'])} hit(s); read {p['read']} of {p['waiting']} pending records"
                   + ("; partial" if answer["partial"] else ""), err=True)
    if answer["sources"]["pending"].get("error"):
        sys.exit(EXIT_KAFKA)
    if not answer["hits"]:
        sys.exit(EXIT_FAILED)
