"""A rotated password reaches the caller ephemerally and appears nowhere else."""

import json
import logging

from tests.support.fixtures import AdminRegistry
from tests.support.helpers import stored_bytes


def test_rotation_over_slack_leaks_nothing(make_slack, registry, caplog):
    caplog.set_level(logging.DEBUG)
    backend = AdminRegistry(registry)
    slack = make_slack(backend=backend)
    reply = slack.say("UDAVE", "rotate password2 --reason 'quarterly rotation' --public")
    secret = backend.passwords["password2"]
    assert reply["response_type"] == "ephemeral"  # --public never applies to a secret
    assert secret in json.dumps(reply["blocks"])
    announcement = slack.fake.wait_for("chat.postMessage")[0]
    assert announcement["channel"] == "C0CHAN"
    assert announcement["text"].startswith(":key: <@UDAVE> Regenerated password2 of demo")
    everything_else = [c for c in slack.fake.calls if c.params is not reply]
    assert all(secret not in json.dumps(c.params) for c in everything_else)
    assert secret not in caplog.text
    slack.stop()
    assert secret.encode() not in stored_bytes(slack.ctx.store)


def test_a_secret_that_cannot_be_delivered_is_reported_as_rotated_not_unchanged(
    make_slack, registry, caplog
):
    """The response_url refuses (expired: 404) every post of the new value. The user used to
    read "nothing was changed unless a message says so" although the password was rotated;
    now a DM says it was, that the value is lost, and to rotate again. The value goes nowhere."""
    caplog.set_level(logging.DEBUG)
    backend = AdminRegistry(registry)
    slack = make_slack(backend=backend)
    slack.fake.fail_response_url(status=404, error="expired_url", times=3)
    name, status = slack.command("UDAVE", "rotate password2 --reason 'quarterly rotation'")
    assert status == 200
    posts = slack.fake.wait_for("chat.postMessage", count=2)
    secret = backend.passwords["password2"]
    assert secret != "old-2"  # it was rotated
    texts = {p["channel"]: p["text"] for p in posts}
    assert texts["C0CHAN"].startswith(":key: <@UDAVE> Regenerated password2 of demo")
    dm = next(text for channel, text in texts.items() if channel != "C0CHAN")
    assert dm == (
        ":warning: Regenerated password2 of demo (admin user demo). But I could not show you "
        "the new value (response_url answered HTTP 404), and it is kept nowhere: nobody has it. "
        "Run the rotation again for a value you can use."
    )
    assert "nothing was changed" not in json.dumps([c.params for c in slack.fake.calls])
    # only the (refused) posts to the caller's response_url ever held it
    holding = {c.method for c in slack.fake.calls if secret in json.dumps(c.params)}
    assert holding <= {f"response_url:{name}"}, holding
    assert secret not in caplog.text
    slack.stop()
    assert secret.encode() not in stored_bytes(slack.ctx.store)
