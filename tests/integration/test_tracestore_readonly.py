"""The issue's two attacks on a real sink process, through the CLI and through raw HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from streams.settings import Settings
from tests.conftest import WorkerProcess
from tests.integration.helpers import cli
from tests.integration.test_traces import sink_settings, wait_sink_ready
from tracestore.store import lock_path, read_owner


def _post(url: str, sql: str, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(f"{url}/query", json.dumps({"sql": sql}).encode(),
                                 {"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_running_sink_refuses_the_issues_attacks(
    make_settings: Callable[..., Settings], start_sink: Callable[..., WorkerProcess], tmp_path: Path,
) -> None:
    settings = sink_settings(make_settings)
    secret = tmp_path / "secret.txt"
    word = f"secret-{uuid.uuid4().hex}"
    secret.write_text(word + "\n", encoding="utf-8")
    sink = start_sink(settings)
    url = wait_sink_ready(settings, sink)

    res = cli(settings, "traces", "sql", f"SELECT * FROM file('{secret}','LineAsString')")
    assert res.exit_code == 1, res.output
    assert word not in res.output and "READONLY" in res.output, res.output

    res = cli(settings, "traces", "sql",
              "SELECT 1 /* ' */ ; CREATE TABLE zz (a Int32) ENGINE=Memory /* ' */")
    assert res.exit_code == 1 and "one statement" in res.output, res.output

    # Without the CLI's guard, straight to the endpoint: the engine refuses both.
    owner = read_owner(lock_path(settings.clickhouse.path))
    assert owner is not None and owner["url"] == url
    auth = {"Authorization": f"Bearer {owner.get('token')}"}
    status, body = _post(url, f"SELECT * FROM file('{secret}','LineAsString')", auth)
    assert status == 400 and "READONLY" in body and word not in body, body
    status, body = _post(url, "SELECT 1 /* ' */ ; CREATE TABLE zz (a Int32) ENGINE=Memory /* ' */", auth)
    assert status == 400, body
    status, body = _post(url, f"SELECT file('{secret}')", auth)
    assert status == 400 and word not in body, body

    # No token, no answer; a local reader finds the token in the lock file.
    assert _post(url, "SELECT 1", {})[0] == 401
    assert _post(url, "SELECT 1", {"Authorization": "Bearer nope"})[0] == 403
    res = cli(settings, "traces", "sql", "EXISTS TABLE zz", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.output) == [{"result": 0}], res.output
    res = cli(settings, "traces", "sql", "SELECT count() AS n FROM traces FINAL", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.output) == [{"n": 0}], res.output
    res = cli(settings, "traces", "report", "--format", "json")
    assert res.exit_code == 0 and "success_rate" in json.loads(res.output), res.output
    res = cli(settings, "traces", str(uuid.uuid4()))
    assert res.exit_code == 1 and "no traces for" in res.output, res.output
    assert sink.proc.poll() is None, sink.output()[-2000:]
