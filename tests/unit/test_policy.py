"""The permission matrix: every command × every role, then scopes, globs and groups."""

import pytest

from bot.core.policy import Grant, Role, Scope, allows

ROLES = ["none", "reader", "contributor", "owner", "oncall"]
OK = "ok"
NO_ADMIN = "demo (oci-layout) has no admin user or credentials to manage"

# command line -> expected outcome per role: OK (ran), or the start of the refusal.
MATRIX = {
    "policy": {
        "none": "`policy` needs reader",
        "reader": OK,
        "contributor": OK,
        "owner": OK,
        "oncall": OK,
    },
    "review 1 --ok": {
        "none": "there is no request #1",
        "reader": "`review` needs owner",
        "contributor": "`review` needs owner",
        "owner": "request #1 was not a break-glass",
        "oncall": "`review` needs owner",
    },
    "help": dict.fromkeys(ROLES, OK),
    "whoami": dict.fromkeys(ROLES, OK),
    "roles": dict.fromkeys(ROLES, OK),
    "roles bob": {
        "none": "`roles USER` needs reader",
        "reader": OK,
        "contributor": OK,
        "owner": OK,
        "oncall": OK,
    },
    "registries": {
        "none": "`registries` needs reader",
        "reader": OK,
        "contributor": OK,
        "owner": OK,
        "oncall": OK,
    },
    "repos": {
        "none": "`repos` needs reader",
        "reader": OK,
        "contributor": OK,
        "owner": OK,
        "oncall": OK,
    },
    "tags baseimages/fedora": {
        "none": "`tags` needs reader",
        "reader": OK,
        "contributor": OK,
        "owner": OK,
        "oncall": OK,
    },
    "show baseimages/fedora:24": {
        "none": "`show` needs reader",
        "reader": OK,
        "contributor": OK,
        "owner": OK,
        "oncall": OK,
    },
    "report --repo 'baseimages/*'": {
        "none": "`report` needs reader",
        "reader": OK,
        "contributor": OK,
        "owner": OK,
        "oncall": OK,
    },
    "requests": {
        "none": "`requests` needs reader",
        "reader": OK,
        "contributor": OK,
        "owner": OK,
        "oncall": OK,
    },
    "delete baseimages/alpine:3.19 --reason old": {
        "none": "`delete` needs contributor",
        "reader": "`delete` needs contributor",
        "contributor": OK,
        "owner": OK,
        "oncall": "`delete` needs contributor",
    },
    "purge --filter 'baseimages/alpine:^3' --dry-run": {
        "none": "`purge` needs reader",
        "reader": OK,
        "contributor": OK,
        "owner": OK,
        "oncall": OK,
    },
    "purge --filter 'baseimages/alpine:^3' --reason old": {
        "none": "`purge` needs contributor",
        "reader": "`purge` needs contributor",
        "contributor": OK,
        "owner": OK,
        "oncall": "`purge` needs contributor",
    },
    "lock baseimages/fedora:latest --delete": {
        "none": "`lock` needs owner",
        "reader": "`lock` needs owner",
        "contributor": "`lock` needs owner",
        "owner": OK,
        "oncall": "`lock` needs owner",
    },
    # allowed, then refused for want of a [[deployed]] source (tests/servers/test_deployed.py)
    "where baseimages/fedora": {
        "none": "`where` needs reader",
        "reader": "no [[deployed]] source is configured",
        "contributor": "no [[deployed]] source is configured",
        "owner": "no [[deployed]] source is configured",
        "oncall": "no [[deployed]] source is configured",
    },
    "unlock baseimages/fedora:latest": {
        "none": "`unlock` needs owner",
        "reader": "`unlock` needs owner",
        "contributor": "`unlock` needs owner",
        "owner": OK,
        "oncall": "`unlock` needs owner",
    },
    "request 1": {
        "none": "`request` needs reader",
        "reader": OK,
        "contributor": OK,
        "owner": OK,
        "oncall": OK,
    },
    "approve 1": {
        "none": "there is no request #1",  # it may not even learn that the request exists
        "reader": "`approve` needs owner",
        "contributor": "`approve` needs owner",
        "owner": OK,
        "oncall": "`approve` needs owner",
    },
    "deny 1 --reason no": {
        "none": "there is no request #1",
        "reader": "`deny` needs owner",
        "contributor": "`deny` needs owner",
        "owner": OK,
        "oncall": "`deny` needs owner",
    },
    "cancel 1": {
        "none": "`cancel` needs contributor",
        "reader": "`cancel` needs contributor",
        "contributor": "only zed, who made request #1, can cancel it",
        "owner": "only zed, who made request #1, can cancel it",
        "oncall": "`cancel` needs contributor",
    },
    "undo 1 --reason mistake": {  # request #1 is zed's, still pending
        "none": "there is no request #1",
        "reader": "only the requester of #1 (zed) or an owner of every repository it touched",
        "contributor": "only the requester of #1 (zed) or an owner of every repository it",
        "owner": "request #1 (pending) deleted nothing: there is nothing to undo",
        "oncall": "only the requester of #1 (zed) or an owner of every repository it touched",
    },
    "rotate password2 --reason quarterly": {
        "none": "`rotate` needs oncall or owner",
        "reader": "`rotate` needs oncall or owner",
        "contributor": "`rotate` needs oncall or owner",
        "owner": NO_ADMIN,
        "oncall": NO_ADMIN,
    },
    "admin status": {
        "none": "`admin` needs oncall or owner",
        "reader": "`admin` needs oncall or owner",
        "contributor": "`admin` needs oncall or owner",
        "owner": NO_ADMIN,
        "oncall": NO_ADMIN,
    },
    "admin enable": {
        "none": "`admin` needs owner",
        "reader": "`admin` needs owner",
        "contributor": "`admin` needs owner",
        "owner": NO_ADMIN,
        "oncall": "`admin` needs owner",
    },
    "grant frank reader": {
        "none": "`grant` needs owner",
        "reader": "`grant` needs owner",
        "contributor": "`grant` needs owner",
        "owner": OK,
        "oncall": "`grant` needs owner",
    },
    "revoke zed contributor --registry '*'": {
        "none": "`revoke` needs owner",
        "reader": "`revoke` needs owner",
        "contributor": "`revoke` needs owner",
        "owner": OK,
        "oncall": "`revoke` needs owner",
    },
    "audit": {
        "none": "`audit` needs owner",
        "reader": "`audit` needs owner",
        "contributor": "`audit` needs owner",
        "owner": OK,
        "oncall": "`audit` needs owner",
    },
    "events baseimages/fedora": {
        "none": "`events` needs reader",
        "reader": OK,
        "contributor": OK,
        "owner": OK,
        "oncall": OK,
    },
}


def test_matrix_covers_every_command():
    from bot.core.commands import COMMANDS

    assert {line.split()[0] for line in MATRIX} == set(COMMANDS)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("line", list(MATRIX))
def test_permission_matrix(make_bot, line, role):
    users = {"zed": "contributor", "root": "owner"}
    if role != "none":
        users["user"] = role
    bot = make_bot(users=users)
    assert bot.say("zed", "delete baseimages/fedora:24 --reason cleanup").ok
    reply = bot.say("user", line)
    expected = MATRIX[line][role]
    if expected == OK:
        assert reply.ok, reply.text
    else:
        assert not reply.ok
        assert reply.text.startswith(expected), reply.text


def test_refusal_says_which_rule_and_what_you_hold(bot):
    reply = bot.say("carol", "delete baseimages/fedora:24 --reason x")
    assert reply.text == (
        "`delete` needs contributor on demo/baseimages/fedora; you have reader on */*."
    )


def test_help_lists_only_what_the_caller_may_run(bot):
    def commands(user):
        return {row[0].split()[0] for row in bot.say(user, "help").table.rows}

    assert commands("nobody") == {"help", "whoami", "roles"}
    assert commands("carol") == {
        "help",
        "whoami",
        "roles",
        "registries",
        "repos",
        "tags",
        "show",
        "report",
        "purge",
        "request",
        "requests",
        "events",
        "policy",
    }
    assert commands("alice") == commands("carol") | {"delete", "cancel", "undo"}
    # No configured registry has an admin user (oci-layout): rotate and admin are not offered.
    # oncall may `delete --break-glass` where a [[policy]] rule allows it.
    assert commands("dave") == commands("carol") | {"delete"}
    # Nor `where` without a [[deployed]] source.
    assert commands("bob") == {line.split()[0] for line in MATRIX} - {"rotate", "admin", "where"}


def test_help_hides_registry_wide_commands_from_repository_scoped_owners(make_bot):
    bot = make_bot(users={})
    bot.grant("olga", "owner", registry="demo", repositories="testimages/*")
    listed = {row[0].split()[0] for row in bot.say("olga", "help").table.rows}
    assert {"approve", "deny", "lock", "audit"} <= listed
    assert not listed & {"grant", "revoke", "rotate", "admin"}
    assert dict(bot.say("olga", "help admin").fields)["needs"] == (
        "owner; oncall or owner for `admin status`"
    )


def test_repository_glob_scopes_reads_and_listing(make_bot):
    bot = make_bot(users={})
    bot.grant("tess", "reader", registry="demo", repositories="testimages/*")
    assert bot.say("tess", "tags testimages/nginx").ok
    assert bot.say("tess", "tags baseimages/fedora").text == (
        "`tags` needs reader on demo/baseimages/fedora; you have reader on demo/testimages/*."
    )
    assert bot.say("tess", "repos").data["repositories"] == [
        "testimages/nginx",
        "testimages/wordpress",
    ]


def test_repository_glob_scopes_deletions(make_bot):
    bot = make_bot(users={"ollie": "owner"})
    bot.grant("cory", "contributor", registry="demo", repositories="webserver*/*")
    assert bot.say("cory", "delete webservers/nginx:stable --reason x").ok
    refused = bot.say("cory", "delete baseimages/alpine:3.19 --reason x")
    assert refused.text.startswith("`delete` needs contributor on demo/baseimages/alpine")


def test_grant_on_another_registry_does_not_reach_this_one(make_bot):
    bot = make_bot(users={})
    bot.grant("otto", "owner", registry="other")
    assert bot.say("otto", "tags baseimages/fedora").text.startswith("`tags` needs reader")
    assert bot.say("otto", "registries").ok


def test_roles_given_to_a_group_apply_to_its_members(make_bot):
    bot = make_bot(users={"zed": "contributor"}, groups={"platform": ["pat", "quinn"]})
    bot.grant("platform", "owner")
    assert bot.say("zed", "delete baseimages/fedora:24 --reason x").ok
    assert bot.say("pat", "approve 1").text.startswith("Request #1 approved and done")
    assert "groups" in dict(bot.say("quinn", "whoami").fields)


def test_registry_wide_commands_need_a_registry_wide_grant(make_bot):
    bot = make_bot(users={})
    bot.grant("olga", "owner", registry="demo", repositories="testimages/*")
    assert bot.say("olga", "grant frank reader").text.startswith(
        "`grant` needs owner on all of demo"
    )
    bot.grant("olga", "owner", registry="demo")
    assert bot.say("olga", "grant frank reader").text == "Granted frank reader on demo/*."
    assert bot.say("olga", "grant frank reader --registry '*'").text.startswith(
        "`grant` needs owner on all of *"
    )


def test_last_owner_of_everything_cannot_be_revoked(make_bot):
    bot = make_bot(users={"root": "owner"})
    assert bot.say("root", "revoke root owner --registry '*'").text.startswith(
        "root is the last owner of everything"
    )


@pytest.mark.parametrize(
    ("grant", "needs", "scope", "where", "allowed"),
    [
        (Grant("u", Role.OWNER), {Role.READER}, Scope.REPOSITORY, ("r", "a/b"), True),
        (Grant("u", Role.ONCALL), {Role.CONTRIBUTOR}, Scope.REPOSITORY, ("r", "a"), False),
        (Grant("u", Role.ONCALL), {Role.READER}, Scope.REPOSITORY, ("r", "a"), True),
        (
            Grant("u", Role.READER, "r", "a/*"),
            {Role.READER},
            Scope.REPOSITORY,
            ("r", "a/b/c"),
            True,
        ),
        (Grant("u", Role.READER, "r", "a/*"), {Role.READER}, Scope.REGISTRY, ("r", None), False),
        (
            Grant("u", Role.READER, "r", "a/*"),
            {Role.READER},
            Scope.SOME_REPOSITORY,
            ("r", None),
            True,
        ),
        (Grant("u", Role.READER, "s"), {Role.READER}, Scope.SOME_REPOSITORY, ("r", None), False),
    ],
)
def test_allows(grant, needs, scope, where, allowed):
    registry, repository = where
    assert (
        allows([grant], frozenset(needs), scope, registry=registry, repository=repository)
        is allowed
    )


@pytest.mark.parametrize(
    ("grant", "text"),
    [
        (
            Grant("tina", Role.CONTRIBUTOR, repositories="team-a/*"),
            "contributor on team-a/* in every registry",
        ),
        (Grant("tina", Role.READER), "reader on */*"),
        (Grant("tina", Role.OWNER, registry="demo"), "owner on demo/*"),
        (
            Grant("tina", Role.OWNER, registry="demo", repositories="team-a/*"),
            "owner on demo/team-a/*",
        ),
    ],
)
def test_grant_reads_plainly(grant, text):
    assert str(grant) == text
