"""`[users]`: a login name means the same Slack id, and so the same grants, at every door."""

import io
import json
import subprocess
import sys

import pytest

from bot.app import build_dispatcher
from bot.console import run_console
from bot.core.errors import ConfigError
from bot.core.policy import Grant, Role
from bot.notebook import Acr
from tests.support.fixtures import make_config

USERS = {"alice": "UALICE", "bob": "UBOB", "alice.smith@example.com": "UALICE"}


@pytest.fixture
def team(tmp_path, registry, clock):
    """Grants name Slack ids only, as made in Slack; the config maps logins to them."""
    config = make_config(tmp_path, users=USERS, slack={"requests_channel": "C0REQ"})
    dispatcher = build_dispatcher(config, clock=clock, registries=[registry])
    for user, role in (("UALICE", Role.CONTRIBUTOR), ("UBOB", Role.OWNER)):
        dispatcher.ctx.roles.grant(Grant(principal=user, role=role), by="test", at=clock())
    return dispatcher


def console(dispatcher, script, *, user):
    out = io.StringIO()
    run_console(dispatcher, user=user, stdin=io.StringIO(script), stdout=out, interactive=False)
    return out.getvalue()


def test_the_console_acts_as_the_mapped_id(team):
    transcript = console(team, "whoami\n:as bob\n:whoami\n", user="alice")
    assert transcript.splitlines()[:4] == [
        "alice> whoami",
        "You are UALICE.",
        "  user   UALICE",
        "  roles  contributor on */*",
    ]
    assert "(now acting as bob (UBOB))" in transcript
    assert "(acting as bob (UBOB))" in transcript


def test_console_and_notebook_have_the_same_grants(team):
    in_console = team.handle("whoami", user=team.ctx.config.user_id("alice"))
    in_notebook = Acr(user="alice", dispatcher=team).whoami()
    by_email = Acr(user="alice.smith@example.com", dispatcher=team).whoami()
    assert in_notebook.data == in_console.data == by_email.data
    assert in_notebook.data["grants"] == ["contributor on */*"]


def test_a_notebook_request_names_the_slack_id_and_goes_to_the_channel(team):
    request = Acr(user="alice", dispatcher=team).delete("baseimages/fedora:24", reason="EOL")
    assert request.data["requester"] == "UALICE"
    assert request.request.channel == "C0REQ"
    approved = Acr(user="bob", dispatcher=team).approve(1)
    assert approved.ok and approved.data["approvals"] == ["UBOB"]


def test_ids_and_unmapped_names_pass_through(team):
    assert Acr(user="UBOB", dispatcher=team).user == "UBOB"
    assert Acr(user="carol", dispatcher=team).whoami().data["user"] == "carol"


@pytest.mark.slow  # starts `acrbot run` processes
def test_acrbot_run_maps_the_user(tmp_path, registry):
    (tmp_path / "acrbot.toml").write_text(
        'database = "acrbot.db"\n'
        '[[registry]]\nname = "demo"\ntype = "oci-layout"\npath = "registry"\n'
        '[users]\nalice = "UALICE"\n'
    )
    init = ["init", "--config", str(tmp_path / "acrbot.toml")]
    subprocess.run([sys.executable, "-m", "bot", *init], check=True, capture_output=True)
    command = ["run", "--config", str(tmp_path / "acrbot.toml"), "--user", "alice", "--json"]
    result = subprocess.run(
        [sys.executable, "-m", "bot", *command, "whoami"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(result.stdout)["data"]["user"] == "UALICE"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"users": ["alice"]}, 'users: expected a table of login = "USER-ID"'),
        (
            {"users": {"alice": {"slack": "UALICE"}}},
            'users.alice: expected the user id its grants name, such as "U0123ALICE", got '
            "{'slack': 'UALICE'}",
        ),
        (
            {"users": {"alice": "not an id"}},
            'users.alice: expected the user id its grants name, such as "U0123ALICE", got '
            "'not an id'",
        ),
        ({"users": {"al ice": "U1"}}, "users.al ice: not a login name (letters, digits and"),
        (
            {"users": {"alice": "bob", "bob": "UBOB"}},
            "users.alice: 'bob' is itself an alias; name the user id it maps to ('UBOB')",
        ),
        ({"notebook": {"usr": "alice"}}, "notebook.usr: unknown key (known: user)"),
        ({"notebook": {"user": 7}}, 'notebook.user: expected a login name or user id, such as "'),
        ({"notebook": "alice"}, "notebook: expected a table"),
    ],
)
def test_bad_users_and_notebook_tables_are_refused_naming_the_key(tmp_path, extra, message):
    with pytest.raises(ConfigError) as raised:
        make_config(tmp_path, **extra)
    assert str(raised.value).startswith(message)


def test_the_notebook_table_and_the_alias_meet(tmp_path):
    config = make_config(tmp_path, users={"alice": "UALICE"}, notebook={"user": "alice"})
    assert (config.notebook_user, config.user_id("alice"), config.user_id("UALICE")) == (
        "alice",
        "UALICE",
        "UALICE",
    )
    assert Acr(config).user == "UALICE"
