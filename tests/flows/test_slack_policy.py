"""`[[policy]]` in Slack, through the real Bolt app and the strict fake Web API: the card names
the rule; confirm = "type" opens a modal (views.open with a plain_text_input) whose mismatch
approves nothing; a break-glass is posted to the security channel and DMed to the owners."""

from tests.support.slack_support import buttons, card_of, card_ts

TYPED = {
    "name": "typed",
    "repos": ["baseimages/*"],
    "confirm": "type",
    "break_glass": True,
    "approvers": ["UERIN"],
}


def test_slack_card_names_the_rule_and_typed_confirmation_opens_a_modal(make_slack):
    slack = make_slack(policy=[TYPED])
    slack.say("UALICE", "delete baseimages/fedora:24 --reason 'EOL'")
    card = card_of(slack)
    ts = card_ts(slack)
    assert buttons(card["blocks"]) == ["acr_approve_typed", "acr_deny"]
    shown = [e["text"] for b in card["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert "needs 1 approval, one from UERIN, typing the repository name — rule typed; 0/1" in (
        shown
    )
    slack.click("UERIN", "acr_approve_typed", "1", channel="C0CHAN", message_ts=ts)
    view = slack.fake.wait_for("views.open")[0]["view"]
    assert view["callback_id"] == "acr_confirm_modal"
    assert view["blocks"][1]["element"]["type"] == "plain_text_input"
    status, body = slack.submit_view("UERIN", view, "  ", block="confirm")
    assert status == 200 and '"errors"' in body
    slack.submit_view("UERIN", view, "baseimages/fedorra", block="confirm")
    refused = slack.fake.wait_for("chat.postEphemeral")[0]
    assert refused["user"] == "UERIN"
    assert "is not `baseimages/fedora`: type the repository name exactly" in refused["text"]
    assert slack.ctx.requests.get(1).approvals == ()
    slack.submit_view("UERIN", view, "baseimages/fedora", block="confirm")
    slack.fake.wait_for("chat.update")
    assert slack.ctx.requests.get(1).state.value == "done"


def test_slack_break_glass_is_posted_to_security_and_dmed_to_owners(make_slack):
    slack = make_slack(policy=[TYPED], slack={"security_channel": "C0SECURITY"})
    reply = slack.say("UDAVE", "delete baseimages/fedora:24 --reason 'incident 7' --break-glass")
    assert "Break-glass: Request #1 done" in reply["text"]
    posts = slack.fake.wait_for("chat.postMessage", 3)  # the card, the security channel, a DM…
    security = [p for p in posts if p["channel"] == "C0SECURITY"]
    assert security and "Break-glass by UDAVE: request #1" in security[0]["text"]
    dms = {p["channel"] for p in slack.fake.wait_for("chat.postMessage", 4)}
    assert {"UBOB", "UERIN"} <= dms
