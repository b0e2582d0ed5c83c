"""Log output: plain text for people, or one JSON object per line for log shippers
(``INGEST_WORKER__LOG_JSON=true``). Job lines carry their fields as ``extra={"fields": ...}``
so both formats get them without parsing messages."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            body.update(fields)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def logging_config(level: str, as_json: bool) -> dict[str, Any]:
    """A dictConfig for faust's worker (it configures logging itself at start)."""
    fmt: dict[str, Any] = (
        {"()": "streams.logs.JsonFormatter"} if as_json
        else {"format": "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": fmt},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default",
                                 "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["default"]},
    }
