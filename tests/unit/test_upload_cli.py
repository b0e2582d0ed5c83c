"""What `upload` undoes when publishing fails: only the files whose events surely did not
reach the broker; one that may have been published keeps its staged copy."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from streams.cli import publish
from streams.errors import KafkaUnavailable
from streams.producer import PublishError
from streams.settings import Settings
from streams.storage import LocalStorage
from streams.topics import Topics
from streams.uploads import stage_upload


def _staged(tmp_path: Path, n: int) -> tuple[Any, list[Any]]:
    settings = Settings(storage={"root": tmp_path / "st"})  # type: ignore[arg-type]
    st = LocalStorage(settings.storage.root)
    st.ensure()
    src = tmp_path / "a.jpg"
    src.write_bytes(b"\xff\xd8 not really")
    events = [stage_upload(st, src) for _ in range(n)]
    ctx = SimpleNamespace(settings=settings, topics=Topics.from_settings(settings.kafka), storage=st)
    return ctx, events


def _exists(ctx: Any, ev: Any) -> bool:
    return bool(ctx.storage.resolve(ev.path).exists())


def test_only_surely_unpublished_files_are_unstaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ctx, (ok, refused, timed_out_but_there, timed_out_gone) = _staged(tmp_path, 4)
    exc = PublishError("publish failed", delivered_keys={ok.key},
                       uncertain_keys={timed_out_but_there.key, timed_out_gone.key})
    monkeypatch.setattr(publish, "keys_written_since", lambda *a: {timed_out_but_there.key})
    with pytest.raises(SystemExit) as stop:
        publish._publish_failed(ctx, [ok, refused, timed_out_but_there, timed_out_gone], exc, {})
    assert stop.value.code == 3
    assert _exists(ctx, ok) and _exists(ctx, timed_out_but_there)
    assert not _exists(ctx, refused) and not _exists(ctx, timed_out_gone)  # the broker said no
    out = capsys.readouterr().out
    assert ok.uuid in out and timed_out_but_there.uuid in out and refused.uuid not in out


def test_files_whose_fate_the_broker_cannot_tell_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ctx, (refused, unknown) = _staged(tmp_path, 2)
    exc = PublishError("publish failed", uncertain_keys={unknown.key})

    def no_answer(*_: Any) -> set[bytes]:
        raise KafkaUnavailable("broker gone")

    monkeypatch.setattr(publish, "keys_written_since", no_answer)
    with pytest.raises(SystemExit):
        publish._publish_failed(ctx, [refused, unknown], exc, {})
    assert _exists(ctx, unknown) and not _exists(ctx, refused)
    captured = capsys.readouterr()
    assert f"{unknown.uuid}  a.jpg  (unknown: may be published)" in captured.out
    assert "1 may have been published" in captured.err
