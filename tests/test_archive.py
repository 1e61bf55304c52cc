"""The audit archive in Azure Blob Storage, against Azurite: order, outage, no gaps, no dups."""

import itertools
import json
import subprocess
import sys
import time

import pytest

from bot.app import build_dispatcher, ship_audit
from bot.archive import ArchiveUnavailable
from bot.policy import Grant, Role
from tests.conftest import make_config

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
