"""`acrbot doctor` on a PostgreSQL `database`: reachable (and the login works), the schema's
version, and the rights acrbot needs (create tables for a migration; read and write its own).

Nothing is changed: the probe table is created inside a transaction that is rolled back.
Each check is a `Finding` (the doctor package turns it into its report's row; this module does not
import it, so that it can import this one).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from bot.core.database import ServerDatabase
from bot.core.errors import ConfigError
from bot.state.store import SCHEMA_VERSION


class Finding(NamedTuple):
    """One row of the doctor's report: status "ok", "fail" or "skip" (bot/doctor/__init__.py's)."""

    name: str
    status: str
    detail: str
    fix: str | None = None


def passed(name: str, detail: str) -> Finding:
    return Finding(name, "ok", detail)


def failed(name: str, detail: str, fix: str) -> Finding:
    return Finding(name, "fail", detail, fix)


def skipped(name: str, detail: str) -> Finding:
    return Finding(name, "skip", detail)


TABLES = ("grants", "requests", "approvals", "audit", "meta", "jobs", "outbox")


class _Rollback(Exception):
    """Raised to roll the probe transaction back."""


def server_database_checks(target: ServerDatabase, *, config_arg: str) -> list[Finding]:
    import psycopg

    from bot.state.engine_pg import PgEngine

    try:
        engine = PgEngine(target, busy_timeout=10.0, pool_size=1)
    except ConfigError as exc:
        detail, _, fix = str(exc).partition("; ")
        return [failed("database", detail, fix or "check the `database` key")]
    try:
        user, version = engine.db.execute("select current_user, version()").fetchone()
        checks = [passed("database", f"{target.where} reachable as {user} ({version[:16]})")]
        try:
            with engine.transaction():
                found = engine.read_version()
        except psycopg.Error as exc:
            checks.append(
                failed(
                    "database schema",
                    f"cannot read the schema version ({str(exc).splitlines()[0]})",
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "
                    "the `database` URL's user",
                )
            )
            found = 0
        else:
            checks.append(_schema(target, found, config_arg=config_arg))
        checks.append(_rights(engine, target, schema_exists=found is not None))
        return checks
    finally:
        engine.close()


def _schema(target: ServerDatabase, found: int | None, *, config_arg: str) -> Finding:
    if found is None:
        return failed(
            "database schema",
            f"no acrbot schema in {target.where}",
            f"create it with `acrbot init {config_arg}`",
        )
    if found == SCHEMA_VERSION:
        return passed("database schema", f"version {found} (current)")
    if found > SCHEMA_VERSION:
        return failed(
            "database schema",
            f"version {found}, written by a newer acrbot (this one knows {SCHEMA_VERSION})",
            "upgrade acrbot to the version that wrote it (or restore a backup)",
        )
    return failed(
        "database schema",
        f"version {found}; this acrbot migrates it to {SCHEMA_VERSION}",
        f"back up the database, then run `acrbot init {config_arg}` (or start acrbot once): "
        "it migrates the database when it opens it",
    )


def _rights(engine: Any, target: ServerDatabase, *, schema_exists: bool) -> Finding:
    """Create a table (rolled back), and read/write each of acrbot's tables."""
    import psycopg

    try:
        with engine.transaction() as db:
            db.execute("create table acrbot_doctor_probe (x integer)")
            raise _Rollback
    except _Rollback:
        pass
    except psycopg.Error as exc:
        return failed(
            "database rights",
            f"{target.where}: cannot create a table ({str(exc).splitlines()[0]})",
            "GRANT CREATE ON SCHEMA public TO the `database` URL's user (migrations need it), "
            "or make it the database's owner",
        )
    if not schema_exists:
        return skipped("database rights", "may create tables; no acrbot tables yet")
    rows = engine.db.execute(
        "select t from unnest(?::text[]) as t where to_regclass(t) is null or not "
        "has_table_privilege(t, 'SELECT, INSERT, UPDATE, DELETE')",
        [list(TABLES)],
    ).fetchall()
    missing = [name for (name,) in rows]
    if missing:
        return failed(
            "database rights",
            f"cannot read and write {', '.join(missing)}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO the "
            "`database` URL's user",
        )
    return passed("database rights", "creates tables; reads and writes acrbot's")
