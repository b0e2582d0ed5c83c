"""Log output: plain text for people, or one JSON object per line for log shippers
(``INGEST_WORKER__LOG_JSON=true``). Job lines carry their fields as ``extra={"fields": ...}``
so both formats get them without parsing messages."""

from __future__ import annotations

import json
import logging
import re
import threading
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


class LibrdkafkaLog:
    """Where librdkafka's log lines go (the ``logger`` of every confluent-kafka client):
    through our logging, not raw to stderr. The first line of each condition (facility and
    text, numbers and timings aside) is a WARNING, so the CLI shows one clear line per
    condition before its own error; repeats and the rest are DEBUG (``--log-level DEBUG``)."""

    _digits = re.compile(r"\d+")

    def __init__(self, name: str = "streams.librdkafka", remember: int = 256) -> None:
        self.log_ = logging.getLogger(name)
        self._seen: dict[str, None] = {}
        self._remember = remember
        self._lock = threading.Lock()

    def log(self, level: int, msg: str, *args: Any) -> None:
        text = msg % args if args else msg
        # "FAIL [rdkafka#producer-1] [thrd:...]: 127.0.0.1:1/bootstrap: Connect ... failed"
        fac, _, rest = text.partition(" ")
        detail = rest.split("]: ", 2)[-1]
        condition = self._digits.sub("#", f"{fac} {detail}")
        with self._lock:
            first = level >= logging.WARNING and condition not in self._seen
            if first:
                self._seen[condition] = None
                if len(self._seen) > self._remember:
                    self._seen.pop(next(iter(self._seen)))
        self.log_.log(logging.WARNING if first else logging.DEBUG, "kafka: %s", detail if first else text)


LIBRDKAFKA_LOG = LibrdkafkaLog()
