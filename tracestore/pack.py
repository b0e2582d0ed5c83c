"""The SQL pack (``tracestore/sql/*.sql``): the questions operators ask of the traces.

Each file is one query with a header of ``-- key: value`` lines (name, answers, params,
headline); a line starting ``--   `` continues the previous value.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from .errors import TraceStoreError


@dataclass(frozen=True)
class PackQuery:
    name: str
    answers: str
    sql: str
    params: tuple[str, ...] = ()
    headline: bool = False


def parse(text: str, source: str = "<query>") -> PackQuery:
    meta: dict[str, str] = {}
    key: str | None = None
    for line in text.splitlines():
        if not line.startswith("--"):
            if line.strip():
                break
            continue
        body = line[2:]
        if body.startswith("   ") and key is not None:
            meta[key] += " " + body.strip()
            continue
        k, sep, v = body.strip().partition(":")
        if sep and k.strip().isidentifier():
            key = k.strip()
            meta[key] = v.strip()
    if "name" not in meta or "answers" not in meta:
        raise TraceStoreError(f"{source}: a pack query needs '-- name:' and '-- answers:' lines")
    params = tuple(p.split()[0] for p in meta.get("params", "").split(",") if p.strip())
    return PackQuery(meta["name"], meta["answers"], text, params, meta.get("headline") == "yes")


def load() -> dict[str, PackQuery]:
    out: dict[str, PackQuery] = {}
    for entry in sorted(resources.files(__package__).joinpath("sql").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            q = parse(entry.read_text(encoding="utf-8"), entry.name)
            out[q.name] = q
    return out


def headline() -> list[PackQuery]:
    return [q for q in load().values() if q.headline]
