"""A group holds roles for its members and never acts, at any door (issue 17.3)."""

import io
import subprocess
import sys

import pytest

from bot.app import build_dispatcher
from bot.console import run_console
from bot.core.errors import ConfigError, PermissionDenied
from bot.core.policy import Grant, Role
from bot.kernel.dispatch import NOTEBOOK, SLACK
from bot.notebook import Acr
from tests.support.fixtures import make_config

GROUPS = {"platform": ["bob", "erin"]}
REFUSED = (
    "`platform` is a group ([groups] platform), not a user: groups hold roles but never act; "
    "act as one of its members (bob, erin)"
)
SLACK_REFUSED = (
    "`S0PLATFORM` is a Slack user group, not a user: groups hold roles but never act; "
    "act as one of its members"
)


@pytest.fixture
def team(make_bot):
    bot = make_bot(users={"alice": "contributor"}, groups=GROUPS)
    bot.grant("platform", "owner")
    bot.grant("S0PLATFORM", "owner")
    assert bot.say("alice", "delete baseimages/fedora:24 --reason EOL").ok
    return bot


@pytest.mark.parametrize("door", [None, NOTEBOOK, SLACK])
def test_a_static_group_cannot_approve_at_any_door(team, door):
    reply = team.dispatcher.handle("approve 1", user="platform", door=door)
    assert not reply.ok and reply.text == REFUSED
    assert team.say("bob", "request 1").data["approvals"] == []
    assert team.say("platform", "whoami").text == REFUSED


@pytest.mark.parametrize("door", [None, NOTEBOOK, SLACK])
def test_a_slack_user_group_cannot_act(team, door):
    reply = team.dispatcher.handle("approve 1", user="S0PLATFORM", door=door)
    assert reply.text == SLACK_REFUSED
    assert team.say("S0PLATFORM", "whoami").text == SLACK_REFUSED


def test_its_members_still_act_with_its_roles(team):
    assert team.say("bob", "approve 1").text.startswith("Request #1 approved and done")


def test_the_console_refuses_to_switch_to_a_group(team):
    out = io.StringIO()
    script = ":as platform\n:whoami\nwhoami\n"
    run_console(
        team.dispatcher, user="alice", stdin=io.StringIO(script), stdout=out, interactive=False
    )
    lines = out.getvalue().splitlines()
    assert lines[:4] == [
        "alice> :as platform",
        f"error: {REFUSED}",
        "alice> :whoami",
        "(acting as alice)",
    ]
    with pytest.raises(PermissionDenied, match="is a group"):
        run_console(
            team.dispatcher, user="platform", stdin=io.StringIO(""), stdout=out, interactive=False
        )


def test_a_notebook_cannot_be_opened_as_a_group(team):
    with pytest.raises(PermissionDenied) as caught:
        Acr(user="platform", dispatcher=team.dispatcher)
    assert str(caught.value) == REFUSED
    acr = Acr(user="alice", dispatcher=team.dispatcher)
    assert acr.run("approve 1", user="S0PLATFORM").text == SLACK_REFUSED


@pytest.mark.slow  # starts `acrbot run` processes
def test_acrbot_run_as_a_group_is_refused(tmp_path, registry):
    config = tmp_path / "acrbot.toml"
    config.write_text(
        'database = "acrbot.db"\n'
        '[[registry]]\nname = "demo"\ntype = "oci-layout"\npath = "registry"\n'
        '[groups]\nplatform = ["bob", "erin"]\n'
    )
    bot = build_dispatcher(make_config(tmp_path, groups=GROUPS), registries=[registry])
    bot.ctx.roles.grant(Grant("platform", Role.OWNER), by="t", at=bot.ctx.clock())
    bot.ctx.roles.grant(Grant("alice", Role.CONTRIBUTOR), by="t", at=bot.ctx.clock())
    assert bot.handle("delete baseimages/fedora:24 --reason EOL", user="alice").ok
    run = [sys.executable, "-m", "bot", "run", "--config", str(config)]
    for command in ("approve 1", "whoami"):
        result = subprocess.run(
            [*run, "--user", "platform", command], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 1
        assert result.stdout == f"error: {REFUSED}\n"
    console = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--config", str(config), "--user", "platform"],
        capture_output=True,
        text=True,
        input="approve 1\n",
        timeout=60,
    )
    assert console.returncode == 1 and console.stdout == ""
    assert console.stderr == f"acrbot: {REFUSED}\n"
    assert bot.handle("request 1", user="bob").data["approvals"] == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"users": {"ops": "platform"}},
            "users.ops: 'platform' is a user group; a login maps to a user id "
            "(groups hold roles but never act)",
        ),
        (
            {"users": {"ops": "S0PLATFORM"}},
            "users.ops: 'S0PLATFORM' is a user group; a login maps to a user id "
            "(groups hold roles but never act)",
        ),
        (
            {"notebook": {"user": "platform"}},
            "notebook.user: 'platform' is a user group; name a user (groups never act)",
        ),
    ],
)
def test_the_config_cannot_map_a_login_to_a_group(tmp_path, extra, message):
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, groups=GROUPS, **extra)
    assert str(caught.value) == message


def test_the_acr_magic_refuses_a_group_in_one_line(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    from bot import demo
    from bot.notebook.magics import MagicError

    demo.prepare(tmp_path / "demo")
    monkeypatch.setenv("ACRBOT_CONFIG", str(tmp_path / "demo" / "acrbot.toml"))
    monkeypatch.setenv("ACRBOT_USER", "alice")
    shell = InteractiveShell.instance()
    shell.config.pop("Acr", None)
    shell.run_line_magic("reload_ext", "bot.notebook")
    try:
        result = shell.run_cell("%acr --user S0PLATFORM whoami").result
    finally:
        shell.run_line_magic("unload_ext", "bot.notebook")
    assert isinstance(result, MagicError) and result.message == SLACK_REFUSED
