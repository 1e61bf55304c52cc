"""The audit: every command lands in it, and any edit or removal is detected; on both engines
(SQLite; PostgreSQL, marked `postgres`), with appends from several connections in one chain."""

import sqlite3
import threading
from datetime import UTC, datetime

import pytest

from bot.state.audit import Audit
from bot.state.store import Store


@pytest.fixture
def store_options(database):
    return database.options


def flow(bot):
    bot.say("alice", "tags baseimages/fedora")
    bot.say("alice", "delete baseimages/fedora:24 --reason 'EOL'")
    bot.say("carol", "approve 1")
    bot.say("bob", "approve 1")


def test_every_command_decision_and_outcome_is_recorded(bot):
    flow(bot)
    rows = [
        (e.actor, e.action, e.target, e.request_id, e.outcome)
        for e in bot.ctx.audit.entries(last=100)
    ]
    assert rows == [
        ("alice", "tags", "demo/baseimages/fedora", None, "ok"),
        ("alice", "request.create", "demo/baseimages/fedora:24", 1, "pending"),
        ("alice", "delete", "demo/baseimages/fedora:24", 1, "ok"),
        ("carol", "approve", "#1", 1, "refused"),
        ("bob", "request.approve", "demo/baseimages/fedora:24", 1, "1/1"),
        ("acrbot", "request.done", "demo/baseimages/fedora:24", 1, "done"),
        ("bob", "approve", "#1", 1, "ok"),
    ]
    refused = bot.ctx.audit.entries(actor="carol")[0]
    assert refused.error.startswith("`approve` needs owner")


def test_unparsable_input_is_not_copied_into_the_audit(bot):
    bot.say("alice", "hunter2-is-my-password")
    entry = bot.ctx.audit.entries(last=1)[0]
    assert (entry.action, entry.outcome, entry.error) == (
        "(unparsed)",
        "refused",
        "could not parse the command",
    )


def test_chain_verifies(bot):
    flow(bot)
    result = bot.ctx.audit.verify()
    assert result.ok and result.checked == 7


def test_triggers_refuse_edits_and_deletes(bot):
    flow(bot)
    db = bot.ctx.store.db
    with pytest.raises(bot.ctx.store.errors, match="append-only"):
        db.execute("update audit set actor = 'mallory' where id = 3")
    with pytest.raises(bot.ctx.store.errors, match="append-only"):
        db.execute("delete from audit where id = 3")


def tamper(store, sql):
    """What someone with the database file could do: drop the guard, then edit."""
    if store.engine == "postgresql":  # the table's owner may drop its triggers
        for trigger in ("audit_no_update", "audit_no_delete"):
            store.db.execute(f"DROP TRIGGER {trigger} ON audit")
        store.db.execute(sql)
        return
    conn = sqlite3.connect(store.path)
    conn.executescript(f"DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; {sql};")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        (
            "update audit set actor = 'mallory' where id = 4",
            "row 4: content does not match its hash (edited)",
        ),
        (
            "update audit set outcome = 'ok' where id = 4",
            "row 4: content does not match its hash (edited)",
        ),
        ("delete from audit where id = 3", "rows 3–3 are missing"),
        ("delete from audit where id = 7", "the chain head is 6:"),
    ],
)
def test_verify_detects_edits_and_deletions(bot, sql, problem):
    flow(bot)
    tamper(bot.ctx.store, sql)
    result = Audit(Store(bot.ctx.store.target)).verify()
    assert not result.ok
    assert any(p.startswith(problem) for p in result.problems), result.problems


def test_verify_detects_a_rewritten_row_with_a_recomputed_hash(bot):
    """Recomputing one row's hash is not enough: the next row no longer links to it."""
    from bot.state.audit import entry_hash

    flow(bot)
    row = dict(next(bot.ctx.store.db.query("select * from audit where id = 4")))
    row["actor"] = "mallory"
    new_hash = entry_hash(row["prev_hash"], row)
    tamper(bot.ctx.store, f"update audit set actor = 'mallory', hash = '{new_hash}' where id = 4")
    problems = Audit(Store(bot.ctx.store.target)).verify().problems
    assert "row 5: does not link to the row before it" in problems


def test_grant_and_revoke_rows_name_who_which_role_and_where(bot):
    bot.say("bob", "grant carol contributor --repo 'testimages/*'")
    bot.say("bob", "revoke carol contributor --repo 'testimages/*'")
    rows = [(e.action, e.target) for e in bot.ctx.audit.entries(last=2)]
    assert rows == [
        ("grant", "carol contributor on demo/testimages/*"),
        ("revoke", "carol contributor on demo/testimages/*"),
    ]


def test_verify_never_cries_wolf_while_commands_are_committed(database):
    """Rows and head are read from one snapshot (30 of 30 runs said BROKEN before)."""
    import time

    store = database.store()
    audit = Audit(store)
    stop = threading.Event()

    def load():
        writer = Audit(store)
        while not stop.is_set():
            writer.append(
                actor="bot", action="tags", target="x", outcome="ok", at=datetime.now(UTC)
            )

    thread = threading.Thread(target=load)
    thread.start()
    results = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            len(results) < 30 or results[-1].checked - results[0].checked < 50
        ):
            results.append(audit.verify())
    finally:
        stop.set()
        thread.join()
    assert [r.problems for r in results if not r.ok] == []
    assert results[-1].checked - results[0].checked >= 50  # commits landed while verifying


def test_audit_appends_from_several_connections_make_one_chain(database):
    """Two stores (two pools or two files' connections: what two replicas are), two threads
    each, appending at once: every row lands, and the chain verifies (on PostgreSQL the
    append takes the chain's lock, so no two rows claim the same place)."""
    stores = [database.store(), database.store()]
    start = threading.Barrier(4)
    errors = []

    def append(store, name):
        audit = Audit(store)
        start.wait()
        try:
            for n in range(25):
                audit.append(
                    actor=name, action="tags", target=str(n), outcome="ok", at=datetime.now(UTC)
                )
        except Exception as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=append, args=(store, f"{i}{j}"))
        for i, store in enumerate(stores)
        for j in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    result = Audit(database.store()).verify()
    assert result.ok, result.problems
    assert result.checked == 100
