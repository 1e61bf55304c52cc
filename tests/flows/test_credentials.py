"""`rotate` and `admin` with a backend that has an admin user (a small Protocol fake).

The secret must reach the caller once and nowhere else: not the audit, not the database
file, not the logs, not the reply's public text or data.
"""

import json
import logging

import pytest

from tests.support.fixtures import AdminRegistry
from tests.support.helpers import stored_bytes


@pytest.fixture
def admin_bot(make_bot, registry):
    return make_bot(backend=AdminRegistry(registry))


def test_rotate_gives_the_secret_only_to_the_caller(admin_bot, caplog):
    caplog.set_level(logging.DEBUG)
    reply = admin_bot.say("dave", "rotate password2 --reason 'quarterly rotation'")
    secret = admin_bot.registry.passwords["password2"]
    assert reply.ok
    assert reply.text == "Regenerated password2 of demo (admin user demo)."
    assert reply.notes == (
        "Consumers still using password keep working: move them to "
        "password2, then rotate password.",
    )
    assert reply.secret == secret
    public = json.dumps(reply.as_json()) + reply.text + "".join(reply.notes) + repr(reply)
    assert secret not in public
    assert secret not in caplog.text
    assert secret.encode() not in stored_bytes(admin_bot.ctx.store)
    entry = admin_bot.ctx.audit.entries(last=1)[0]
    assert (entry.actor, entry.action, entry.target, entry.outcome) == (
        "dave",
        "rotate",
        "demo",
        "ok",
    )


def test_rotate_needs_a_reason(admin_bot):
    assert admin_bot.say("dave", "rotate password").text == (
        "missing --reason\nUsage: rotate password|password2 [--registry R] --reason TEXT"
    )


def test_rotate_with_admin_disabled_says_how_to_fix_it(admin_bot):
    assert admin_bot.say("bob", "admin disable").text == "Admin user on demo is disabled."
    assert admin_bot.say("dave", "rotate password --reason x").text == (
        "admin user is disabled on demo; an owner can run `admin enable --registry demo`"
    )
    assert admin_bot.say("dave", "admin status").text == "Admin user on demo is disabled."
    assert admin_bot.say("dave", "admin enable").text.startswith("`admin` needs owner")
    assert admin_bot.say("bob", "admin enable").text == (
        "Admin user on demo is enabled (user demo)."
    )


def test_console_prints_the_secret_once(admin_bot):
    from bot.core.render_text import render

    reply = admin_bot.say("bob", "rotate password --reason x")
    assert render(reply).count(reply.secret) == 1
