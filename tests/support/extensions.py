"""The imaging C extensions a test needs: built under CI (a missing one fails there), else a
skip that says why."""

from __future__ import annotations

import os
from types import ModuleType

import pytest


def require(module: ModuleType | None, name: str, needs: str = "libjpeg-dev and a C compiler") -> ModuleType:
    if module is None:
        if os.environ.get("CI"):
            pytest.fail(f"imaging.{name} is not built (needs {needs})")
        pytest.skip(f"imaging.{name} is not built here")
    return module
