"""The audit key: where it starts is never the database's to decide (issue 27, item 1).

Someone who can write the database file can drop the triggers, rewrite rows, recompute every
plain SHA-256 hash and rewrite any `meta` row. With `[audit] key_env` set, none of that may
leave `acrbot audit verify` saying "intact".
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.app import build_dispatcher
from bot.cli import main
from bot.core.config import load
from bot.core.policy import Grant, Role
from bot.demo import seed_registry
from bot.state.audit import GENESIS, entry_hash

KEY = "k" * 32
COLUMNS = ("id", "ts", "actor", "action", "target", "request_id", "outcome", "error")


def write_config(tmp_path: Path, *, keyed: bool = True, extra: str = "") -> Path:
    config = tmp_path / "acrbot.toml"
    audit = '[audit]\nkey_env = "ACRBOT_AUDIT_KEY"\n' + extra if keyed else ""
    config.write_text(
        'database = "acrbot.db"\n'
        '[[registry]]\nname = "demo"\ntype = "oci-layout"\npath = "registry"\n' + audit
    )
    return config


@pytest.fixture
def deployment(tmp_path, monkeypatch):
    """A keyed deployment where alice asked to delete an image and bob approved it."""
    monkeypatch.setenv("ACRBOT_AUDIT_KEY", KEY)
    seed_registry(tmp_path / "registry")
    config = write_config(tmp_path)
    assert main(["init", "--config", str(config)]) == 0
    run(
        config,
        ("alice", "tags baseimages/fedora"),
        ("alice", "delete baseimages/fedora:24 --reason EOL"),
        ("bob", "approve 1"),
    )
    return config


def run(config: Path, *said: tuple[str, str]) -> None:
    dispatcher = build_dispatcher(load(config))
    roles = dispatcher.ctx.roles
    for user, role in (("alice", Role.CONTRIBUTOR), ("bob", Role.OWNER)):
        roles.grant(Grant(user, role), by="test", at=dispatcher.ctx.clock())
    for user, text in said:
        dispatcher.handle(text, user=user)
    dispatcher.ctx.store.close()


def verify(config: Path, capsys, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["audit", "verify", "--config", str(config), *extra])
    return code, capsys.readouterr().out


def database(config: Path) -> Path:
    return config.parent / "acrbot.db"


def rows_of(path: Path) -> list[dict]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("select * from audit order by id")]
    conn.close()
    return rows


def rewrite(path: Path, edit, *, meta: dict[str, str | None] | None = None) -> None:
    """The attack: drop the triggers, edit the rows, renumber and re-hash them all with plain
    SHA-256, then set `meta` rows as wished (None deletes one)."""
    rows = edit(rows_of(path))
    conn = sqlite3.connect(path)
    conn.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
    conn.execute("delete from audit")
    prev = GENESIS
    for number, row in enumerate(rows, 1):
        row = {**row, "id": number, "prev_hash": prev}
        row["hash"] = entry_hash(prev, row)
        conn.execute(
            "insert into audit values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [*(row[c] for c in COLUMNS), row["prev_hash"], row["hash"]],
        )
        prev = row["hash"]
    settings = {"audit_head": f"{len(rows)}:{prev}", **(meta or {})}
    for key, value in settings.items():
        conn.execute("delete from meta where key = ?", [key])
        if value is not None:
            conn.execute("insert into meta values (?, ?)", [key, value.format(n=len(rows))])
    conn.commit()
    conn.close()


def bob_becomes_mallory_and_a_row_goes(rows: list[dict]) -> list[dict]:
    rows = [dict(r, actor="mallory") if r["actor"] == "bob" else r for r in rows]
    return [r for r in rows if r["action"] != "tags@console" and r["action"] != "tags"]


@pytest.mark.parametrize(
    "meta",
    [
        pytest.param({"audit_keyed_from": "{n}1"}, id="keyed-from-moved-past-the-end"),
        pytest.param({"audit_keyed_from": None}, id="keyed-from-deleted"),
    ],
)
def test_a_rewritten_history_fails_verification_with_the_key_set(deployment, capsys, meta):
    """The issue's reproduction: before the fix both said `audit chain intact: … (keyed
    (HMAC))` (or "not keyed"), exit 0."""
    code, out = verify(deployment, capsys)
    assert code == 0 and out.startswith("audit chain intact: ")
    rewrite(database(deployment), bob_becomes_mallory_and_a_row_goes, meta=meta)
    assert "mallory" in {r["actor"] for r in rows_of(database(deployment))}
    code, out = verify(deployment, capsys)
    assert code == 1 and out.startswith("audit chain BROKEN"), out
    # …and still after the next command, which writes a keyed row on top.
    run(deployment, ("alice", "repos"))
    code, out = verify(deployment, capsys)
    assert code == 1 and out.startswith("audit chain BROKEN"), out


def test_a_truncated_chain_fails_verification_the_head_is_keyed(deployment, capsys):
    """Cutting the newest rows and writing a matching head: the head carries a MAC."""
    path = database(deployment)
    rows = rows_of(path)
    conn = sqlite3.connect(path)
    conn.executescript("DROP TRIGGER audit_no_delete;")
    conn.execute("delete from audit where id > ?", [len(rows) - 2])
    last = rows[-3]
    conn.execute(
        "update meta set value = ? where key = 'audit_head'", [f"{last['id']}:{last['hash']}"]
    )
    conn.commit()
    conn.close()
    code, out = verify(deployment, capsys)
    assert code == 1, out
    assert "the recorded chain head is not signed with the audit key" in out


def test_an_untampered_keyed_chain_verifies_and_starts_with_its_keyed_row(deployment, capsys):
    code, out = verify(deployment, capsys)
    assert (code, out.split(";")[0]) == (
        0,
        "audit chain intact: 7 entries verified (keyed (HMAC) from row 1)",
    )
    first = rows_of(database(deployment))[0]
    assert (first["actor"], first["action"], first["target"]) == (
        "acrbot",
        "audit.keyed",
        "keyed from row 1",
    )


def test_without_the_key_a_keyed_chain_is_not_called_intact(deployment, capsys, monkeypatch):
    write_config(deployment.parent, keyed=False)
    code, out = verify(deployment, capsys)
    assert code == 1
    assert "rows from 1 on are keyed: set the audit key ([audit] key_env) to verify them" in out


def test_an_older_plain_chain_upgrades_by_naming_its_keyed_row_in_the_config(
    tmp_path, capsys, monkeypatch
):
    """The story for a database begun without a key: set the key, `acrbot init` writes the
    `audit.keyed` row under it and names it; `keyed_from` in the config says where the key
    starts, so the plain rows before it verify — and stay pinned by that row's HMAC."""
    monkeypatch.setenv("ACRBOT_AUDIT_KEY", KEY)
    seed_registry(tmp_path / "registry")
    config = write_config(tmp_path, keyed=False)
    assert main(["init", "--config", str(config)]) == 0
    run(config, ("alice", "tags baseimages/fedora"), ("bob", "repos"))
    write_config(tmp_path)  # the key is set
    capsys.readouterr()
    assert main(["init", "--config", str(config)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(
        "The audit key applies from row 3 (an `audit.keyed` row records it): add "
        "`keyed_from = 3` to [audit]"
    )
    run(config, ("alice", "repos"))
    code, out = verify(config, capsys)
    assert code == 1
    assert "  rows 1–2 are plain SHA-256, but the audit key applies from row 1" in out
    assert "row 3 is the first keyed row" in out and "`keyed_from = 3` in [audit]" in out
    write_config(tmp_path, extra="keyed_from = 3\n")
    code, out = verify(config, capsys)
    assert (code, out.split(";")[0]) == (
        0,
        "audit chain intact: 4 entries verified (keyed (HMAC) from row 3)",
    )
    # The plain rows are pinned: rewriting them (hashes recomputed) breaks the link into
    # the keyed row, whose HMAC covers the plain row before it.
    path = database(config)
    row = rows_of(path)[1]
    row["actor"] = "mallory"
    conn = sqlite3.connect(path)
    conn.executescript("DROP TRIGGER audit_no_update;")
    conn.execute(
        "update audit set actor = 'mallory', hash = ? where id = 2",
        [entry_hash(row["prev_hash"], row)],
    )
    conn.commit()
    conn.close()
    code, out = verify(config, capsys)
    assert code == 1 and "row 3: does not link to the row before it" in out, out


def test_a_pinned_keyed_from_is_not_moved_by_a_rebuilt_chain(tmp_path, capsys, monkeypatch):
    """Cut the keyed rows, rebuild a plain chain past them: the next command's keyed rows
    do not make it verify, because where the key starts is the configuration's."""
    monkeypatch.setenv("ACRBOT_AUDIT_KEY", KEY)
    seed_registry(tmp_path / "registry")
    config = write_config(tmp_path, extra="keyed_from = 1\n")
    assert main(["init", "--config", str(config)]) == 0
    run(config, ("alice", "tags baseimages/fedora"), ("bob", "approve 1"))
    rewrite(database(config), lambda rows: [dict(r, action="whoami") for r in rows])
    run(config, ("alice", "repos"))
    code, out = verify(config, capsys)
    assert code == 1
    assert "rows 1–3 are plain SHA-256, but the audit key applies from row 1" in out


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ("keyed_from = 0\n", "audit.keyed_from: expected the id of the first keyed audit row"),
        ('keyed_from = "3"\n', "audit.keyed_from: expected the id of the first keyed audit row"),
    ],
)
def test_keyed_from_is_checked(tmp_path, monkeypatch, extra, error):
    from bot.core.errors import ConfigError

    monkeypatch.setenv("ACRBOT_AUDIT_KEY", KEY)
    with pytest.raises(ConfigError, match=error):
        load(write_config(tmp_path, extra=extra))
    config = write_config(tmp_path, keyed=False)
    config.write_text(config.read_text() + "[audit]\nkeyed_from = 3\n")
    with pytest.raises(ConfigError, match=r"audit\.keyed_from: only with key_env"):
        load(config)


def test_a_chain_keyed_by_an_earlier_release_upgrades_the_same_way(tmp_path, capsys, monkeypatch):
    """Earlier releases recorded where the key started in `meta.audit_keyed_from` and left
    the head unsigned: verify names the row, and `acrbot init` signs the head."""
    from datetime import UTC, datetime

    monkeypatch.setenv("ACRBOT_AUDIT_KEY", KEY)
    seed_registry(tmp_path / "registry")
    config = write_config(tmp_path, keyed=False)
    assert main(["init", "--config", str(config)]) == 0
    path = database(config)
    conn = sqlite3.connect(path)
    prev = GENESIS
    for number in range(1, 5):
        row = dict.fromkeys(COLUMNS)
        row.update(id=number, ts=datetime.now(UTC).isoformat(), actor="bob", action="repos")
        row.update(target="demo", outcome="ok", prev_hash=prev)
        row["hash"] = prev = entry_hash(prev, row, KEY.encode() if number >= 3 else None)
        conn.execute(
            "insert into audit values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [*(row[c] for c in COLUMNS), row["prev_hash"], row["hash"]],
        )
    conn.execute("insert into meta values ('audit_keyed_from', '3')")
    conn.execute("insert into meta values ('audit_head', ?)", [f"4:{prev}"])
    conn.commit()
    conn.close()
    write_config(tmp_path)
    code, out = verify(config, capsys)
    assert code == 1
    assert "`keyed_from = 3` in [audit]" in out
    assert "the recorded chain head is not signed with the audit key" in out
    write_config(tmp_path, extra="keyed_from = 3\n")
    assert main(["init", "--config", str(config)]) == 0
    code, out = verify(config, capsys)
    assert (code, out.split(";")[0]) == (
        0,
        "audit chain intact: 4 entries verified (keyed (HMAC) from row 3)",
    )
    write_config(tmp_path, keyed=False)  # without the key: never "intact"
    code, out = verify(config, capsys)
    assert code == 1 and "rows from 3 on are keyed: set the audit key" in out


def test_a_plain_chain_with_the_key_set_says_how_to_start_the_keyed_chain(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("ACRBOT_AUDIT_KEY", KEY)
    seed_registry(tmp_path / "registry")
    config = write_config(tmp_path, keyed=False)
    assert main(["init", "--config", str(config)]) == 0
    run(config, ("bob", "repos"))
    write_config(tmp_path)
    code, out = verify(config, capsys)
    assert code == 1
    assert "  no row is keyed, although the audit key is set: `acrbot init` starts" in out
