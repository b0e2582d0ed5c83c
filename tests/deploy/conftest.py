"""helm comes from scripts/setup.d/50-helm.sh, promtool from 60-promtool.sh. Without them
these tests skip on a laptop and fail under CI, like the broker fixtures."""

from __future__ import annotations

import os
from typing import Any

import pytest

from .helpers import ALL_FEATURES, helm_binary, promtool_binary, render


def _tool(binary: str | None, name: str, installer: str) -> str:
    """The tool's path; without it a failure under CI, a skip on a laptop."""
    if binary is None:
        problem = f"{name} not found; run scripts/setup.d/{installer}"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {problem}")
        pytest.skip(problem)
    return binary


@pytest.fixture(scope="session")
def helm_bin() -> str:
    return _tool(helm_binary(), "helm", "50-helm.sh")


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    return _tool(promtool_binary(), "promtool", "60-promtool.sh")


@pytest.fixture(scope="session")
def default_manifests(helm_bin: str) -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="session")
def all_manifests(helm_bin: str) -> list[dict[str, Any]]:
    return render([ALL_FEATURES])


@pytest.fixture(scope="session", params=["default", "all-features"])
def manifests(request: pytest.FixtureRequest, helm_bin: str) -> list[dict[str, Any]]:
    fixture = "default_manifests" if request.param == "default" else "all_manifests"
    result: list[dict[str, Any]] = request.getfixturevalue(fixture)
    return result
