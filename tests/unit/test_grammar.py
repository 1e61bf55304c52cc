"""The grammar: what each command line parses to, and the exact error a person reads."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.commands import COMMANDS
from bot.core.errors import UsageError
from bot.core.grammar import parse
from bot.core.policy import Role
from bot.core.references import ImageRef


@pytest.mark.parametrize(
    ("line", "name", "args"),
    [
        ("", "help", {"command": None}),
        ("help tags", "help", {"command": "tags"}),
        ("HELP", "help", {"command": None}),
        ("repos", "repos", {"registry": None, "filter": None, "top": None, "after": None}),
        (
            "repos demo --filter 'base*' --top 5 --after base",
            "repos",
            {"registry": "demo", "filter": "base*", "top": 5, "after": "base"},
        ),
        (
            "tags baseimages/fedora --orderby=name --filter 'v1.*' --after v1.2",
            "tags",
            {
                "repository": "baseimages/fedora",
                "registry": None,
                "filter": "v1.*",
                "digest": None,
                "top": None,
                "orderby": "name",
                "after": "v1.2",
            },
        ),
        (
            "show baseimages/fedora",
            "show",
            {"image": ImageRef("baseimages/fedora", "latest"), "registry": None},
        ),
        (
            'delete baseimages/fedora:24 --reason "end of life"',
            "delete",
            {
                "image": ImageRef("baseimages/fedora", "24"),
                "reason": "end of life",
                "manifest": False,
                "registry": None,
                "break_glass": False,
            },
        ),
        (
            "delete a:1 --manifest --reason “smart quotes work”",
            "delete",
            {
                "image": ImageRef("a", "1"),
                "reason": "smart quotes work",
                "manifest": True,
                "registry": None,
                "break_glass": False,
            },
        ),
        ("requests --mine", "requests", {"mine": True, "pending": False, "all": False}),
        ("approve #12", "approve", {"id": 12, "reason": None, "confirm": None}),
        ("deny 3 --reason 'still used'", "deny", {"id": 3, "reason": "still used"}),
        (
            "rotate password2 --reason rotation",
            "rotate",
            {"which": "password2", "registry": None, "reason": "rotation"},
        ),
        ("admin STATUS", "admin", {"action": "status", "registry": None}),
        (
            "grant <@U012AB|carol> reader --repo 'testimages/*'",
            "grant",
            {"user": "U012AB", "role": Role.READER, "registry": None, "repo": "testimages/*"},
        ),
        (
            "grant <!subteam^S0ABC|@platform> owner --registry '*'",
            "grant",
            {"user": "S0ABC", "role": Role.OWNER, "registry": "*", "repo": None},
        ),
        (
            "audit --last 5 --user @alice --request 2",
            "audit",
            {"last": 5, "user": "alice", "request": 2},
        ),
    ],
)
def test_parse_builds_arguments(line, name, args):
    parsed = parse(line, COMMANDS)
    assert (parsed.name, parsed.args) == (name, args)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("tgas x", "unknown command `tgas`. Did you mean `tags`?"),
        ("frobnicate", "unknown command `frobnicate`. Try `help`."),
        (
            "tags",
            "missing REPO\nUsage: tags REPO [--registry R] [--filter GLOB] [--digest DIGEST] "
            "[--orderby ORDER] [--top N] [--after NAME]",
        ),
        ("tags a b", "unexpected argument `b`\nUsage: tags REPO"),
        (
            "audit VERIFY",
            "`audit verify` is not a chat command: the hash chain is checked with `acrbot audit "
            "verify` (add --blob for the archive), in a shell where the bot's database is\n"
            "Usage: audit [--last N]",
        ),
        ("audit --last 5 verify", "`audit verify` is not a chat command"),
        ("audit check", "unexpected argument `check`\nUsage: audit [--last N]"),
        ("tags a --top 0", "`0` is not a number from 1 to 1000"),
        ("tags a --top", "option `--top` needs a value"),
        ("tags a --colour red", "unknown option `--colour`"),
        ("tags a --top 1 --top 2", "option `--top` given twice"),
        ("tags a --orderby size", "`size` is not one of: time_desc, time_asc, name"),
        ("delete a:1", "missing --reason\nUsage: delete IMAGE --reason TEXT"),
        ("delete a:1 --reason '   '", "the reason must not be empty"),
        ("delete a:1 --reason x --manifest=yes", "option `--manifest` takes no value"),
        ('delete a:1 --reason "open', "unbalanced quotes"),
        ("requests --mine --all", "--mine and --all cannot be used together"),
        ("approve twelve", "`twelve` is not a request id (e.g. 12 or #12)"),
        ("approve 0", "`0` is not a request id"),
        ("rotate password3 --reason x", "`password3` is not one of: password, password2"),
        ("grant carol boss", "`boss` is not a role (one of: reader, contributor, owner, oncall)"),
        ("grant 'carol smith' reader", "`carol smith` is not a user or group id"),
        ("grant carol reader --repo 'Bad Glob'", "is not a repository glob"),
        ("x" * 4001, "command is too long (4001 characters; the limit is 4000)"),
    ],
)
def test_parse_refuses_with_a_clear_message(line, message):
    with pytest.raises(UsageError) as exc:
        parse(line, COMMANDS)
    assert message in str(exc.value)


def test_parse_ignores_control_characters_and_tabs():
    parsed = parse("tags\tbaseimages/fedora\x00\x1b --top\x07 3", COMMANDS)
    assert parsed.args["repository"] == "baseimages/fedora"
    assert parsed.args["top"] == 3


hostile = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.sampled_from(list("\"'\\ -–—“”\x00\n\t@:#*/<>|^!é🙂")), max_size=80),
    st.lists(
        st.sampled_from(
            [
                *COMMANDS,
                "--reason",
                "--top",
                "--registry",
                "--manifest",
                "a:1",
                "#1",
                "'",
                '"',
                "x" * 300,
                "sha256:",
                "@",
                "--",
            ]
        ),
        max_size=8,
    ).map(" ".join),
)


@settings(max_examples=400, deadline=None)
@given(hostile)
def test_parse_raises_only_usage_errors(line):
    try:
        parse(line, COMMANDS)
    except UsageError as exc:
        assert str(exc).strip()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(line=hostile)
def test_dispatch_never_shows_a_traceback(bot, line):
    for user in ("alice", "bob", "nobody"):
        reply = bot.say(user, line)
        assert "Traceback" not in reply.text
        assert "something went wrong" not in reply.text, reply.text


def test_dispatch_handles_a_10kb_line(bot):
    reply = bot.say("alice", "tags " + "a" * 10_000)
    assert not reply.ok
    assert reply.text == "command is too long (10005 characters; the limit is 4000)"
