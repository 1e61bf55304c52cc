"""The database file: versioned migrations, WAL, and refusing a newer schema."""

import sqlite3

import pytest

from bot.core.errors import ConfigError
from bot.state.store import SCHEMA_VERSION, Store


def test_new_database_is_migrated_and_in_wal_mode(tmp_path):
    store = Store(tmp_path / "a.db", create=True)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"grants", "requests", "approvals", "audit", "meta"} <= set(store.db.table_names())


def test_reopening_does_not_migrate_again(tmp_path):
    Store(tmp_path / "a.db", create=True).close()
    assert Store(tmp_path / "a.db", create=True).migrate() == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "a.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ConfigError, match="newer than this acrbot"):
        Store(tmp_path / "a.db", create=True)


def test_not_a_database_is_a_config_error(tmp_path):
    (tmp_path / "a.db").write_text("hello" * 100)
    with pytest.raises(ConfigError, match=r"a\.db: file is not a database"):
        Store(tmp_path / "a.db", create=True)


def test_transaction_rolls_back_on_error(tmp_path):
    store = Store(tmp_path / "a.db", create=True)
    with pytest.raises(RuntimeError), store.transaction() as db:
        db["meta"].insert({"key": "k", "value": "v"})
        raise RuntimeError
    assert store.db["meta"].count == 0
