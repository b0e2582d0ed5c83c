"""``python -m status``: the status service, as ``prophoto-ingest status serve`` runs it."""

from __future__ import annotations

import logging

from streams.settings import load

from .web import run

settings = load()
logging.basicConfig(level=settings.log_level.upper(),
                    format="%(asctime)s %(levelname)s %(name)s %(message)s")
run(settings)
