"""The store contract on both engines: the same SQL, the same answers (SQLite and PostgreSQL).

The PostgreSQL cases run on the session's real server (tests/support/postgres.py) and are
marked `postgres` (and `server`): `make test-fast` runs the SQLite cases only.
"""

from __future__ import annotations

import threading

import pytest

from bot.core.errors import ConfigError
from bot.state.engine_pg import translate, translate_ddl
from bot.state.store import SCHEMA_VERSION, Store


def test_store_contract_new_database_is_at_the_current_schema(database):
    store = database.store()
    assert store.engine == database.engine
    assert store.schema_version() == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION  # again: nothing to do


def test_store_contract_placeholders_returning_and_on_conflict(database):
    store = database.store()
    with store.transaction() as db:
        first = db.execute(
            "insert into requests (action, registry, repository, digest, requester, state) "
            "values (?, ?, ?, ?, ?, ?) returning id",
            ["delete", "r", "repo", "sha256:1", "alice", "pending"],
        ).fetchone()[0]
        second = db.execute(
            "insert into requests (action, registry, repository, digest, requester, state) "
            "values (?, ?, ?, ?, ?, ?) returning id",
            ["delete", "r", "repo", "sha256:2", "alice", "pending"],
        ).fetchone()[0]
    assert second == first + 1
    for value in ("a", "b"):
        with store.transaction() as db:
            db.execute(
                "insert into meta (key, value) values (?, ?) "
                "on conflict (key) do update set value = excluded.value",
                ["k", value],
            )
    assert store.db.execute("select value from meta where key = ?", ["k"]).fetchone() == ("b",)
    added = store.db.execute(
        "insert into meta (key, value) values (?, ?) on conflict (key) do nothing", ["k", "c"]
    ).rowcount
    assert added == 0
    # A literal % in SQL text and a LIKE pattern as a parameter.
    rows = store.db.execute("select key, '100%' from meta where key like ?", ["%k%"]).fetchall()
    assert [tuple(r) for r in rows] == [("k", "100%")]
    assert [r["value"] for r in store.db.query("select * from meta where key = ?", ["k"])] == ["b"]


def test_store_contract_named_parameters_and_is_not_distinct_from(database):
    store = database.store()
    store.db.execute(
        "insert into meta (key, value) values (:key, :value)", {"key": "n", "value": None}
    )
    row = store.db.execute(
        "select key from meta where value is not distinct from ?", [None]
    ).fetchone()
    assert row[0] == "n"


def test_store_contract_transaction_rolls_back_and_after_commit_runs_once(database):
    store = database.store()
    ran = []
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("insert into meta (key, value) values (?, ?)", ["x", "1"])
        store.after_commit(lambda: ran.append("rolled back"))
        raise RuntimeError
    assert store.db.execute("select count(*) from meta where key = 'x'").fetchone()[0] == 0
    with store.transaction() as db:
        with store.transaction() as inner:  # nested: joins
            inner.execute("insert into meta (key, value) values (?, ?)", ["x", "1"])
        store.after_commit(lambda: ran.append("committed"))
        assert ran == []
    assert ran == ["committed"]


def test_store_contract_audit_is_append_only(database):
    from bot.state.audit import Audit
    from tests.support.fixtures import FakeClock

    store = database.store()
    Audit(store).append(actor="a", action="x", target="t", outcome="ok", at=FakeClock()())
    with pytest.raises(store.errors, match="append-only"):
        store.db.execute("update audit set actor = 'b'")
    with pytest.raises(store.errors, match="append-only"):
        store.db.execute("delete from audit")


def test_store_contract_executemany_and_blob(database):
    store = database.store()
    with store.transaction() as db:
        db.executemany(
            "insert into retention_runs (name, slot, request_id, outcome) values (?, ?, ?, ?)",
            [("r", f"s{i}", i, "ok") for i in range(5)],
        )
    assert store.db.execute("select count(*) from retention_runs").fetchone()[0] == 5


def test_store_contract_serialize_makes_a_read_then_write_safe(database):
    """Two threads (separate connections) each read a counter and write it + 1, 20 times;
    under `serialize` none is lost on either engine."""
    store = database.store()
    store.db.execute("insert into meta (key, value) values ('n', '0')")

    def bump() -> None:
        for _ in range(20):
            with store.transaction() as db:
                store.serialize("counter")
                n = int(db.execute("select value from meta where key = 'n'").fetchone()[0])
                db.execute("update meta set value = ? where key = 'n'", [str(n + 1)])

    threads = [threading.Thread(target=bump) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.db.execute("select value from meta where key = 'n'").fetchone()[0] == "60"


def test_store_contract_newer_schema_is_refused(database):
    store = database.store()
    if database.engine == "sqlite":
        store.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    else:
        store.db.execute("update acrbot_schema set version = ?", [SCHEMA_VERSION + 1])
    store.close()
    with pytest.raises(ConfigError, match="newer than this acrbot"):
        database.store()


def test_translate_placeholders_percent_and_quotes():
    assert translate("select ? where a like '%?x' and b = ?", [1, 2]) == (
        "select %s where a like '%%?x' and b = %s"
    )
    assert translate("values (:id, :ts) -- it's :x", {"id": 1, "ts": 2}) == (
        "values (%(id)s, %(ts)s) -- it's :x"
    )
    assert translate("select x::text, 5 % 2 from t where y = ?", [1]) == (
        "select x::text, 5 %% 2 from t where y = %s"
    )


def test_translate_ddl_maps_types():
    assert translate_ddl('CREATE TABLE t ("id" INTEGER PRIMARY KEY, n integer, b BLOB)') == (
        'CREATE TABLE t ("id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT, '
        "b BYTEA)"
    )
    assert translate_ddl("create table x (a text, primary key (a)) without rowid").strip() == (
        "create table x (a text, primary key (a))"
    )


def test_sqlite_schema_is_what_sqlite_utils_made(tmp_path):
    """v1 and v2 were sqlite-utils' table API; the plain DDL gives SQLite the same tables,
    columns, keys and indexes (compared without whitespace)."""
    import re

    store = Store(tmp_path / "a.db", create=True)
    rows = store.db.execute("select name, sql from sqlite_master where name = 'grants'")
    ((_name, sql),) = rows.fetchall()
    assert re.sub(r"\s+", " ", sql) == (
        'CREATE TABLE "grants" ( "id" INTEGER PRIMARY KEY, "principal" TEXT NOT NULL, '
        '"role" TEXT NOT NULL, "registry" TEXT NOT NULL, "repositories" TEXT NOT NULL, '
        '"granted_by" TEXT, "granted_at" TEXT )'
    )


def test_store_contract_upsert_reads_the_existing_row(database):
    """`DO UPDATE SET c = t.c + 1` (the table named: PostgreSQL calls a bare name ambiguous)."""
    from bot.state.outbox import Outbox

    outbox = Outbox(database.store())
    outbox.touch("card:1", "card", {"n": 1})
    outbox.touch("card:1", "card", {"n": 2})
    [item] = outbox.due()
    assert (item.version, item.payload) == (1, {"n": 2})
