"""What every CLI command shares: the lazily loaded settings, exit codes, error reporting.

Every command module imports it, and nothing else of the CLI: no import cycle.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..errors import IngestError, KafkaUnavailable
from ..settings import Settings, load
from ..storage import LocalStorage
from ..topics import TopicMismatch, Topics

EXIT_FAILED = 1
EXIT_KAFKA = 3


class Ctx:
    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load()
        return self._settings

    @property
    def topics(self) -> Topics:
        return Topics.from_settings(self.settings.kafka)

    @property
    def storage(self) -> LocalStorage:
        return LocalStorage(self.settings.storage.root)


pass_ctx = click.make_pass_decorator(Ctx, ensure=True)


FAILED: tuple[type[BaseException], ...] = (IngestError, TopicMismatch, ValueError, OSError)


@contextmanager
def failures(
    failed: tuple[type[BaseException], ...] = FAILED,
    unreachable: tuple[type[BaseException], ...] = (KafkaUnavailable,),
) -> Iterator[None]:
    """Turn known failures into one clear line and an exit code: ``unreachable`` (Kafka did
    not answer) exits EXIT_KAFKA, ``failed`` exits EXIT_FAILED."""
    try:
        yield
    except unreachable as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_KAFKA)
    except failed as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_FAILED)
