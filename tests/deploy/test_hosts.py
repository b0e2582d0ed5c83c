"""deploy/: the supervisor and systemd examples for hosts without Kubernetes."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from .helpers import ROOT, settings_env_names

DEPLOY = ROOT / "deploy"


def env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


BASE_ENV = env_file(DEPLOY / "prophoto-ingest.env")


def supervisor_programs() -> dict[str, dict[str, str]]:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read(DEPLOY / "supervisor" / "prophoto-ingest.conf")
    return {s.split(":", 1)[1]: dict(parser[s]) for s in parser.sections() if s.startswith("program:")}


def supervisor_env(program: dict[str, str]) -> dict[str, str]:
    out = dict(BASE_ENV)
    out.update(dict(re.findall(r'([A-Z0-9_]+)="([^"]*)"', program.get("environment", ""))))
    return out


def test_every_env_name_is_a_settings_field() -> None:
    known = settings_env_names()
    texts = [p.read_text() for p in DEPLOY.rglob("*") if p.is_file() and p.name != "README.md"]
    names = set(re.findall(r"\b(INGEST_[A-Z0-9_]+)", "\n".join(texts)))
    assert names and names - known == set()


def test_supervisor_workers_stop_wait_above_job_timeout() -> None:
    workers = {n: p for n, p in supervisor_programs().items() if " worker " in p["command"] + " "}
    assert sum(int(p.get("numprocs", "1")) for p in workers.values()) >= 3
    for name, p in workers.items():
        timeout = float(supervisor_env(p)["INGEST_WORKER__TIMEOUT_S"])
        assert int(p["stopwaitsecs"]) > timeout, name
        assert p["autorestart"] == "true", name
        assert p["stopsignal"] == "TERM", name


def test_supervisor_health_ports_are_distinct() -> None:
    ports: list[int] = []
    for p in supervisor_programs().values():
        template = supervisor_env(p).get("INGEST_WORKER__HEALTH_PORT")
        if template is None:
            continue
        for n in range(int(p.get("numprocs", "1"))):
            ports.append(int(template.replace("%(process_num)02d", f"{n:02d}")))
    assert len(ports) >= 3 and len(set(ports)) == len(ports)


def _unit(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


def test_systemd_workers_stop_wait_above_job_timeout() -> None:
    unit = _unit(DEPLOY / "systemd" / "prophoto-ingest-worker@.service")
    assert unit["Restart"] == "always"
    assert "%i" in unit["Environment"] or any("%i" in v for v in unit.values())
    instances = sorted((DEPLOY / "systemd").glob("worker-*.env"))
    assert len(instances) >= 2
    ports = []
    for inst in instances:
        name = inst.stem.removeprefix("worker-")
        env = BASE_ENV | env_file(inst)
        dropin = DEPLOY / "systemd" / f"prophoto-ingest-worker@{name}.service.d" / "timeout.conf"
        stop = int((_unit(dropin) if dropin.exists() else unit)["TimeoutStopSec"])
        assert stop > float(env["INGEST_WORKER__TIMEOUT_S"]), inst.name
        assert env["PROPHOTO_TOPICS"], inst.name
        ports.append(env["INGEST_WORKER__HEALTH_PORT"])
    assert len(set(ports)) == len(ports)
