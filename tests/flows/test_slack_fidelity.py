"""What real Slack would refuse or show wrongly, against the strict fake Web API (every test
here also fails if a payload breaks a Block Kit limit: the fixture checks at teardown)."""

import json
import time

import pytest

from tests.support.slack_support import buttons, card_of, card_ts


def fields_of(card):
    return {
        f["text"].split("\n", 1)[0].strip("*"): f["text"].split("\n", 1)[1]
        for b in card["blocks"]
        if b["type"] == "section"
        for f in b.get("fields", [])
    }


def wait(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("timed out")


@pytest.mark.slow  # renders a 300-tag card
def test_a_300_tag_manifest_card_fits_slacks_limits(slack, registry):
    digest = registry.resolve("testimages/nginx", "latest")
    for i in range(298):
        registry.add_tag("testimages/nginx", f"build-{i:04d}-{'x' * 12}", digest)
    reply = slack.say("UALICE", "delete testimages/nginx:latest --manifest --reason 'CI leftovers'")
    assert reply["text"].startswith("Request #1 created")
    card = card_of(slack)  # real Slack would have answered invalid_blocks to a 6,000-char field
    going = fields_of(card)["Will delete"]
    assert going.startswith("manifest and tags 300 tags: 1.25, build-0000-")
    assert going.endswith("… and 280 more (`/acr request 1`)")
    assert len(going) <= 2000
    assert fields_of(card)["Digest"] == f"`{digest[:19]}`"  # short: half-width field
    slack.click("UBOB", "acr_approve", "1", channel="C0CHAN", message_ts=card_ts(slack))
    wait(lambda: [u for u in slack.fake.calls_to("chat.update") if "*done*" in json.dumps(u)])
    homes = slack.fake.calls_to("views.publish")
    assert homes and not slack.fake.rejected()


def test_grants_take_mentions_and_groups_and_refuse_bare_names(slack):
    slack.fake.usergroups["S0PLAT"] = ["UPAT"]
    assert (
        slack.say("UBOB", "grant <@UZED|zed> reader")["text"]
        == "Granted <@UZED> `reader on demo/*`."
    )
    assert slack.ctx.roles.direct_grants("UZED")[0].role.value == "reader"
    group = slack.say("UBOB", "grant <!subteam^S0PLAT|@platform> owner --repo 'testimages/*'")
    assert group["text"] == "Granted <!subteam^S0PLAT> `owner on demo/testimages/*`."
    bare = slack.say("UBOB", "grant zed reader")
    assert bare["text"] == (
        "Error: `zed` is not a Slack user or group: @-mention them (`grant @zed reader`), so "
        "that Slack sends their id, or map the name in the config's [users]"
    )
    whoami = json.dumps(slack.say("UCAROL", "whoami")["blocks"])
    assert "You are <@UCAROL>." in whoami and "`reader on */*`" in whoami


def test_text_slack_encoded_is_decoded_once_and_escaped_once(slack):
    # Slack sends what the user typed, `CI & QA <now>`, as `CI &amp; QA &lt;now&gt;`
    slack.say("UALICE", "delete baseimages/fedora:24 --reason 'CI &amp; QA &lt;now&gt;'")
    request = slack.ctx.requests.get(1)
    assert request.reason == "CI & QA <now>"  # stored (and audited) as typed
    card = card_of(slack)
    assert fields_of(card)["Reason"] == "CI &amp; QA &lt;now&gt;"  # shown as typed, once


def test_approve_asks_for_confirmation_naming_what_goes(slack):
    slack.say("UALICE", "delete baseimages/fedora:24 --reason eol")
    card = card_of(slack)
    approve = next(
        e
        for b in card["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "acr_approve"
    )
    assert approve["confirm"]["style"] == "danger"
    assert approve["confirm"]["text"]["text"] == (
        "Approving may run it now: it deletes tag 24 from demo/baseimages/fedora."
    )


def test_times_are_slack_date_tokens_and_decided_cards_say_who_and_when(slack):
    slack.say("UALICE", "delete baseimages/fedora:24 --reason eol")
    expires = fields_of(card_of(slack))["Expires"]
    assert expires.startswith("<!date^") and "{date_short_pretty} at {time}|" in expires
    assert expires.endswith(" UTC>")
    slack.click("UBOB", "acr_approve", "1", channel="C0CHAN", message_ts=card_ts(slack))
    update = wait(
        lambda: [u for u in slack.fake.calls_to("chat.update") if "*done*" in json.dumps(u)]
    )[-1]
    decided = fields_of(update)
    assert "Expires" not in decided
    assert decided["Decided"].startswith("done by the bot, <!date^")
    assert buttons(update["blocks"]) == ["acr_undo"]  # only Undo, once done


def test_an_approval_sent_also_to_the_channel_counts(slack):
    slack.say("UALICE", "delete baseimages/fedora:24 --reason eol")
    card_of(slack)
    slack.thread_reply(
        "UBOB", "<@UBOT> approve", channel="C0CHAN", thread_ts=card_ts(slack), broadcast=True
    )
    wait(lambda: slack.ctx.requests.get(1).state.value == "done")


def test_the_deny_modal_names_the_image_and_the_requester(slack):
    slack.say("UALICE", "delete baseimages/fedora:24 --reason eol")
    card_of(slack)
    slack.click("UERIN", "acr_deny", "1", channel="C0CHAN", message_ts=card_ts(slack))
    view = slack.fake.wait_for("views.open")[0]["view"]
    assert view["blocks"][0]["text"]["text"] == (
        "*demo/baseimages/fedora:24*, requested by <@UALICE>: eol"
    )
    assert view["title"]["text"] == "Deny request #1"


def test_owners_app_home_is_redrawn_when_a_request_changes(slack):
    slack.say("UALICE", "delete baseimages/fedora:24 --reason eol")
    published = wait(lambda: {p["user_id"] for p in slack.fake.calls_to("views.publish")})
    assert {"UBOB", "UERIN"} <= published and "UALICE" not in published
    view = next(p for p in slack.fake.calls_to("views.publish") if p["user_id"] == "UBOB")["view"]
    shown = json.dumps(view["blocks"])
    assert "*Deletion request #1*" in shown and '"type": "divider"' in shown
