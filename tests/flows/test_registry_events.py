"""Registry events processed in-process: watch lines and folds, drift alerts and audit rows,
the bot's own deletions told apart, write-once tags, the `events` command and `show` from the
tag index."""

import json

import pytest

from bot.core.registry_events import parse
from bot.state.registry_events import EventLog
from bot.state.tag_index import TagIndex
from handlers.events.process import POST, EventProcessor
from tests.support.fixtures import CountingRegistry
from tests.support.registry_payloads import DIGEST, OTHER, distribution_event, envelope

SECRET = "e" * 32
WATCH, SECURITY = "C0WATCH", "C0SECURE"
HOST = "demo.registry.local"


class NoLocks(CountingRegistry):
    """The layout registry as a registry without locks (any OCI registry) sees it."""

    can_lock = False


@pytest.fixture
def events_bot(make_bot):
    return make_bot(**CONFIG)


@pytest.fixture
def nolock_bot(make_bot, registry):
    return make_bot(backend=NoLocks(registry), **CONFIG)


CONFIG = dict(
    events={"secret_env": "EV"},
    watch=[{"repos": ["baseimages/*", "team/*"], "channel": WATCH}],
    slack={"security_channel": SECURITY},
    protect={"tags": ["^latest$"], "immutable": ["^v\\d+\\.\\d+\\.\\d+$"]},
    environ={"EV": SECRET},
)


def feed(bot, *events):
    for event in events:  # the registry's clock is the bot's (the fake clock)
        event.setdefault("timestamp", bot.ctx.clock().isoformat())
    stored = EventLog(bot.ctx.store, clock=bot.ctx.clock).record(parse(envelope(*events)).events)
    EventProcessor(bot.ctx).run_once()
    return stored


def posts(bot, channel=None):
    rows = bot.ctx.store.db.execute(
        "select key, payload from outbox where kind = ? order by id", [POST]
    ).fetchall()
    found = [(k, json.loads(p)) for k, p in rows]
    return [p["text"] for k, p in found if channel is None or p["channel"] == channel]


def audit_actions(bot):
    return [(e.action, e.outcome.split(":")[0]) for e in bot.ctx.audit.entries(last=100)]


def ev(**kw):
    kw.setdefault("host", HOST)
    event = distribution_event(**kw)
    del event["timestamp"]  # feed() dates it
    return event


def test_push_is_posted_once_with_who_where_digest_and_size(events_bot):
    event = ev(repository="team/api", tag="v1")
    assert feed(events_bot, event, event) == 1  # a duplicate in the same body
    assert feed(events_bot, event) == 0  # and the sender's retry
    (line,) = posts(events_bot, WATCH)
    assert line.startswith("*demo*: `demo/team/api:v1` pushed → `sha256:abababababab` (708 B ")
    assert "by ci from 10.0.0.7:5000" in line
    assert ("registry.push", "seen") in audit_actions(events_bot)
    assert posts(events_bot, SECURITY) == []


def test_a_burst_folds_into_one_summary_per_repository(events_bot, clock):
    feed(events_bot, *[ev(id=f"e{i}", repository="team/api", tag=f"t{i}") for i in range(30)])
    assert len(posts(events_bot, WATCH)) == 1
    clock.advance(seconds=61)
    EventProcessor(events_bot.ctx).run_once()
    _first, summary = posts(events_bot, WATCH)
    assert summary.startswith("*demo*: `team/api`: 29 more events in the last minute: push t1")
    assert summary.endswith("and 19 more")
    feed(events_bot, ev(id="after", repository="team/api", tag="late"))  # a new window
    assert len(posts(events_bot, WATCH)) == 3


def test_a_deletion_outside_the_bot_alerts_and_is_audited_as_external(events_bot):
    feed(
        events_bot,
        ev(
            id="d1",
            action="delete",
            repository="team/api",
            tag=None,
            actor="mallory",
            addr="203.0.113.9",
        ),
    )
    (alert,) = posts(events_bot, SECURITY)
    assert "`team/api@sha256:abab" in alert
    assert "was deleted outside the bot by mallory from 203.0.113.9" in alert
    assert ("external.delete", "alert") in audit_actions(events_bot)


def test_the_bots_own_deletion_never_alerts(events_bot):
    bot = events_bot
    digest = bot.registry.resolve("baseimages/fedora", "24")
    assert bot.say("alice", "delete baseimages/fedora:24 --reason EOL").ok
    assert "done" in bot.say("bob", "approve 1").text
    feed(bot, ev(id="own", action="delete", repository="baseimages/fedora", tag="24", digest=None))
    feed(
        bot, ev(id="own2", action="delete", repository="baseimages/fedora", tag=None, digest=digest)
    )
    assert posts(bot, SECURITY) == []
    assert ("registry.untag", "bot's own deletion") in audit_actions(bot)
    # the same digest deleted by someone else a day later is drift again
    bot.ctx.clock.advance(days=1)
    later = ev(id="later", action="delete", repository="baseimages/fedora", tag=None, digest=digest)
    feed(bot, later)
    assert len(posts(bot, SECURITY)) == 1


def test_a_write_once_tag_is_locked_on_push(events_bot):
    bot = events_bot
    digest = bot.registry.push("team/web", "v1.2.3", config={"os": "linux"}, layers=[])
    feed(bot, ev(id="w1", repository="team/web", tag="v1.2.3", digest=digest))
    assert bot.registry.tag_locked("team/web", "v1.2.3")
    assert ("events.lock", "ok") in audit_actions(bot)
    bot.registry.push("team/web", "dev", config={"os": "linux"}, layers=[])
    feed(bot, ev(id="w2", repository="team/web", tag="dev", digest=digest))
    assert not bot.registry.tag_locked("team/web", "dev")  # not write-once
    assert posts(bot, SECURITY) == []


def test_a_protected_tag_moved_and_a_write_once_tag_overwritten_alert(nolock_bot):
    events_bot = nolock_bot
    feed(events_bot, ev(id="a", repository="team/api", tag="latest", digest=DIGEST))
    feed(events_bot, ev(id="b", repository="team/api", tag="latest", digest=OTHER))
    feed(events_bot, ev(id="c", repository="team/web", tag="v1.2.3", digest=DIGEST))
    feed(events_bot, ev(id="d", repository="team/web", tag="v1.2.3", digest=OTHER))
    moved, overwritten = posts(events_bot, SECURITY)
    assert f"protected tag `team/api:latest` was moved from `{DIGEST}` to `{OTHER}`" in moved
    assert f"write-once tag `team/web:v1.2.3` was overwritten: old `{DIGEST}`, new `{OTHER}`" in (
        overwritten
    )
    assert ("external.overwrite", "alert") in audit_actions(events_bot)


def test_events_command_lists_newest_first_with_what_the_bot_made_of_them(events_bot):
    feed(events_bot, ev(id="p", repository="team/api", tag="v1"))
    feed(events_bot, ev(id="x", action="delete", repository="team/api", tag=None))
    reply = events_bot.say("carol", "events team/api --last 5")
    assert reply.text == "The last 2 registry events for `team/api` in demo, newest first."
    assert [r[1] for r in reply.table.rows] == ["delete", "push"]
    assert reply.table.rows[0][-1] == "DRIFT (delete), in a summary"
    assert reply.table.rows[1][-1] == "posted"
    assert events_bot.say("carol", "events nothing/here").text == (
        "No registry events for `nothing/here` in demo yet."
    )


def test_show_reads_the_index_and_says_how_fresh_it_is(nolock_bot):
    bot = nolock_bot
    digest = bot.registry.resolve("baseimages/fedora", "latest")
    TagIndex(bot.ctx.store, clock=bot.ctx.clock).rebuild(
        "demo", "baseimages/fedora", [("latest", digest), ("alias", digest), ("24", OTHER)]
    )
    reply = bot.say("carol", "show baseimages/fedora:latest")
    assert dict(reply.fields)["tags"] == "alias, latest"
    assert reply.notes[-1].startswith("Tags from the live tag index: read in full 2026-11-27")
    assert reply.data["tags_from"] == "index"


def test_a_write_once_tag_is_locked_on_the_fake_acr(make_bot, acr, fake_acr):
    from tests.support.registry_payloads import acr_webhook

    bot = make_bot(backend=acr, **CONFIG)
    fake_acr.push("team/api", "v2.0.0", DIGEST)
    fake_acr.push("team/api", "v2.0.0-rc1", DIGEST)
    for tag in ("v2.0.0", "v2.0.0-rc1"):
        webhook = acr_webhook(id=f"acr-{tag}", repository="team/api", tag=tag)
        webhook["request"]["host"] = fake_acr.login_server
        webhook["timestamp"] = bot.ctx.clock().isoformat()
        EventLog(bot.ctx.store).record(parse(json.dumps(webhook).encode()).events)
    EventProcessor(bot.ctx).run_once()
    tags = fake_acr.state.repositories["team/api"]
    assert tags["v2.0.0"].write_enabled is False and tags["v2.0.0"].delete_enabled is True
    assert tags["v2.0.0-rc1"].write_enabled is True
    assert acr.tag_locked("team/api", "v2.0.0")
    assert ("events.lock", "ok") in audit_actions(bot)
    reply = bot.say("carol", "events team/api --registry prod")
    assert [row[-1] for row in reply.table.rows] == ["in a summary", "locked (write-once), posted"]


def test_an_event_claimed_by_a_worker_killed_mid_way_is_processed_once(events_bot, tmp_path):
    """A process claims the event and is SIGKILLed before it finishes: the event is `running`
    under a dead owner; the next worker's start puts it back, and it is processed once."""
    import subprocess
    import sys

    bot = events_bot
    EventLog(bot.ctx.store).record(
        parse(envelope(ev(id="k1", repository="team/api", tag="v7"))).events
    )
    script = (
        "import os, signal, sys\n"
        "from bot.state.store import Store\n"
        "from bot.state.registry_events import EventLog\n"
        "claimed = EventLog(Store(sys.argv[1])).claim()\n"
        "assert len(claimed) == 1, claimed\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(bot.ctx.config.database)])
    assert done.returncode == -9
    assert bot.ctx.store.db.execute("select state from registry_events").fetchall() == [
        ("running",)
    ]
    assert EventProcessor(bot.ctx).run_once() == 0  # not ours to take while `running`
    assert EventLog(bot.ctx.store).requeue_orphans() == 1
    EventProcessor(bot.ctx).run_once()
    EventProcessor(bot.ctx).run_once()
    assert len(posts(bot, WATCH)) == 1
    assert [a for a in audit_actions(bot) if a[0] == "registry.push"] == [("registry.push", "seen")]


def test_a_reconcile_reports_what_changed_without_an_event(nolock_bot, clock):
    """ACR sends no webhook for an untag; a bot that was down heard nothing: the periodic
    re-read of the registry finds the tag gone, or a protected tag moved, and alerts — unless
    the bot's own deletion in that interval explains it."""
    from handlers.events.reconcile import reconcile_repository

    bot = nolock_bot
    layout = bot.registry.inner
    processor = EventProcessor(bot.ctx)

    def reconcile():
        clock.advance(minutes=30)
        return reconcile_repository(bot.ctx, processor, bot.registry, "baseimages/fedora")

    assert reconcile() == 0  # the first read: nothing to compare with
    layout.untag("baseimages/fedora", "24")
    assert reconcile() == 1
    (alert,) = posts(bot, SECURITY)
    assert "tag `baseimages/fedora:24` disappeared outside the bot (found when the bot re-read" in (
        alert
    )
    assert reconcile() == 0  # told once
    layout.push("baseimages/fedora", "latest", config={"os": "moved"}, layers=[])
    assert reconcile() == 1
    assert "protected tag `baseimages/fedora:latest` was moved" in posts(bot, SECURITY)[-1]
    layout.push("baseimages/fedora", "old", config={"os": "old"}, layers=[])
    reconcile()
    assert bot.say("alice", "delete baseimages/fedora:old --reason EOL").ok
    assert "done" in bot.say("bob", "approve 1").text
    assert reconcile() == 1  # seen, and explained by the bot's own deletion
    assert len(posts(bot, SECURITY)) == 2
    assert ("registry.untag", "bot's own deletion") in audit_actions(bot)


def test_an_event_whose_processing_fails_goes_back_to_the_queue(events_bot):
    """The database refuses the write half-way (a trigger raising, as a full disk would):
    nothing of the event is kept, it is queued again, and the next pass does it once."""
    import sqlite3

    bot = events_bot
    EventLog(bot.ctx.store).record(parse(envelope(ev(id="f1", repository="team/api"))).events)
    db = bot.ctx.store.db
    db.execute(
        "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    with pytest.raises(sqlite3.IntegrityError, match="disk is full"):
        EventProcessor(bot.ctx).run_once()
    assert db.execute("select state from registry_events").fetchall() == [("queued",)]
    assert [a for a in audit_actions(bot) if a[0].startswith("registry.")] == []
    db.execute("DROP TRIGGER refuse_outbox")
    assert EventProcessor(bot.ctx).run_once() == 1
    assert len(posts(bot, WATCH)) == 1


def test_an_event_another_worker_finished_meanwhile_leaves_no_second_copy(events_bot):
    """A worker on another host took the event over after its lease (the first one was only
    slow): whichever finishes second rolls its copy back — one message, one audit row."""
    bot = events_bot
    EventLog(bot.ctx.store).record(parse(envelope(ev(id="twice", repository="team/api"))).events)
    (stored,) = EventLog(bot.ctx.store).claim()
    first, second = EventProcessor(bot.ctx), EventProcessor(bot.ctx)
    assert first.process(stored).posted == (WATCH,)
    assert second.process(stored).posted == ()
    assert len(posts(bot, WATCH)) == 1
    assert [a for a in audit_actions(bot) if a[0] == "registry.push"] == [("registry.push", "seen")]


def test_a_purge_the_bot_executed_never_alerts(events_bot):
    bot = events_bot
    assert bot.say("alice", "purge --filter 'testimages/*:.*' --keep 1 --reason x").ok
    assert "done" in bot.say("bob", "approve 1").text
    items = bot.ctx.store.db.execute(
        "select repository, kind, tag, digest from purge_items where state = 'deleted'"
    ).fetchall()
    assert items
    events = []
    for i, (repository, kind, tag, digest) in enumerate(items):
        if kind == "tag":
            events.append(
                ev(id=f"p{i}", action="delete", repository=repository, tag=tag, digest=None)
            )
        else:
            events.append(
                ev(id=f"p{i}", action="delete", repository=repository, tag=None, digest=digest)
            )
    feed(bot, *events)
    assert posts(bot, SECURITY) == []
    outcomes = {a for a in audit_actions(bot) if a[0].startswith(("registry.", "external."))}
    assert outcomes and all(o == "bot's own deletion" for _, o in outcomes)
