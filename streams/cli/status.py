"""``prophoto-ingest status``: the status service and a one-shot health check.

``status check`` exit codes: 0 processing or idle, 1 pending, 2 stalled, 3 unknown (Kafka
unreachable or late). Click's own usage errors also exit 2; they print usage first.
"""

from __future__ import annotations

import asyncio
import sys

import click

from .context import Ctx, pass_ctx


@click.group()
def status() -> None:
    """Worker health from Kafka's offsets: the dashboard service and a one-shot check."""


@status.command()
@click.option("--host", default=None, help="Interface to bind (default: INGEST_STATUS__HOST).")
@click.option("--port", type=int, default=None, help="Port (default: INGEST_STATUS__PORT, 8080).")
@pass_ctx
def serve(ctx: Ctx, host: str | None, port: int | None) -> None:
    """Serve the dashboard (/), /status, /healthz, /readyz and /metrics.

    Example: prophoto-ingest status serve --host 0.0.0.0 --port 8080
    """
    from status.web import run

    run(ctx.settings, host=host, port=port)


@status.command()
@click.option("--watch", "watch_s", type=float, default=0.0, show_default=True,
              help="Look again for this many seconds before judging: a worker that holds its "
                   "partitions but stopped committing shows as stalled only after the stall "
                   "threshold of watching.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole status document.")
@pass_ctx
def check(ctx: Ctx, watch_s: float, as_json: bool) -> None:
    """Judge the workers once; print one line; the exit code says the state.

    \b
    Exit codes: 0 processing or idle, 1 pending, 2 stalled, 3 unknown.
    Example: prophoto-ingest status check --watch 40 || alert "ingest workers: $?"
    """
    from status.health import EXIT_CODE
    from status.report import StatusReport
    from status.service import StatusService

    settings = ctx.settings

    async def run() -> StatusReport:
        svc = StatusService(settings)
        try:
            loop = asyncio.get_running_loop()
            until = loop.time() + watch_s
            report = await svc.report(refresh=True)
            while loop.time() < until and report.kafka.reachable:
                await asyncio.sleep(min(1.0, max(0.0, until - loop.time())))
                report = await svc.report(refresh=True)
            return report
        finally:
            svc.close()

    report = asyncio.run(run())
    w = report.worker
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        click.echo(f"{w.status.value}: {w.hint} (pending {report.jobs.pending}, "
                   f"ingest pending {report.jobs.ingest_pending}, failed {report.jobs.failed})")
    sys.exit(EXIT_CODE[w.status])
