"""A rotated password reaches the caller ephemerally and appears nowhere else."""

import json
import logging

from tests.test_credentials import AdminRegistry


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
    files = slack.ctx.store.path.parent.glob("acrbot.db*")
    assert all(secret.encode() not in f.read_bytes() for f in files)
