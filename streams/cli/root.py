"""The root command group: settings and logging for every command below it; the commands
are registered on it in ``streams/cli/__init__.py``.
"""

from __future__ import annotations

import logging

import click

from .context import Ctx, pass_ctx


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
