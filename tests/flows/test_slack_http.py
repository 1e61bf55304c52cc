"""The Slack app over signed HTTP: the real Bolt code paths against a fake Web API."""

import json
import time

import pytest

from tests.support.fixtures import CountingRegistry
from tests.support.slack_support import buttons, card_of, card_ts


def test_healthz(slack):
    assert slack.request("GET", "/healthz")[:2] == (200, "ok\n")


def test_signature_is_checked(slack):
    body = "command=%2Facr&text=help&user_id=UBOB&channel_id=C1&team_id=T0001"
    form = "application/x-www-form-urlencoded"
    assert slack.signed(body, form, secret="wrong")[0] == 401
    assert slack.signed(body, form, timestamp=int(time.time()) - 600)[0] == 401
    assert slack.request("POST", "/slack/events", body, {"Content-Type": form})[0] == 401


def test_lookup_answers_ephemerally_through_response_url(slack):
    reply = slack.say("UCAROL", "tags baseimages/fedora")
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] == "2 tags in demo/baseimages/fedora"
    assert "latest" in json.dumps(reply["blocks"])


def test_public_flag_posts_in_channel(slack):
    assert slack.say("UCAROL", "repos --public")["response_type"] == "in_channel"


def test_errors_are_short_ephemeral_and_never_tracebacks(slack):
    reply = slack.say("UCAROL", "tags")
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] == (
        "Error: missing REPO\nUsage: tags REPO [--registry R] [--filter GLOB] [--digest DIGEST] "
        "[--orderby ORDER] [--top N] [--after NAME]"
    )
    assert json.dumps(reply["blocks"]).startswith('[{"text": {"text": ":x: missing REPO')
    assert "Traceback" not in slack.fake.all_text()


def test_full_delete_flow(slack):
    fake = slack.fake
    ack = slack.say("UALICE", "delete baseimages/fedora:24 --reason 'EOL since 2017'")
    assert ack["text"] == "Request #1 created: waiting for 1 approval from an owner (not you)."
    assert "Its card follows in this channel" in json.dumps(ack["blocks"])
    card = card_of(slack)
    assert card["channel"] == "C0CHAN"
    shown = json.dumps(card["blocks"])
    for fact in (
        "Deletion request #1",
        "<@UALICE>",
        "demo/baseimages/fedora:24",
        "sha256:",
        "tag 24",
        "EOL since 2017",
        "0 of 1",
        "Expires",
    ):
        assert fact in shown, fact
    assert buttons(card["blocks"]) == ["acr_approve", "acr_deny"]
    ts = card_ts(slack)

    # The requester's own click is refused, ephemerally, and changes nothing.
    assert slack.click("UALICE", "acr_approve", "1", channel="C0CHAN", message_ts=ts) == 200
    refusal = fake.wait_for("chat.postEphemeral")[0]
    assert refusal["user"] == "UALICE"
    assert (
        refusal["text"] == ":x: you cannot approve request #1: you made it (separation of duties)"
    )
    # A reader's click too.
    slack.click("UCAROL", "acr_approve", "1", channel="C0CHAN", message_ts=ts)
    refusal = fake.wait_for("chat.postEphemeral", 2)[1]
    assert refusal["text"].startswith(":x: `approve` needs owner on demo/baseimages/fedora")
    assert fake.calls_to("chat.update") == []
    assert sorted(t.name for t in slack.ctx.registries.default.all_tags("baseimages/fedora")) == [
        "24",
        "latest",
    ]

    # The owner approves: the tag goes, the card updates, the thread and requester hear.
    slack.click("UBOB", "acr_approve", "1", channel="C0CHAN", message_ts=ts)
    update = fake.wait_for("chat.update")[0]
    assert update["ts"] == ts
    assert "*done*" in json.dumps(update["blocks"])
    assert buttons(update["blocks"]) == ["acr_undo"]  # a done card can be undone
    posts = fake.wait_for("chat.postMessage", 3)
    thread = [p for p in posts if p.get("thread_ts") == ts]
    assert thread[0]["text"].startswith(
        ":white_check_mark: Done: deleted 24 from `demo/baseimages/fedora` (approved by <@UBOB>)"
    )
    dm = [p for p in posts if p["channel"] == "UALICE"]
    assert dm[0]["text"].startswith(
        "Your deletion request #1 (demo/baseimages/fedora:24): :white_check_mark: Done"
    )
    assert [t.name for t in slack.ctx.registries.default.all_tags("baseimages/fedora")] == [
        "latest"
    ]
    actions = [(e.actor, e.action, e.outcome) for e in slack.ctx.audit.entries(last=50)]
    assert actions == [
        ("UALICE", "request.create", "pending"),
        ("UALICE", "delete@slack", "ok"),
        ("UALICE", "approve@slack", "refused"),
        ("UCAROL", "approve@slack", "refused"),
        ("UBOB", "request.approve", "1/1"),
        ("acrbot", "request.done", "done"),
        ("UBOB", "approve@slack", "ok"),
    ]
    assert slack.ctx.audit.verify().ok


def request_card(slack, text="delete baseimages/fedora:24 --reason 'EOL'"):
    slack.say("UALICE", text)
    card_of(slack)
    return card_ts(slack)


def test_thread_replies_approve(slack):
    ts = request_card(slack)
    assert slack.thread_reply("UERIN", "looks fine to me", channel="C0CHAN", thread_ts=ts) == 200
    slack.thread_reply(
        "UBOB", "<@UBOT> approve checked with the team", channel="C0CHAN", thread_ts=ts
    )
    slack.fake.wait_for("chat.update")
    request = slack.ctx.requests.get(1)
    assert request.state.value == "done"
    assert request.approvals[0].reason == "checked with the team"


def test_thread_reply_deny_needs_a_reason(slack):
    ts = request_card(slack)
    slack.thread_reply("UBOB", "<@UBOT> deny", channel="C0CHAN", thread_ts=ts)
    hint = slack.fake.wait_for("chat.postEphemeral")[0]
    assert (hint["user"], hint["thread_ts"], hint["text"]) == (
        "UBOB",
        ts,
        ":x: Say why: reply `@acrbot deny <reason>`.",
    )
    slack.thread_reply("UBOB", "<@UBOT> deny still pulled by CI", channel="C0CHAN", thread_ts=ts)
    slack.fake.wait_for("chat.update")
    thread = [p for p in slack.fake.wait_for("chat.postMessage", 3) if p.get("thread_ts") == ts]
    assert thread[0]["text"] == ":no_entry: Denied by <@UBOB>: still pulled by CI"


def test_deny_button_opens_a_modal_and_the_reason_decides(slack):
    ts = request_card(slack)
    slack.click("UERIN", "acr_deny", "1", channel="C0CHAN", message_ts=ts)
    view = slack.fake.wait_for("views.open")[0]["view"]
    assert view["callback_id"] == "acr_deny_modal"
    status, body = slack.submit_view("UERIN", view, "   ")
    assert (status, json.loads(body)["response_action"]) == (200, "errors")
    assert slack.ctx.requests.get(1).state.value == "pending"
    status, _ = slack.submit_view("UERIN", view, "needed for rollback")
    slack.fake.wait_for("chat.update")
    request = slack.ctx.requests.get(1)
    assert (request.state.value, request.decided_by, request.decision_reason) == (
        "denied",
        "UERIN",
        "needed for rollback",
    )


@pytest.mark.slow  # waits to see that nothing more comes
def test_double_clicks_and_retries_execute_once(make_slack, registry):
    counting = CountingRegistry(registry)
    slack = make_slack(backend=counting)
    ts = request_card(slack)
    slack.click("UBOB", "acr_approve", "1", channel="C0CHAN", message_ts=ts, trigger="t.1")
    slack.click("UBOB", "acr_approve", "1", channel="C0CHAN", message_ts=ts, trigger="t.1", retry=1)
    slack.click("UERIN", "acr_approve", "1", channel="C0CHAN", message_ts=ts)
    slack.fake.wait_for("chat.update")
    late = slack.fake.wait_for("chat.postEphemeral")
    time.sleep(0.3)
    assert counting.deletions == [("baseimages/fedora", "24")]
    assert [c["text"] for c in late] in (
        [":x: request #1 is done; it cannot change now"],
        [":x: request #1 is being carried out; it cannot change now"],
    )
    approvers = [e.actor for e in slack.ctx.audit.entries(last=50) if e.action == "approve@slack"]
    assert sorted(approvers) == ["UBOB", "UERIN"]  # the retry of UBOB's click never ran


@pytest.mark.slow  # waits to see that nothing more comes
def test_event_retries_are_ignored(slack):
    ts = request_card(slack)
    event = {
        "type": "app_mention",
        "channel": "C0CHAN",
        "user": "UBOB",
        "text": "<@UBOT> approve",
        "ts": "1700000001.000100",
        "thread_ts": ts,
    }
    assert slack.event(event, event_id="Ev1") == 200
    assert slack.event(event, event_id="Ev1", retry=1) == 200
    slack.fake.wait_for("chat.update")
    time.sleep(0.3)
    assert [e.action for e in slack.ctx.audit.entries(last=50)].count("approve@slack") == 1


def test_roles_granted_to_a_user_group(make_slack):
    slack = make_slack(users={"UALICE": "contributor"})
    slack.grant("S0PLATFORM", "owner")
    slack.fake.usergroups["S0PLATFORM"] = ["UPAT", "UQUINN"]
    ts = request_card(slack)
    assert slack.say("UNOBODY", "approve 1")["text"] == "Error: there is no request #1"
    slack.click("UPAT", "acr_approve", "1", channel="C0CHAN", message_ts=ts)
    slack.fake.wait_for("chat.update")
    assert slack.ctx.requests.get(1).state.value == "done"
    assert slack.say("UQUINN", "whoami")["blocks"][1]["text"]["text"].count("S0PLATFORM") == 2
    assert len(slack.fake.calls_to("usergroups.users.list")) == 1  # cached


def published_for(slack, user):
    """The App Home views published for ``user`` so far (the owners' are also redrawn when a
    request they can act on changes)."""
    return [p["view"] for p in slack.fake.calls_to("views.publish") if p["user_id"] == user]


def test_app_home_shows_roles_and_what_to_act_on(slack):
    request_card(slack)
    slack.event({"type": "app_home_opened", "user": "UBOB", "channel": "D1", "tab": "home"})
    deadline = time.monotonic() + 10
    while not published_for(slack, "UBOB") and time.monotonic() < deadline:
        time.sleep(0.02)
    view = published_for(slack, "UBOB")[-1]
    shown = json.dumps(view)
    assert "owner on */*" in shown and "demo/baseimages/fedora:24" in shown
    assert buttons(view["blocks"]) == ["acr_approve", "acr_deny"]
    slack.event({"type": "app_home_opened", "user": "UALICE", "channel": "D2", "tab": "home"})
    deadline = time.monotonic() + 10
    while not published_for(slack, "UALICE") and time.monotonic() < deadline:
        time.sleep(0.02)
    mine = json.dumps(published_for(slack, "UALICE")[-1])
    assert "Nothing needs your approval." in mine and "Your pending requests" in mine


def test_expiry_is_announced_once_and_survives_restarts(make_slack, clock):
    slack = make_slack()
    ts = request_card(slack)
    clock.advance(hours=25)
    slack.ctx.requests.expire_due()  # expired while nobody announced it
    slack.stop()
    restarted = make_slack(users={})
    restarted.work.sweep()
    restarted.work.sweep()
    thread = [p for p in restarted.fake.calls_to("chat.postMessage") if p.get("thread_ts") == ts]
    assert [p["text"][:12] for p in thread] == [":hourglass: "]
    assert "*expired*" in json.dumps(restarted.fake.calls_to("chat.update")[-1]["blocks"])


def _buttons(message):
    return {
        e["action_id"]: e["value"]
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    }


@pytest.mark.slow  # pages through a long listing
def test_long_lists_page_with_previous_and_next_buttons(slack, registry):
    digest = registry.resolve("testimages/nginx", "latest")
    for i in range(250):
        registry.add_tag("testimages/nginx", f"build-{i}-{'x' * 40}", digest)
    reply = slack.say("UCAROL", "tags testimages/nginx --orderby name")
    seen = [
        r.split()[0]
        for r in json.loads(json.dumps(reply["blocks"]))[1]["text"]["text"]
        .strip("`")
        .splitlines()[1:]
    ]
    assert len(seen) == 25 and seen[:3] == ["1.25", "build-0-" + "x" * 40, "build-1-" + "x" * 40]
    buttons = _buttons(reply)
    assert set(buttons) == {"acr_page_next"}
    pages = 1
    while "acr_page_next" in buttons:
        assert (
            slack.click(
                "UCAROL",
                "acr_page_next",
                buttons["acr_page_next"],
                channel="C0CHAN",
                message_ts="1",
                ephemeral=True,
            )
            == 200
        )
        page = slack.response(slack.last_click_response)
        assert page["replace_original"] is True
        rows = page["blocks"][1]["text"]["text"].strip("`").splitlines()[1:]
        seen += [r.split()[0] for r in rows]
        buttons = _buttons(page)
        pages += 1
        assert "acr_page_previous" in buttons
    assert pages == 11 and len(seen) == 252 == len(set(seen))  # natural order: build-9 < build-10
    assert seen.index("build-9-" + "x" * 40) < seen.index("build-10-" + "x" * 40)
    slack.click(
        "UCAROL",
        "acr_page_previous",
        buttons["acr_page_previous"],
        channel="C0CHAN",
        message_ts="1",
        ephemeral=True,
    )
    back = slack.response(slack.last_click_response)
    first_row = back["blocks"][1]["text"]["text"].strip("`").splitlines()[1].split()[0]
    assert first_row == seen[225]


def test_a_page_link_survives_a_worker_restart_and_uses_the_clickers_roles(make_slack, registry):
    slack = make_slack()
    reply = slack.say("UCAROL", "tags baseimages/alpine --top 1")
    value = _buttons(reply)["acr_page_next"]
    slack.stop()
    restarted = make_slack(users={"UCAROL": "reader"})
    restarted.click("UCAROL", "acr_page_next", value, channel="C0CHAN", message_ts="1")
    page = restarted.response(restarted.last_click_response)
    assert "3.20" in json.dumps(page["blocks"])
    restarted.click("UNOBODY", "acr_page_next", value, channel="C0CHAN", message_ts="1")
    refused = restarted.response(restarted.last_click_response)
    assert refused["text"].startswith("Error: `tags` needs reader")
    assert refused.get("replace_original") is False


def test_an_old_more_button_says_to_run_the_command_again(slack):
    slack.click("UCAROL", "acr_more", "token-from-an-old-release", channel="C0CHAN", message_ts="1")
    assert "run the command again" in slack.response(slack.last_click_response)["text"]


class _SlowScan:
    """The demo registry, but listing tags reports progress and takes a while."""

    def __init__(self, inner, seconds):
        self.inner, self.seconds = inner, seconds
        self.name, self.kind, self.login_server = inner.name, inner.kind, inner.login_server
        self.can_untag, self.has_dates = inner.can_untag, inner.has_dates

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def list_tags(self, repository, *, progress, **kw):
        progress(500, 10_000)
        time.sleep(self.seconds)
        progress(10_000, 10_000)
        return self.inner.list_tags(repository, progress=progress, **kw)


@pytest.mark.slow  # waits for the still-working note
def test_a_slow_command_says_it_is_still_working_then_replaces_the_note(make_slack, registry):
    slack = make_slack(backend=_SlowScan(registry, 0.8))
    slack.work.still_working_after = 0.2
    name, _ = slack.command("UCAROL", "tags baseimages/alpine")
    posts = slack.fake.wait_for(f"response_url:{name}", count=2)
    assert posts[0]["text"] == (
        ":hourglass_flowing_sand: Still working on it: 500 of 10,000 tags checked…"
    )
    assert posts[0]["replace_original"] is False
    assert posts[-1]["replace_original"] is True and posts[-1]["text"].startswith("3 tags in")
