"""Shared by the deployment tests: the env names Settings reads, and helm as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "prophoto-ingest"
ALL_FEATURES = CHART / "ci" / "all-features-values.yaml"
TOOLS_BIN = Path(os.environ.get("PROPHOTO_TOOLS_BIN", Path.home() / ".cache/prophoto-tools/bin"))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds, if any (``Foo``, ``Foo | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def settings_env_names(cls: type[BaseSettings] | None = None) -> set[str]:
    """Every environment variable the settings class reads, from the class itself.

    Walks nested models with the class's own prefix and delimiter, so a field someone adds
    tomorrow is known here without an edit.
    """
    if cls is None:
        from streams.settings import Settings

        cls = Settings
    prefix = str(cls.model_config.get("env_prefix") or "")
    delim = str(cls.model_config.get("env_nested_delimiter") or "__")
    names: set[str] = set()

    def walk(model: type[BaseModel], path: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{path}{name}"
            nested = _model_in(field.annotation)
            if nested is not None:
                walk(nested, key + delim)
            else:
                names.add(key.upper())

    walk(cls, prefix)
    return names


def helm_binary() -> str | None:
    local = TOOLS_BIN / "helm"
    if local.exists():
        return str(local)
    return shutil.which("helm")


def promtool_binary() -> str | None:
    local = TOOLS_BIN / "promtool"
    if local.exists():
        return str(local)
    return shutil.which("promtool")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    binary = helm_binary()
    assert binary, "helm missing: run scripts/setup.d/50-helm.sh"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def render(
    values: list[Path] | None = None, *extra: str, chart: Path = CHART, kube_version: str | None = None
) -> list[dict[str, Any]]:
    """``helm template`` into a list of manifests; an error fails with helm's message."""
    args = ["template", "rel", str(chart), "--namespace", "ingest"]
    for v in values or []:
        args += ["-f", str(v)]
    if kube_version:
        args += ["--kube-version", kube_version]
    proc = helm(*args, *extra)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def containers(manifests: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container of every Deployment."""
    for m in manifests:
        if m["kind"] == "Deployment":
            for c in m["spec"]["template"]["spec"]["containers"]:
                yield m, c


def by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def env_of(manifests: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str | None]:
    """The environment a container gets: ConfigMaps/Secrets by envFrom, then its env list.

    Values from secretKeyRef or fieldRef are None (known at run time only).
    """
    out: dict[str, str | None] = {}
    for src in container.get("envFrom", []):
        for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if ref in src:
                name = src[ref]["name"]
                found = [m for m in by_kind(manifests, kind) if m["metadata"]["name"] == name]
                assert found, f"{kind} {name} referenced by envFrom is not in the chart"
                data = found[0].get("data") or found[0].get("stringData") or {}
                out.update({k: str(v) for k, v in data.items()})
    for e in container.get("env", []):
        out[e["name"]] = e.get("value")
    return out
