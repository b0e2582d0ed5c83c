"""The Dockerfile, read statically (no Docker engine here): non-root, exiftool, the console
script as entry point, and the package data the installed (non-editable) package needs."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import yaml

from .helpers import CHART, ROOT, settings_env_names

DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def runtime_stage() -> str:
    return re.split(r"^FROM ", DOCKERFILE, flags=re.M)[-1]


def instructions(stage: str, name: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", stage)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def test_runs_as_the_charts_non_root_user() -> None:
    (user,) = instructions(runtime_stage(), "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, "numeric uid, so runAsNonRoot can verify it"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)


def test_entrypoint_is_the_console_script() -> None:
    (entry,) = instructions(runtime_stage(), "ENTRYPOINT")
    argv = json.loads(entry)
    assert argv[-1] in PYPROJECT["project"]["scripts"]
    assert PYPROJECT["project"]["scripts"][argv[-1]] == "streams.cli:main"


def test_installs_exiftool_and_python_the_project_supports() -> None:
    assert "libimage-exiftool-perl" in " ".join(instructions(runtime_stage(), "RUN"))
    (py,) = re.findall(r"^ARG PYTHON_VERSION=(\S+)", DOCKERFILE, flags=re.M)
    assert py == "3.11" and ">=3.11" in PYPROJECT["project"]["requires-python"]
    assert "-slim" in runtime_stage().splitlines()[0]


def test_env_names_are_settings_fields() -> None:
    names = set(re.findall(r"\b(INGEST_[A-Z0-9_]+)=", DOCKERFILE))
    assert names and names <= settings_env_names()


def test_copied_sources_exist_and_are_not_dockerignored() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for copy in instructions(DOCKERFILE, "COPY"):
        if copy.startswith("--from"):
            continue
        *sources, _ = copy.split()
        for src in sources:
            assert (ROOT / src).exists() or src == "README.md", f"COPY {src}: missing"
            assert src.rstrip("/") in allowed, f"COPY {src}: excluded by .dockerignore"


def test_package_data_covers_every_data_file() -> None:
    """The image installs the project as a wheel: a data file not named in package-data
    (SQL schema, dashboard assets) is silently left out of it."""
    declared = PYPROJECT["tool"]["setuptools"].get("package-data", {})
    missing: list[str] = []
    for package in ("streams", "tracestore", "imaging", "status"):
        base = ROOT / package
        for f in base.rglob("*"):
            if f.is_dir() or f.suffix in (".py", ".pyc", ".md") or "__pycache__" in f.parts:
                continue
            if f.suffix == ".so":  # what ext-modules builds in place for an editable install
                continue
            if f.suffix == ".c":  # compiled, not shipped: an ext-module must name it
                assert f.relative_to(ROOT).as_posix() in ext_sources(), f"{f}: in no ext-module"
                continue
            rel = f.relative_to(base).as_posix()
            globs = declared.get(package, [])
            if not any(fnmatch.fnmatch(rel, g) for g in globs):
                missing.append(f"{package}/{rel}")
    assert missing == [], f"add to [tool.setuptools.package-data]: {missing}"


def ext_sources() -> set[str]:
    return {src for ext in PYPROJECT["tool"]["setuptools"].get("ext-modules", [])
            for src in ext["sources"]}


def test_the_encoder_extension_is_built_and_linked_in_the_image() -> None:
    # pip treats the extension as optional; the image must not silently ship without it
    build = re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1]
    build_runs = " ".join(instructions(build, "RUN"))
    assert "libjpeg62-turbo-dev" in build_runs and "gcc" in build_runs
    # from /, where the sources in /src cannot shadow the installed package
    assert 'cd / && /opt/venv/bin/python -c "import imaging._jpegenc"' in build_runs
    assert "imaging/_jpegenc.c" in ext_sources()
    runtime = " ".join(instructions(runtime_stage(), "RUN"))
    assert re.search(r"\blibjpeg62-turbo\b(?!-dev)", runtime)
    assert "**/*.so" in (ROOT / ".dockerignore").read_text().splitlines()


def test_package_data_check_sees_a_missing_glob(tmp_path: Path) -> None:
    assert not any(fnmatch.fnmatch("tracestore/schema/001_traces.sql", g) for g in ["sql/*.sql"])
    assert fnmatch.fnmatch("tracestore/schema/001_traces.sql", "tracestore/schema/*.sql")


def workdir() -> str:
    (path,) = instructions(runtime_stage(), "WORKDIR")
    return path


def test_working_directory_is_writable_under_a_read_only_root(helm_bin: str) -> None:
    """faust creates "<group>-data" in the current directory; with a read-only root
    filesystem the working directory must be a volume (chart) or a tmpfs (compose)."""
    from .helpers import containers, render

    manifests = render()
    for d, c in containers(manifests):
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert workdir() in mounts, f"{c['name']}: nothing mounted at {workdir()}"
        assert "emptyDir" in volumes[mounts[workdir()]]
    compose = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
    for name in ("topics", "trace-sink", "worker", "status"):
        svc = compose["services"][name]
        assert svc["read_only"] is True and workdir() in svc["tmpfs"], name
