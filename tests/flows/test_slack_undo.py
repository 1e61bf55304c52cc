"""The Undo button of a done card, over signed HTTP against the strict fake Slack."""

import json

from tests.support.slack_support import buttons, card_of, card_ts


def _undo_button(blocks):
    for block in blocks:
        for element in block.get("elements", []):
            if element.get("action_id") == "acr_undo":
                return element
    return None


def test_a_done_card_offers_undo_and_the_click_restores_and_says_so(slack):
    fake = slack.fake
    registry = slack.ctx.registries.default
    digest = registry.resolve("baseimages/fedora", "24")
    slack.say("UALICE", "delete baseimages/fedora:24 --reason 'EOL'")
    card_of(slack)
    ts = card_ts(slack)
    slack.click("UBOB", "acr_approve", "1", channel="C0CHAN", message_ts=ts)
    update = fake.wait_for("chat.update")[0]
    assert buttons(update["blocks"]) == ["acr_undo"]
    button = _undo_button(update["blocks"])
    assert button["confirm"]["text"]["text"] == (
        "Puts back the tag baseimages/fedora:24 from the bot's snapshot, as you. A tag pushed "
        "again since is left alone."
    )
    assert "can undo this until <!date^" in json.dumps(update["blocks"])

    slack.click("UCAROL", "acr_undo", "1", channel="C0CHAN", message_ts=ts)  # a reader
    refusal = fake.wait_for("chat.postEphemeral")[0]
    assert refusal["user"] == "UCAROL"
    assert refusal["text"] == (
        ":x: only the requester of #1 (UALICE) or an owner of every repository it touched "
        "(baseimages/fedora) may undo it"
    )

    slack.click("UALICE", "acr_undo", "1", channel="C0CHAN", message_ts=ts)  # the requester
    line = next(
        p
        for p in fake.wait_for("chat.postMessage", 4)
        if p.get("thread_ts") == ts and "Undo of request #1" in p["text"]
    )
    assert line["text"] == "UALICE: Undo of request #1: 1 restored."
    assert registry.resolve("baseimages/fedora", "24") == digest
    undo_rows = [e for e in slack.ctx.audit.entries(last=50) if e.action.startswith("undo")]
    assert [(e.actor, e.action, e.outcome) for e in undo_rows] == [
        ("UCAROL", "undo@slack", "refused"),
        ("UALICE", "undo.run", "started"),
        ("UALICE", "undo.item", "restored"),
        ("UALICE", "undo@slack", "ok"),
    ]
