"""`[[policy]]` rules through the whole bot: approvals and approvers per repository, freezes,
reasons, ttl, max_purge, typed confirmation, break-glass and its review, `policy`."""

import pytest

from bot.core.request_types import State
from bot.state.reviews import Reviews
from handlers.requests import break_glass, rules_gate

# The fixtures' clock starts on Friday 2026-11-27 09:00 UTC.
PROD = {
    "name": "prod",
    "repos": ["baseimages/*"],
    "approvals": {"delete": 2, "delete_manifest": 2, "purge": 2},
    "approvers": ["security"],
    "reason_min": 10,
    "ttl": "4h",
    "freeze": [{"cron": "0 16 * * FRI", "duration": "64h"}],
    "max_purge": 1,
    "break_glass": True,
}
SANDBOX = {"name": "sandbox", "repos": ["testimages/*"], "approvals": {"delete": 1}}
GROUPS = {"security": ["erin"]}
FEDORA = "delete baseimages/fedora:24 --reason 'end of life since 2017'"


@pytest.fixture
def store_options(database):
    """Every test here on both engines: reviews and held requests are new tables and queries
    (a review read by cursor description broke the sweep on PostgreSQL)."""
    return database.options


@pytest.fixture
def prod(make_bot):
    bot = make_bot(policy=[PROD, SANDBOX], groups=GROUPS)
    bot.grant("frank", "owner")
    return bot


def tags_of(bot, repository):
    return sorted(t.name for t in bot.registry.all_tags(repository))


def test_policy_rule_needs_two_approvals_one_from_its_approvers(prod):
    created = prod.say("alice", FEDORA)
    assert created.request.required == 2
    assert created.text.endswith(
        "Needs 2 approvals, one from security, a reason of 10+ characters — rule prod; 0/2."
    )
    assert prod.say("bob", "approve 1").text == (
        "Approval recorded for request #1; 1 more needed, one from security (rule prod)."
    )
    # frank is an owner but not in security: the quorum's count is met, the rule's is not
    assert prod.say("frank", "approve 1").text == (
        "Approval recorded for request #1; 0 more needed, one from security (rule prod)."
    )
    assert tags_of(prod, "baseimages/fedora") == ["24", "latest"]
    fields = dict(prod.say("carol", "request 1").fields)
    assert fields["policy"] == (
        "needs 2 approvals, one from security, a reason of 10+ characters — rule prod; 2/2"
    )
    assert prod.say("erin", "approve 1").text.startswith("Request #1 approved and done")
    assert tags_of(prod, "baseimages/fedora") == ["latest"]


def test_policy_sandbox_rule_and_default_keep_their_own_counts(prod):
    assert prod.say("alice", "delete testimages/nginx:1.25 --reason x").request.required == 1
    assert prod.say("alice", "delete webserver/nginx:1.24 --reason x").request.required == 1
    created = prod.say("alice", "delete testimages/wordpress:6.4 --reason x")
    assert created.text == (
        "Request #3 created: waiting for 1 approval from an owner (not you). "
        "Needs 1 approval — rule sandbox; 0/1."
    )


def test_policy_short_reason_is_refused_naming_the_rule(prod):
    reply = prod.say("alice", "delete baseimages/fedora:24 --reason EOL")
    assert reply.text == (
        "rule prod needs a --reason of at least 10 characters (yours has 3); nothing was requested"
    )
    assert prod.ctx.requests.list() == []


def test_policy_ttl_is_the_rules(prod, clock):
    request = prod.say("alice", FEDORA).request
    assert request.expires_at - request.created_at == __import__("datetime").timedelta(hours=4)


def test_policy_freeze_refuses_a_request_naming_its_end(prod, clock):
    clock.advance(hours=8)  # Friday 17:00
    reply = prod.say("alice", FEDORA)
    assert reply.text == (
        "rule prod is in a freeze until 2026-11-30 08:00 UTC: no deletion is requested or "
        "carried out before then; nothing was requested (an incident: `--break-glass`, by "
        "oncall)"
    )
    assert prod.say("alice", "delete testimages/nginx:1.25 --reason x").ok  # sandbox: no freeze


def test_policy_approved_then_frozen_waits_and_runs_after_the_window(make_bot, clock):
    rule = {**PROD, "ttl": "4d", "approvers": []}
    bot = make_bot(policy=[rule], groups=GROUPS)
    bot.say("alice", FEDORA)
    bot.say("bob", "approve 1")
    clock.advance(hours=7, minutes=30)  # Friday 16:30: the freeze began meanwhile
    held = bot.say("erin", "approve 1")
    assert held.text == (
        "Request #1 approved, but rule prod is in a freeze until 2026-11-30 08:00 UTC: it runs "
        "then, unless it expires first (2026-12-01 09:00 UTC)."
    )
    assert bot.ctx.requests.get(1).state is State.PENDING
    assert rules_gate.release_held(bot.ctx, _runner(bot)) == []  # still frozen
    assert tags_of(bot, "baseimages/fedora") == ["24", "latest"]
    clock.advance(days=2, hours=16)  # Monday 08:30
    [done] = rules_gate.release_held(bot.ctx, _runner(bot))
    assert done.state is State.DONE
    assert tags_of(bot, "baseimages/fedora") == ["latest"]
    assert [e.action for e in bot.ctx.audit.entries(request_id=1)][-2:] == [
        "request.release",
        "request.done",
    ]
    assert rules_gate.release_held(bot.ctx, _runner(bot)) == []  # exactly once


def test_policy_held_request_says_so_in_its_thread_then_runs(make_bot, clock):
    rule = {**PROD, "ttl": "4d", "approvers": []}
    bot = make_bot(policy=[rule], groups=GROUPS, slack={"requests_channel": "C0REQUESTS"})
    bot.say("alice", FEDORA)
    bot.say("bob", "approve 1")
    clock.advance(hours=7, minutes=30)
    bot.say("erin", "approve 1")
    clock.advance(days=3)
    rules_gate.release_held(bot.ctx, _runner(bot))
    lines = {row[0]: row[1] for row in bot.ctx.store.db.execute("select key, payload from outbox")}
    assert (
        "until 2026-11-30 08:00 UTC: it runs then" in lines["line:1:held:2026-11-30T08:00:00+00:00"]
    )
    assert "The freeze is over" in lines["line:1:released"]
    assert "outcome:1:done:thread" in lines


def test_policy_held_request_that_expires_in_the_freeze_never_runs(make_bot, clock):
    bot = make_bot(policy=[{**PROD, "approvers": [], "ttl": "8h"}], groups=GROUPS)
    bot.say("alice", FEDORA)
    bot.say("bob", "approve 1")
    clock.advance(hours=7, minutes=30)  # 16:30: frozen
    assert "in a freeze" in bot.say("erin", "approve 1").text
    clock.advance(hours=1)  # 17:30: expired (at 17:00) inside the freeze
    bot.ctx.requests.expire_due()
    clock.advance(days=3)
    assert rules_gate.release_held(bot.ctx, _runner(bot)) == []
    assert bot.ctx.requests.get(1).state is State.EXPIRED
    assert tags_of(bot, "baseimages/fedora") == ["24", "latest"]


def _runner(bot):
    from handlers.requests.decide import EXECUTORS

    return lambda r: EXECUTORS[r.action].run(bot.ctx, r, lambda *a, **k: None)


def test_policy_max_purge_needs_one_more_approval(prod):
    reply = prod.say(
        "alice", "purge --filter 'baseimages/alpine:.*' --ago 0d --reason 'old alpine images'"
    )
    assert reply.request.required == 3  # 2, and 1 more: 2 items > max_purge 1


def test_policy_confirm_type_asks_for_the_repository_name(make_bot):
    bot = make_bot(policy=[{**SANDBOX, "confirm": "type"}])
    bot.say("alice", "delete testimages/nginx:1.25 --reason x")
    assert bot.say("bob", "approve 1").text == (
        "rule sandbox asks approvers to type the repository name: `approve 1 --confirm "
        "testimages/nginx` (in Slack: the card's Approve button); nothing was approved"
    )
    assert bot.say("bob", "approve 1 --confirm testimages/nginy").text == (
        "`testimages/nginy` is not `testimages/nginx`: type the repository name exactly; "
        "nothing was approved"
    )
    assert bot.ctx.requests.get(1).approvals == ()
    assert bot.say("bob", "approve 1 --confirm testimages/nginx").text.startswith(
        "Request #1 approved and done"
    )


def test_break_glass_runs_now_loudly_and_opens_a_review(make_bot, clock):
    bot = make_bot(policy=[PROD], groups=GROUPS, slack={"security_channel": "C0SECURITY"})
    bot.grant("U0BOB", "owner")
    clock.advance(hours=8)  # inside the freeze: break-glass still runs
    reply = bot.say("dave", FEDORA + " --break-glass")
    assert reply.text.startswith("Break-glass: Request #1 done: deleted 24 from demo/baseimages")
    assert "reviews it by 2026-11-28 17:00 UTC: `review 1 --ok`" in reply.text
    assert tags_of(bot, "baseimages/fedora") == ["latest"]
    actions = [e.action for e in bot.ctx.audit.entries(request_id=1)]
    assert actions.index("request.break_glass") < actions.index("request.done")
    keys = {row[0] for row in bot.ctx.store.db.execute("select key from outbox")}
    assert {"breakglass:1:security", "breakglass:1:dm:U0BOB"} <= keys
    assert bot.say("dave", "review 1 --ok").text == (
        "you broke the glass on request #1: an owner other than you reviews it"
    )
    assert bot.say("alice", "review 1 --ok").text.startswith("`review` needs owner")
    assert bot.say("bob", "review 1 --concern 'not an incident'").text == (
        "Review of break-glass #1 by dave recorded: concern: not an incident."
    )
    assert "already reviewed by bob" in bot.say("erin", "review 1 --ok").text


@pytest.mark.parametrize(
    ("who", "line", "said"),
    [
        (
            "alice",
            FEDORA + " --break-glass",
            "`delete` needs oncall or owner on demo/baseimages/fedora",
        ),
        (
            "dave",
            "delete testimages/nginx:1.25 --reason 'incident 42 xx' --break-glass",
            "rule sandbox does not allow --break-glass (break_glass = false); nothing was "
            "deleted: make a request",
        ),
        (
            "dave",
            "delete webserver/nginx:1.24 --reason 'incident 42 xx' --break-glass",
            "rule default does not allow --break-glass",
        ),
        (
            "dave",
            "delete baseimages/fedora:24 --reason short --break-glass",
            "rule prod needs a --reason of at least 10 characters",
        ),
    ],
)
def test_break_glass_refused_with_why_and_nothing_deleted(prod, who, line, said):
    before = {r: tags_of(prod, r) for r in ("baseimages/fedora", "testimages/nginx")}
    reply = prod.say(who, line)
    assert not reply.ok and said in reply.text
    assert {r: tags_of(prod, r) for r in before} == before


def test_break_glass_per_day_is_counted_per_person(make_bot, clock):
    bot = make_bot(policy=[{**PROD, "break_glass_per_day": 1}], groups=GROUPS)
    assert bot.say("dave", FEDORA + " --break-glass").ok
    reply = bot.say(
        "dave", "delete baseimages/alpine:3.19 --reason 'incident 42 again' --break-glass"
    )
    assert reply.text == (
        "you have used --break-glass 1 times today (UTC), the most rule prod allows (1); "
        "nothing was deleted: make a request"
    )
    assert "3.19" in tags_of(bot, "baseimages/alpine")
    clock.advance(days=1)
    assert bot.say(
        "dave", "delete baseimages/alpine:3.19 --reason 'incident 43 new day' --break-glass"
    ).ok


def test_break_glass_review_is_reminded_then_escalated_once(make_bot, clock):
    bot = make_bot(policy=[PROD], groups=GROUPS, slack={"security_channel": "C0SECURITY"})
    bot.grant("U0BOB", "owner")
    bot.say("dave", FEDORA + " --break-glass")
    assert break_glass.remind_and_escalate(bot.ctx) == []
    clock.advance(hours=19)
    assert break_glass.remind_and_escalate(bot.ctx) == [(1, "reminded")]
    assert break_glass.remind_and_escalate(bot.ctx) == []
    clock.advance(hours=5)
    assert break_glass.remind_and_escalate(bot.ctx) == [(1, "escalated")]
    assert break_glass.remind_and_escalate(bot.ctx) == []
    keys = {row[0] for row in bot.ctx.store.db.execute("select key from outbox")}
    assert {"review:1:remind:U0BOB", "review:1:escalate"} <= keys
    late = bot.say("bob", "review 1 --ok").text
    assert late == (
        "Review of break-glass #1 by dave recorded: ok (late: it was due 2026-11-28 09:00 UTC)."
    )
    assert Reviews(bot.ctx.store, bot.ctx.audit).get(1).state == "ok"


def test_policy_command_lists_rules_and_explains_one(prod, clock):
    listed = prod.say("carol", "policy")
    assert listed.text == "2 rules, first match wins; [approvals] for the rest:"
    assert [row[0] for row in listed.table.rows] == ["prod", "sandbox", "default"]
    clock.advance(hours=8)
    one = dict(prod.say("carol", "policy baseimages/fedora purge").fields)
    assert one["rule"] == "prod"
    assert one["approvals"] == "2"
    assert one["approvers"] == "one from security (rule prod)"
    assert one["freeze"] == (
        "`0 16 * * FRI` for 64h (rule prod); now frozen until 2026-11-30 08:00 UTC"
    )
    assert one["break-glass"].startswith("allowed (oncall or owner; 3 a day each")


def test_break_glass_purge_runs_every_pinned_item_now(make_bot):
    bot = make_bot(policy=[PROD], groups=GROUPS)
    reply = bot.say(
        "dave",
        "purge --filter 'baseimages/alpine:^3\\.19$' --ago 0d --reason 'incident 99 disk full' "
        "--break-glass",
    )
    assert reply.text.startswith("Break-glass: Purge request #1 done"), reply.text
    assert "3.19" not in tags_of(bot, "baseimages/alpine")
    assert Reviews(bot.ctx.store, bot.ctx.audit).get(1).actor == "dave"


def test_break_glass_purge_needs_the_role_on_every_repository(make_bot):
    bot = make_bot(policy=[PROD, {**SANDBOX, "break_glass": True}], groups=GROUPS, users={})
    bot.grant("dave", "oncall", repositories="baseimages/*")
    bot.grant("dave", "reader")
    reply = bot.say(
        "dave",
        "purge --filter 'baseimages/alpine:^3\\.19$' --filter 'testimages/nginx:^1' --ago 0d "
        "--reason 'incident 99 disk full' --break-glass",
    )
    assert reply.text == (
        "--break-glass needs oncall or owner on every repository it deletes from; you lack it "
        "on demo/testimages/nginx; nothing was deleted"
    )
    assert bot.ctx.requests.list() == []
