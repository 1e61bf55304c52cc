"""PostgreSQL failing under the bot: a wrong URL, a refused password, a missing database, a
schema from another release, a server restarting. Each is one line naming the fix (exit 2
from the CLI), or "busy, try again" within the ack budget and a reconnect afterwards; the
password never appears in an error, a log line or the database.

The restart test runs its own cluster (stopping the session's would stop other tests).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import pytest

from bot import cli
from bot.core.database import ServerDatabase
from bot.core.errors import ConfigError
from bot.slack import handoff
from bot.slack.handoff import DurableSink, Job
from bot.state.dbhealth import DatabaseHealth
from bot.state.jobqueue import JobQueue
from bot.state.store import SCHEMA_VERSION, Store
from tests.support.fixtures import PG_PASSWORD_ENV, pg_target
from tests.support.postgres import PASSWORD, PostgresCluster


@pytest.fixture(scope="module")
def own_cluster():
    cluster = PostgresCluster().start()
    yield cluster
    cluster.destroy()


def _error(target: ServerDatabase) -> str:
    with pytest.raises(ConfigError) as raised:
        Store(target, create=True)
    text = str(raised.value)
    assert "\n" not in text and PASSWORD not in text and "wrong-pw" not in text
    return text


def test_postgres_refused_password_missing_database_and_no_server_are_one_line(pg_url):
    target = pg_target(pg_url)
    assert "password refused" in _error(replace(target, password="wrong-pw"))
    assert f"check the password in ${PG_PASSWORD_ENV}" in _error(replace(target, password="x"))
    missing = pg_url.rsplit("/", 1)[0] + "/nosuchdb"
    assert _error(replace(target, url=missing)).endswith(
        'database "nosuchdb" does not exist; create it (CREATE DATABASE …) or fix the '
        "`database` URL"
    )
    dead = "postgresql://acrbot@127.0.0.1:1/x"
    assert "cannot reach the server" in _error(replace(target, url=dead))


def test_postgres_empty_database_is_created_only_by_init(pg_url):
    with pytest.raises(ConfigError) as raised:
        Store(pg_target(pg_url))
    assert str(raised.value).endswith(
        "no acrbot schema in it; check the `database` URL, or create it with "
        "`acrbot init --config FILE`"
    )
    assert Store(pg_target(pg_url), create=True).migrated_from == 0
    assert Store(pg_target(pg_url)).migrated_from == SCHEMA_VERSION


def test_postgres_schema_from_another_release(pg_url):
    store = Store(pg_target(pg_url), create=True)
    store.db.execute("update acrbot_schema set version = ?", [SCHEMA_VERSION + 1])
    store.close()
    assert _error(pg_target(pg_url)).endswith(
        f"has schema {SCHEMA_VERSION + 1}, newer than this acrbot ({SCHEMA_VERSION}); "
        "upgrade acrbot"
    )


def test_acrbot_init_on_postgres_and_its_errors_exit_2(pg_url, tmp_path, monkeypatch, capsys):
    config = tmp_path / "acrbot.toml"
    config.write_text(
        f'database = "{pg_url}"\ndatabase_password_env = "{PG_PASSWORD_ENV}"\n'
        '[[registry]]\nname = "demo"\ntype = "oci-layout"\npath = "registry"\n'
    )
    monkeypatch.setenv(PG_PASSWORD_ENV, PASSWORD)
    assert cli.main(["init", "--config", str(config)]) == 0
    assert f"(schema {SCHEMA_VERSION})" in capsys.readouterr().out
    assert cli.main(["init", "--config", str(config)]) == 0
    assert f"is ready (schema {SCHEMA_VERSION})" in capsys.readouterr().out
    assert cli.main(["roles", "grant", "alice", "owner", "--config", str(config)]) == 0
    assert cli.main(["audit", "verify", "--config", str(config)]) == 0
    assert "audit chain intact: 1 entries verified" in capsys.readouterr().out
    monkeypatch.setenv(PG_PASSWORD_ENV, "wrong-pw")
    assert cli.main(["init", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "password refused" in err and "wrong-pw" not in err and PASSWORD not in err
    monkeypatch.delenv(PG_PASSWORD_ENV)
    assert cli.main(["init", "--config", str(config)]) == 2
    assert f"the environment variable {PG_PASSWORD_ENV} is not set" in capsys.readouterr().err


def test_postgres_restarting_answers_busy_in_the_ack_budget_then_reconnects(own_cluster, caplog):
    caplog.set_level(logging.DEBUG)
    name = own_cluster.new_database()
    store = Store(pg_target(own_cluster.url(name)), create=True)
    store.busy_timeout = 2.0  # the acking process's budget (bot/slack/service.py)
    health = DatabaseHealth()
    sink = DurableSink(JobQueue(store), lambda: None, health=health, refresh=3600)
    assert sink.submit(Job("command", trigger_id="t1")) == handoff.QUEUED

    own_cluster.stop()
    started = time.monotonic()
    assert sink.submit(Job("command", trigger_id="t2")) == handoff.UNREACHABLE
    assert time.monotonic() - started < 2.5  # Slack gives up at 3 s
    assert health.problem == "unreachable"

    own_cluster.start()
    deadline = time.monotonic() + 15
    while (answer := sink.submit(Job("command", trigger_id="t3"))) != handoff.QUEUED:
        assert answer == handoff.UNREACHABLE and time.monotonic() < deadline
        time.sleep(0.2)
    assert health.problem is None
    keys = {k for (k,) in store.db.execute("select key from jobs").fetchall()}
    assert keys == {"trigger:t1", "trigger:t3"}  # t2 was refused: nothing of it recorded
    assert PASSWORD not in caplog.text


def test_postgres_password_is_in_no_table(pg_url, make_bot, store_options):
    """The secret the store was given is nowhere in what it wrote (every text column)."""
    from tests.support.fixtures import pg_options

    bot = make_bot(**pg_options(pg_url))
    bot.say("alice", "delete baseimages/fedora:24 --reason 'EOL'")
    bot.say("bob", "approve 1")
    tables = [
        t
        for (t,) in bot.ctx.store.db.execute(
            "select table_name from information_schema.tables where table_schema = 'public'"
        ).fetchall()
    ]
    for table in tables:
        for row in bot.ctx.store.db.execute(f"select * from {table}").fetchall():
            assert PASSWORD not in repr(row), table


def _doctor(config, capsys) -> dict[str, str]:
    cli.main(["doctor", "--config", str(config)])
    out = capsys.readouterr().out
    found = {}
    for line in out.splitlines():
        for name in ("database schema", "database rights", "database "):
            if line.strip().startswith(("✓", "✗", "-")) and f" {name}" in line:
                found.setdefault(name.strip(), line.strip())
    return found


def test_doctor_checks_a_postgres_database(pg_cluster, pg_url, tmp_path, monkeypatch, capsys):
    config = tmp_path / "acrbot.toml"
    body = (
        f'database_password_env = "{PG_PASSWORD_ENV}"\n'
        '[[registry]]\nname = "demo"\ntype = "oci-layout"\npath = "registry"\n'
    )
    config.write_text(f'database = "{pg_url}"\n{body}')
    monkeypatch.setenv(PG_PASSWORD_ENV, PASSWORD)
    before = _doctor(config, capsys)
    assert before["database"].startswith("✓")
    assert before["database schema"].startswith("✗")
    assert "no acrbot schema" in before["database schema"]
    assert cli.main(["init", "--config", str(config)]) == 0
    after = _doctor(config, capsys)
    assert after["database"].startswith("✓") and "reachable as acrbot" in after["database"]
    assert after["database schema"].startswith("✓")
    assert after["database rights"].startswith("✓")
    # A user who may log in but not create tables nor touch acrbot's.
    pg_cluster.sql(f"CREATE ROLE outsider LOGIN PASSWORD '{PASSWORD}'")
    try:
        config.write_text(f'database = "{pg_url.replace("acrbot@", "outsider@")}"\n{body}')
        outsider = _doctor(config, capsys)
        assert outsider["database schema"].startswith("✗")
        assert "permission denied for table acrbot_schema" in outsider["database schema"]
        assert outsider["database rights"].startswith("✗")
        assert "cannot create a table" in outsider["database rights"]
    finally:
        from bot.state import engine_pg

        engine_pg.close_all()
        pg_cluster.sql("DROP OWNED BY outsider CASCADE", database=pg_url.rsplit("/", 1)[1])
        pg_cluster.sql("DROP ROLE outsider")
