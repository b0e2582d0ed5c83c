"""Schema as code: the versioned DDL files in ``schema/``, rendered and applied at start.

Files are named ``NNN_what.sql``; ``000`` (database and ledger) runs every time, the others
once each, recorded in ``schema_migrations`` with a checksum. An applied file must not
change (the runner refuses, naming it): a change is a new file. Every statement is also
``IF NOT EXISTS``, so two processes starting at once on a ClickHouse server do no harm.

Both backends run exactly the statements ``statements()`` returns; the only parameters are
the database name and the TTL, both from settings. A changed TTL setting is applied with
``ALTER ... MODIFY TTL`` when it differs from what the table has.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

from .errors import SchemaError

_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Tables whose TTL follows the ttl_days setting, with their TTL expression.
TTL_TABLES: dict[str, str] = {
    "traces": "toDateTime(timestamp) + INTERVAL {ttl_days} DAY",
    "traces_per_minute": "minute + INTERVAL {ttl_days} DAY",
}


@dataclass(frozen=True)
class SchemaFile:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


class Executor(Protocol):
    def execute(self, sql: str) -> None: ...

    def query(
        self, sql: str, params: dict[str, object] | None = None
    ) -> tuple[list[str], list[tuple[object, ...]]]: ...


def files() -> list[SchemaFile]:
    out: list[SchemaFile] = []
    for entry in resources.files(__package__).joinpath("schema").iterdir():
        m = _FILE.match(entry.name)
        if m is None:
            if entry.name.endswith(".sql"):
                raise SchemaError(f"schema file {entry.name!r} is not named NNN_name.sql")
            continue
        out.append(SchemaFile(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda f: f.version)
    versions = [f.version for f in out]
    if len(versions) != len(set(versions)):
        raise SchemaError(f"two schema files share a version: {versions}")
    return out


def split(text: str) -> list[str]:
    """Statements of one file: ``;`` at the end of a line ends one; ``--`` lines are comments.

    DDL here has no string literals holding ``;``, so this is enough and keeps the files
    plain SQL that ``clickhouse-client --multiquery`` would run as they are.
    """
    stmts: list[str] = []
    cur: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("--"):
            continue
        cur.append(line)
        if line.rstrip().endswith(";"):
            stmt = "\n".join(cur).strip().rstrip(";").strip()
            if stmt:
                stmts.append(stmt)
            cur = []
    rest = "\n".join(cur).strip()
    if rest:
        raise SchemaError(f"statement without a closing ';': {rest[:80]!r}")
    return stmts


def render(text: str, database: str, ttl_days: int) -> str:
    if not _IDENT.match(database):
        raise SchemaError(f"database name {database!r} is not a plain identifier")
    return text.replace("{database}", database).replace("{ttl_days}", str(int(ttl_days)))


def statements(f: SchemaFile, database: str, ttl_days: int) -> list[str]:
    return split(render(f.text, database, ttl_days))


def apply(db: Executor, database: str, ttl_days: int) -> list[int]:
    """Bring the schema up to date; returns the versions applied now."""
    all_files = files()
    for stmt in statements(all_files[0], database, ttl_days):
        db.execute(stmt)
    _, rows = db.query(f"SELECT version, name, checksum FROM {database}.schema_migrations FINAL")
    done = {int(str(v)): (str(n), str(c)) for v, n, c in rows}
    applied: list[int] = []
    for f in all_files[1:]:
        if f.version in done:
            if done[f.version][1] != f.checksum:
                raise SchemaError(
                    f"schema file {f.version:03d}_{f.name}.sql changed after it was applied; "
                    "applied files are immutable, add a new version instead"
                )
            continue
        for stmt in statements(f, database, ttl_days):
            db.execute(stmt)
        db.execute(
            f"INSERT INTO {database}.schema_migrations (version, name, checksum) "
            f"VALUES ({f.version}, '{f.name}', '{f.checksum}')"
        )
        applied.append(f.version)
    sync_ttl(db, database, ttl_days)
    return applied


def sync_ttl(db: Executor, database: str, ttl_days: int) -> list[str]:
    """ALTER the TTL of tables whose TTL is not the setting's; returns the tables changed."""
    changed: list[str] = []
    _, rows = db.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String}", {"db": database}
    )
    engines = {str(n): str(e) for n, e in rows}
    for table, expr in TTL_TABLES.items():
        engine = engines.get(table)
        # ClickHouse shows `INTERVAL 90 DAY` back as `toIntervalDay(90)`.
        if engine is None or f"toIntervalDay({int(ttl_days)})" in engine:
            continue
        db.execute(f"ALTER TABLE {database}.{table} MODIFY TTL {render(expr, database, ttl_days)}")
        changed.append(table)
    return changed
