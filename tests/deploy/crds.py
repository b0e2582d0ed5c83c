"""Custom resources the chart renders, checked against the vendored CRDs' own schemas.

kubernetes-validate knows only the built-in kinds. For a CRD the API server validates with
``spec.versions[].schema.openAPIV3Schema``; these helpers do the same with jsonschema, strict
like the built-in check: where a schema lists ``properties`` and neither sets
``additionalProperties`` nor preserves unknown fields, an unknown field is an error (the
API server would silently prune it, which is how a typo goes unnoticed).
"""

from __future__ import annotations

import copy
import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRDS = Path(__file__).parent / "crds"
# file -> sha256 (tests/deploy/VENDORED.md says where each came from)
VENDORED = {
    "monitoring.coreos.com_prometheusrules.yaml": (
        "78be98554b9c8506ab2b4f4feb91c5f3a56e536a0a510f3a8e876a459970d56d"
    ),
    "monitoring.coreos.com_servicemonitors.yaml": (
        "a99047972c9dd7679ce2050b9968e8a08773492e671b3e17abd476d42aa78a32"
    ),
}


def checksums() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(CRDS.glob("*.yaml"))}


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def _schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, for every version each vendored CRD serves."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                out[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return out


def known(manifest: dict[str, Any]) -> bool:
    return (manifest["apiVersion"], manifest["kind"]) in _schemas()


def errors(manifest: dict[str, Any]) -> list[str]:
    """Every schema violation of one custom resource, as 'path: message'."""
    schema = _schemas()[(manifest["apiVersion"], manifest["kind"])]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]
