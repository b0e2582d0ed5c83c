"""docker-compose.kafka.yml: valid against the compose-spec schema Docker Compose uses, and
consistent with the settings class, the status routes and the worker's job timeout."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from typing import Any

import jsonschema
import pytest
import yaml

from streams.settings import Settings

from .helpers import ROOT, settings_env_names
from .routes import served_paths

COMPOSE = ROOT / "docker-compose.kafka.yml"
SCHEMA = ROOT / "tests" / "deploy" / "compose-spec.json"
SCHEMA_SHA256 = "f266dcbb043229405d7cedd5aec918f9102c2b3d5e3850808fdd8edd564a43ff"
APP_SERVICES = ("topics", "trace-sink", "worker", "status")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
_DURATION = re.compile(r"^((\d+(\.\d+)?)(ns|us|µs|ms|s|m|h))+$")


def interpolate(node: Any) -> Any:
    """Compose interpolates ${VAR:-default} before it validates; do the same with defaults."""
    if isinstance(node, str):
        return _VAR.sub(lambda m: m.group(2) or "", node.replace("$$", "\0")).replace("\0", "$")
    if isinstance(node, dict):
        return {k: interpolate(v) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v) for v in node]
    return node


def seconds(duration: str) -> float:
    """A Go duration (what compose parses stop_grace_period with; the schema only says string)."""
    assert _DURATION.match(duration), duration
    unit = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * unit[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", duration))


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE.read_text()))
    return doc


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: str(v) for k, v in raw.items()}


def settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.upper().startswith("INGEST_"):
            monkeypatch.delenv(name)
    for name, value in env(service).items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_vendored_schema_is_the_recorded_one() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256, (
        "compose-spec.json changed; record where it came from in tests/deploy/VENDORED.md"
    )


def test_compose_file_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(compose)]
    assert errors == []


BREAKAGES = {
    "unknown condition": ("depends_on", {"topics": {"condition": "service_started_ok"}}),
    "ports not a list": ("ports", "8081:8081"),
    "unknown key": ("stop_grace_seconds", 150),
}


@pytest.mark.parametrize("key,value", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_schema_rejects_a_broken_file(compose: dict[str, Any], key: str, value: Any) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"][key] = value
    errors = list(validator().iter_errors(broken))
    assert errors
    assert all(list(e.absolute_path)[:2] == ["services", "worker"] for e in errors)


def test_every_env_name_is_a_settings_field(compose: dict[str, Any]) -> None:
    known = settings_env_names()
    for name in APP_SERVICES:
        unknown = {k for k in env(compose["services"][name]) if k.upper() not in known}
        assert unknown == set(), f"{name}: {unknown}"


def test_env_values_parse_with_the_settings_class(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in APP_SERVICES:
        with monkeypatch.context() as mp:
            s = settings_of(compose["services"][name], mp)
        assert s.kafka.bootstrap_servers == "kafka:9092"
        assert s.clickhouse.backend == "server"
        assert s.clickhouse.host == "clickhouse"


def test_worker_stop_wait_above_job_timeout(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    worker = compose["services"]["worker"]
    timeout = settings_of(worker, monkeypatch).worker.timeout_s
    assert seconds(worker["stop_grace_period"]) > timeout


def test_worker_scales(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    # --scale worker=N needs no fixed name and no fixed host port.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["command"][:2] == ["worker", "--topics"]


def test_depends_on_conditions_can_be_met(compose: dict[str, Any]) -> None:
    services = compose["services"]
    seen = 0
    for name, svc in services.items():
        for target, cond in (svc.get("depends_on") or {}).items():
            seen += 1
            assert target in services, f"{name} depends on unknown {target}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health: none"
            if cond["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is a one-shot: restart 'no'"
    assert seen >= 6
    assert compose["services"]["kafka"]["image"] == "apache/kafka:3.9.2"
    assert compose["services"]["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")


def _healthcheck_url(svc: dict[str, Any]) -> str:
    test = " ".join(svc["healthcheck"]["test"])
    m = re.search(r"http://127\.0\.0\.1:\d+/\S*?(?=['\s])", test)
    assert m, test
    return m.group(0)


def test_healthchecks_hit_served_routes(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    checks = {
        "worker": ("streams", lambda s: s.worker.health_port),
        "status": ("status", lambda s: s.status.port),
    }
    for name, (package, port_of) in checks.items():
        svc = compose["services"][name]
        with monkeypatch.context() as mp:
            s = settings_of(svc, mp)
        url = _healthcheck_url(svc)
        port, path = re.match(r"http://127\.0\.0\.1:(\d+)(/\S*)", url).groups()  # type: ignore[union-attr]
        assert int(port) == port_of(s), f"{name} healthcheck port {port}"
        assert path in served_paths(ROOT / package), f"{name} healthcheck {path}: not a served route"
    status = compose["services"]["status"]
    s = settings_of(status, monkeypatch)
    assert s.status.host == "0.0.0.0"
    assert any(p.endswith(f":{s.status.port}") for p in status["ports"])
