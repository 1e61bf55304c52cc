"""The audit archive in Azure Blob Storage, against Azurite: order, outage, no gaps, no dups."""

import itertools
import json
import subprocess
import sys
import time

import pytest

from bot.app import build_dispatcher, ship_audit
from bot.core.policy import Grant, Role
from bot.ops.archive import ArchiveUnavailable
from tests.support.fixtures import make_config

_containers = itertools.count(1)


@pytest.fixture
def bot(tmp_path, clock, registry, azurite):
    container = f"audit-{next(_containers)}"
    config = make_config(
        tmp_path,
        environ={"AUDIT_BLOB": azurite.connection_string},
        audit={"blob": {"connection_string_env": "AUDIT_BLOB", "container": container}},
    )
    dispatcher = build_dispatcher(config, clock=clock, registries=[registry])
    for user, role in (("alice", Role.CONTRIBUTOR), ("bob", Role.OWNER), ("carol", Role.READER)):
        dispatcher.ctx.roles.grant(Grant(user, role), by="test", at=clock())
    return dispatcher


def archived(bot):
    return list(bot.ctx.archive.rows())


def test_rows_are_archived_in_order_with_their_hashes(bot):
    bot.handle("tags baseimages/fedora", user="carol")
    bot.handle("delete baseimages/fedora:24 --reason EOL", user="alice")
    bot.handle("approve 1", user="bob")
    assert bot.ctx.archive.ship() == 6
    rows = archived(bot)
    local = bot.ctx.audit.entries(last=100)
    assert [r["id"] for r in rows] == [e.id for e in local] == [1, 2, 3, 4, 5, 6]
    assert [r["hash"] for r in rows] == [e.hash for e in local]
    names = [b.name for b in bot.ctx.archive._container.list_blobs()]
    assert names == ["audit/2026/11/27.jsonl"]
    check = bot.ctx.archive.verify()
    assert (check.ok, check.checked) == (True, 6)
    assert bot.ctx.archive.ship() == 0


def test_rows_go_to_the_blob_of_their_day(bot, clock):
    bot.handle("whoami", user="carol")
    clock.advance(days=1)
    bot.handle("whoami", user="carol")
    bot.ctx.archive.ship()
    names = sorted(b.name for b in bot.ctx.archive._container.list_blobs())
    assert names == ["audit/2026/11/27.jsonl", "audit/2026/11/28.jsonl"]
    assert bot.ctx.archive.verify().ok


def test_outage_queues_rows_and_ships_them_once_it_is_back(bot, azurite):
    bot.handle("whoami", user="carol")
    bot.ctx.archive.ship()
    azurite.stop()
    try:
        for _ in range(3):
            started = time.monotonic()
            assert bot.handle("tags baseimages/alpine", user="carol").ok
            ship_audit(bot.ctx)  # what the console does after each command
            assert time.monotonic() - started < 2  # the outage does not hold the command
        with pytest.raises(ArchiveUnavailable, match="3 rows queued"):
            bot.ctx.archive.ship()
    finally:
        azurite.start()
    assert bot.ctx.archive.ship() == 3
    assert [r["id"] for r in archived(bot)] == [1, 2, 3, 4]
    assert bot.ctx.archive.verify().ok


def test_an_append_that_landed_unrecorded_is_not_sent_twice(bot):
    bot.handle("whoami", user="carol")
    bot.ctx.archive.ship()
    before = dict(bot.ctx.store.db.execute("select key, value from meta").fetchall())
    bot.handle("repos", user="carol")
    bot.handle("whoami", user="carol")
    bot.ctx.archive.ship()
    # The process "died" after appending rows 2-3 but before recording it:
    with bot.ctx.store.transaction() as db:
        for key in ("archive_shipped", "archive_position"):
            db.execute("update meta set value = ? where key = ?", [before[key], key])
    bot.handle("registries", user="carol")
    assert bot.ctx.archive.ship() == 1
    assert [r["id"] for r in archived(bot)] == [1, 2, 3, 4]


def test_archive_alone_detects_an_edited_line(bot):
    bot.handle("whoami", user="carol")
    bot.handle("repos", user="carol")
    bot.ctx.archive.ship()
    blob = bot.ctx.archive._container.get_blob_client("audit/2026/11/27.jsonl")
    lines = blob.download_blob().readall().decode().splitlines()
    row = json.loads(lines[0])
    row["actor"] = "mallory"
    lines[0] = json.dumps(row)
    blob.delete_blob()
    blob.create_append_blob()
    blob.append_block(("\n".join(lines) + "\n").encode())
    assert bot.ctx.archive.verify().problems == (
        "archive row 1: content does not match its hash (edited)",
    )


def test_cli_verify_blob(tmp_path, azurite, registry):
    config = tmp_path / "acrbot.toml"
    config.write_text(
        '[[registry]]\nname = "demo"\ntype = "oci-layout"\npath = "registry"\n'
        '[audit.blob]\nconnection_string_env = "AUDIT_BLOB"\ncontainer = "cli-audit"\n'
    )
    env = {"AUDIT_BLOB": azurite.connection_string, "PATH": "/usr/bin:/bin"}

    def acrbot(*args):
        return subprocess.run(
            [sys.executable, "-m", "bot", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    assert acrbot("init").returncode == 0
    assert acrbot("roles", "grant", "carol", "reader").returncode == 0
    result = acrbot("audit", "verify", "--blob")
    assert (result.returncode, result.stdout) == (
        0,
        "audit archive intact: 1 rows verified from the archive alone (not keyed); the "
        "database's 1 rows match it\n",
    )
    assert azurite.connection_string not in result.stdout + result.stderr


# -- `audit verify --blob` reads, and compares both ways (issue 27, item 2) ----------------


@pytest.fixture
def deployment(tmp_path, azurite, monkeypatch):
    """A deployment whose first rows are archived, run through the CLI as an operator would."""
    container = f"verify-{next(_containers)}"
    monkeypatch.setenv("AUDIT_BLOB", azurite.connection_string)
    monkeypatch.setenv("ACRBOT_AUDIT_KEY", "k" * 32)
    config = tmp_path / "acrbot.toml"
    config.write_text(
        '[[registry]]\nname = "demo"\ntype = "oci-layout"\npath = "registry"\n'
        '[audit]\nkey_env = "ACRBOT_AUDIT_KEY"\n'
        f'[audit.blob]\nconnection_string_env = "AUDIT_BLOB"\ncontainer = "{container}"\n'
    )
    assert cli(["init", "--config", str(config)]) == 0
    for user in ("carol", "dave"):  # each ships what is queued: rows 1-3
        assert cli(["roles", "grant", user, "reader", "--config", str(config)]) == 0
    return config


def cli(argv):
    from bot.cli import main

    return main(argv)


def verify(config, capsys, *extra):
    capsys.readouterr()
    code = cli(["audit", "verify", "--config", str(config), *extra])
    return code, capsys.readouterr().out


def container_of(config):
    from bot.core.config import load
    from bot.ops.archive import container_client

    return container_client(load(config).archive)


def blobs(config):
    container = container_of(config)
    return {
        b.name: container.get_blob_client(b.name).download_blob().readall()
        for b in container.list_blobs()
    }


def replace_blob(config, name, lines):
    blob = container_of(config).get_blob_client(name)
    blob.delete_blob()
    blob.create_append_blob()
    if lines:
        blob.append_block(b"".join(lines))


def test_verify_blob_writes_nowhere_and_does_not_migrate(deployment, capsys):
    """Before: it opened the database read-write (migrating it) and shipped the suspect
    copy's unshipped rows into the archive it was checking."""
    import hashlib
    import sqlite3
    from datetime import UTC, datetime

    from bot.state.audit import Audit
    from bot.state.store import Store

    database = deployment.parent / "acrbot.db"
    store = Store(database)
    for _ in range(2):  # rows the archive has not seen: a suspect copy's, say
        Audit(store, key=b"k" * 32).append(
            actor="mallory", action="tags", target="x", outcome="ok", at=datetime.now(UTC)
        )
    store.close()
    conn = sqlite3.connect(database)  # the copy is from an older release: schema 4
    conn.executescript(
        "DROP TABLE purge_items; DROP TABLE messages; DROP TABLE retention_runs; "
        "ALTER TABLE requests DROP COLUMN spec; PRAGMA user_version = 4; "
        "PRAGMA wal_checkpoint(TRUNCATE);"
    )
    conn.close()
    files = sorted(p.name for p in deployment.parent.iterdir())
    before = (blobs(deployment), hashlib.sha256(database.read_bytes()).hexdigest())
    code, out = verify(deployment, capsys, "--blob")
    assert (code, out) == (
        0,
        "audit archive intact: 3 rows verified from the archive alone (keyed (HMAC) from "
        "row 1); the database's 5 rows match it; 2 newer rows not shipped yet\n",
    )
    assert (blobs(deployment), hashlib.sha256(database.read_bytes()).hexdigest()) == before
    assert sorted(p.name for p in deployment.parent.iterdir()) == files
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    conn.close()


def test_a_truncated_archive_fails_both_verifications(deployment, capsys):
    """Before: the archive alone verified (a shorter chain is still a chain) and the
    comparison looked only from the archive to the database."""
    [(name, content)] = blobs(deployment).items()
    replace_blob(deployment, name, content.splitlines(keepends=True)[:-1])
    code, out = verify(deployment, capsys, "--blob")
    assert code == 1
    assert out.splitlines() == [
        "audit archive BROKEN (2 rows checked; 3 in the database):",
        "  row 3 of the database, shipped, is not in the archive (the archive was cut or edited)",
    ]
    code, out = verify(deployment, capsys)
    assert code == 1 and "row 3 of the database, shipped, is not in the archive" in out


def test_the_archive_is_verified_with_the_configured_keyed_from(deployment, capsys):
    """Before: `--blob` took keyed_from from the database, so a rewritten archive with
    plain hashes passed once the database said the key started past its end."""
    import json
    import sqlite3

    from bot.state.audit import GENESIS, entry_hash

    [(name, content)] = blobs(deployment).items()
    prev, lines = GENESIS, []
    for raw in content.splitlines():
        row = json.loads(raw)
        row["actor"] = "mallory" if row["actor"] == "cli:root" else row["actor"]
        row["prev_hash"] = prev
        row["hash"] = prev = entry_hash(prev, row)
        lines.append((json.dumps(row) + "\n").encode())
    replace_blob(deployment, name, lines)
    conn = sqlite3.connect(deployment.parent / "acrbot.db")
    conn.execute("insert or replace into meta values ('audit_keyed_from', '99')")
    conn.commit()
    conn.close()
    code, out = verify(deployment, capsys, "--blob")
    assert code == 1
    assert (
        "  archive rows 1–3 are plain SHA-256, but the audit key applies from archive row 1 "
        "([audit] keyed_from)"
    ) in out.splitlines()
    assert "  row 1 differs from its archived copy" in out.splitlines()


def test_verify_blob_refuses_when_the_archive_cannot_be_read(deployment, capsys, azurite):
    azurite.stop()
    try:
        code = cli(["audit", "verify", "--blob", "--config", str(deployment)])
    finally:
        azurite.start()
    assert code == 1
    assert capsys.readouterr().err.startswith("acrbot: audit archive unavailable (")
