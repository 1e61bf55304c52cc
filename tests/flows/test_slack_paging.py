"""Previous/Next answer the clicker only, and run only listings (issue 27, item 4).

Through the real Bolt app and the strict fake Slack, which keeps a replaced message where it
was: replacing a message in the channel shows the new content to everyone.
"""

from __future__ import annotations

import json

import pytest

from bot.slack.paging import PageState
from tests.support.fixtures import AdminRegistry


def buttons(message):
    return {
        e["action_id"]: e["value"]
        for b in message.get("blocks", [])
        if b["type"] == "actions"
        for e in b["elements"]
    }


@pytest.fixture
def shared(slack):
    """Anna reads testimages/* only, and posts her listing in the channel."""
    slack.grant("UANNA", "reader", repositories="testimages/*")
    reply = slack.say("UANNA", "repos --top 1 --public")
    assert reply["response_type"] == "in_channel"
    assert "testimages/nginx" in json.dumps(reply["blocks"])
    return slack, buttons(reply)["acr_page_next"]


def test_next_on_a_listing_in_the_channel_answers_the_clicker_only(shared):
    """Before: bob's page (his view: every repository) replaced anna's message for the
    whole channel."""
    slack, value = shared
    assert slack.click("UBOB", "acr_page_next", value, channel="C0CHAN", message_ts="1") == 200
    page = slack.response(slack.last_click_response)
    assert (page["response_type"], page["replace_original"]) == ("ephemeral", False)
    assert "testimages/wordpress" in json.dumps(page["blocks"])
    shown = slack.fake.response_messages(slack.last_click_response)
    assert shown[0] == {"text": "clicked", "response_type": "in_channel"}  # anna's, untouched
    assert [m["response_type"] for m in shown] == ["in_channel", "ephemeral"]
    # The page's own buttons keep it private too.
    value = buttons(page)["acr_page_next"]
    assert not PageState.decode(value).public


def test_next_on_your_own_private_listing_turns_it_in_place(slack):
    reply = slack.say("UCAROL", "repos --top 1")
    assert reply["response_type"] == "ephemeral"
    slack.click(
        "UCAROL",
        "acr_page_next",
        buttons(reply)["acr_page_next"],
        channel="C0CHAN",
        message_ts="1",
        ephemeral=True,
    )
    page = slack.response(slack.last_click_response)
    assert (page["response_type"], page["replace_original"]) == ("ephemeral", True)
    shown = slack.fake.response_messages(slack.last_click_response)
    assert [m["response_type"] for m in shown] == ["ephemeral"]


@pytest.mark.parametrize(
    ("user", "command", "name"),
    [
        ("UDAVE", "rotate password2 --reason x", "rotate"),
        ("UALICE", "delete baseimages/fedora:24 --reason x", "delete"),
        ("UALICE", "purge --filter 'baseimages/fedora:.*' --ago 0d --reason x", "purge"),
        ("UBOB", "grant UALICE owner", "grant"),
    ],
)
def test_a_tampered_page_button_runs_nothing_but_a_listing(
    make_slack, registry, user, command, name
):
    """The value comes back from the client. Before: it ran as the clicker — a password
    regenerated that nobody saw, request cards posted."""
    backend = AdminRegistry(registry)
    slack = make_slack(backend=backend)
    value = PageState(command, public=True).encode()
    slack.click(user, "acr_page_next", value, channel="C0CHAN", message_ts="1")
    refused = slack.response(slack.last_click_response)
    assert (refused["response_type"], refused["replace_original"]) == ("ephemeral", False)
    assert refused["text"] == (
        f"Error: a page button re-runs only listings, and `{name}` is not one: nothing was run"
    )
    assert backend.passwords == {"password": "old-1", "password2": "old-2"}
    assert slack.ctx.requests.list() == []
    assert slack.fake.calls_to("chat.postMessage") == []
    assert [g.role.value for g in slack.ctx.roles.grants_for("UALICE")] == ["contributor"]
    row = slack.ctx.audit.entries(last=1)[0]
    assert (row.actor, row.action, row.outcome) == (user, f"{name}@slack", "refused")


def test_a_dry_run_purge_pages_like_any_listing(slack):
    value = PageState("purge --filter 'baseimages/fedora:.*' --ago 0d --dry-run").encode()
    slack.click("UCAROL", "acr_page_next", value, channel="C0CHAN", message_ts="1")
    page = slack.response(slack.last_click_response)
    assert page["text"].startswith("Dry run on demo:"), page["text"]
    assert page["response_type"] == "ephemeral"
