"""Every command of the grammar: its arguments, help text, example and the role it needs.

This table is the single source for parsing, `help`, the command lists of the README and
docs/commands.md (a test keeps them in step) and the permission checks made by the dispatcher.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from bot.core.errors import PermissionDenied, UsageError
from bot.core.grammar import CommandSpec, Param
from bot.core.policy import Role, Scope
from bot.core.references import parse_image, shorten, validate_digest, validate_repository

_REGISTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# Slack sends mentions as <@U123> or <@U123|name>, user groups as <!subteam^S123|@name>.
_SLACK_USER = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
_SLACK_GROUP = re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|[^>]*)?>")
_GLOB = re.compile(r"[a-z0-9._/*?\-]{1,255}")
MAX_REASON = 500
SHOW_TAGS = 20  # tags `show` prints before pointing at `tags REPO --digest …` for the rest


def registry_name(value: str) -> str:
    if not _REGISTRY_NAME.fullmatch(value):
        raise UsageError(f"`{shorten(value, 30)}` is not a registry name")
    return value


def registry_or_all(value: str) -> str:
    return value if value == "*" else registry_name(value)


_SLACK_ID = re.compile(r"[UWS][A-Z0-9]{1,20}")
_LOCAL_ID = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,63}")


def canonical_id(value: str) -> str:
    """The one form a user or group id takes everywhere (grants, requests, approvals):
    Slack ids as Slack writes them (`U0123ABC`, `W…`, groups `S…`); any other id (console,
    notebook) trimmed and lower-cased, so `Alice` and `alice` are one person and cannot
    approve each other's requests. Empty ids, spaces inside, control characters: refused."""
    text = value.strip()
    if _SLACK_ID.fullmatch(text):
        return text
    text = text.lower()
    if not _LOCAL_ID.fullmatch(text):
        shown = shorten(value, 30) if value.strip() else "(empty)"
        raise UsageError(
            f"`{shown}` is not a user or group id: use a Slack id (U0123ABC) or a login name "
            "(letters, digits, . _ @ + -)"
        )
    return text


SLACK_GROUP_ID = re.compile(r"S[A-Z0-9]{1,20}")


def group_id(user: str, groups: Mapping[str, object]) -> bool:
    """A user-group id: a Slack user group (`S…`, as Slack writes it) or a `[groups]` name."""
    return bool(SLACK_GROUP_ID.fullmatch(user)) or user in groups


def acting_user(value: str, *, groups: Mapping[str, tuple[str, ...]]) -> str:
    """The canonical id of who is acting; a group id is refused (PermissionDenied).

    Groups hold roles for their members; they never act. Acting as `platform` would let
    anyone who can type its name approve with a whole group's roles, and its approval would
    count as a person's toward a quorum. Every door (console, `acrbot run`, notebooks, Slack)
    comes through here, by the dispatcher, so none can be used to act as one.
    """
    user = canonical_id(value)
    if SLACK_GROUP_ID.fullmatch(user):
        raise PermissionDenied(
            f"`{user}` is a Slack user group, not a user: groups hold roles but never act; "
            "act as one of its members"
        )
    if user in groups:
        members = ", ".join(groups[user][:5]) + (" …" if len(groups[user]) > 5 else "")
        raise PermissionDenied(
            f"`{user}` is a group ([groups] {user}), not a user: groups hold roles but never "
            f"act; act as one of its members ({members or 'it has none'})"
        )
    return user


def principal(value: str) -> str:
    """A user or group id; Slack mentions are reduced to their id."""
    for pattern in (_SLACK_USER, _SLACK_GROUP):
        match = pattern.fullmatch(value)
        if match:
            return match.group(1)
    return canonical_id(value.removeprefix("@"))


def role(value: str) -> Role:
    try:
        return Role(value.lower())
    except ValueError:
        raise UsageError(
            f"`{shorten(value, 30)}` is not a role (one of: {', '.join(r.value for r in Role)})"
        ) from None


_TAG_GLOB = re.compile(r"[A-Za-z0-9._\-*?\[\]!]{1,128}")
_CURSOR = re.compile(r"[A-Za-z0-9._/\-]{1,255}")


def tag_glob(value: str) -> str:
    if not _TAG_GLOB.fullmatch(value):
        raise UsageError(f"`{shorten(value, 30)}` is not a tag glob (e.g. `v1.*` or `pr-*`)")
    return value


def cursor(value: str) -> str:
    """A page cursor: the last tag or repository name of the page before."""
    if not _CURSOR.fullmatch(value):
        raise UsageError(
            f"`{shorten(value, 30)}` is not a tag or repository name to continue after"
        )
    return value


def repo_glob(value: str) -> str:
    if not _GLOB.fullmatch(value):
        raise UsageError(f"`{shorten(value, 30)}` is not a repository glob (e.g. `team/*`)")
    return value


def request_id(value: str) -> int:
    digits = value.removeprefix("#")
    if not digits.isdigit() or len(digits) > 12 or int(digits) == 0:
        raise UsageError(f"`{shorten(value, 30)}` is not a request id (e.g. 12 or #12)")
    return int(digits)


def reason(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise UsageError("the reason must not be empty")
    if len(value) > MAX_REASON:
        raise UsageError(f"the reason is too long ({len(value)} characters; max {MAX_REASON})")
    return value


def confirm_word(value: str) -> str:
    """What an approver typed to confirm (compared with the repository name by the handler)."""
    value = value.strip()
    if not value or len(value) > 255:
        raise UsageError("--confirm: type the repository name (e.g. prod/payments)")
    return value


def keep_count(value: str) -> int:
    if not value.isdigit() or int(value) > 10_000:
        raise UsageError(f"`{shorten(value, 30)}` is not a number from 0 to 10000")
    return int(value)


def ago_text(value: str) -> str:
    """Checked now (a bad duration is a usage error), kept as typed for the reply."""
    from bot.core.purge_spec import parse_ago

    parse_ago(value)
    return value.strip()


def stale_text(value: str) -> str:
    from bot.core.purge_spec import parse_ago

    parse_ago(value, option="--stale")
    return value.strip()


def purge_filter(value: str) -> object:
    from bot.core.purge_spec import parse_filter

    return parse_filter(value)


def any_image(value: str) -> object:
    """A repository, or an image by tag or digest (`where`)."""
    from dataclasses import replace

    ref = parse_image(value, default_tag="")
    return replace(ref, tag=None) if ref.tag == "" else ref


def count(value: str, *, limit: int = 1000) -> int:
    if not value.isdigit() or not 1 <= int(value) <= limit:
        raise UsageError(f"`{shorten(value, 30)}` is not a number from 1 to {limit}")
    return int(value)


def choice(*values: str) -> Callable[[str], str]:
    def convert(value: str) -> str:
        if value.lower() not in values:
            raise UsageError(f"`{shorten(value, 30)}` is not one of: {', '.join(values)}")
        return value.lower()

    return convert


def command_name(value: str) -> str:
    return value.lower()


REGISTRY_OPT = Param(
    "registry",
    "R",
    "registry name (default: the default registry)",
    registry_name,
    flag="--registry",
    required=False,
)
TOP_OPT = Param(
    "top", "N", "rows per page (default 25, at most 1000)", count, flag="--top", required=False
)
AFTER_OPT = Param(
    "after",
    "NAME",
    "continue after this name (the next-page cursor)",
    cursor,
    flag="--after",
    required=False,
)
REASON_OPT = Param("reason", "TEXT", "why (quote several words)", reason, flag="--reason")
USER_ARG = Param("user", "USER", "a user id, @mention or user-group id", principal)
ROLE_ARG = Param("role", "ROLE", "reader, contributor, owner or oncall", role)
GRANT_REGISTRY_OPT = Param(
    "registry",
    "R",
    "registry name, or * for all (default: the default registry)",
    registry_or_all,
    flag="--registry",
    required=False,
)
REPO_GLOB_OPT = Param(
    "repo",
    "GLOB",
    "repositories the grant covers (default: *)",
    repo_glob,
    flag="--repo",
    required=False,
)
REQUEST_ARG = Param("id", "ID", "request id, e.g. 12 or #12", request_id)
BREAK_GLASS_OPT = Param(
    "break_glass",
    "",
    "oncall or owner, where the rule allows: run now, without approvals, loudly; reviewed "
    "afterwards (`review ID`)",
    flag="--break-glass",
    takes_value=False,
    required=False,
)


def _spec(
    name: str,
    summary: str,
    example: str,
    needs: frozenset[Role] | None,
    scope: Scope,
    *params: Param,
    exclusive: tuple[tuple[str, ...], ...] = (),
    needs_when: tuple | None = None,
    elsewhere: dict[str, str] | None = None,
) -> CommandSpec:
    """``needs_when`` lowers or raises the role for one value of an argument (`admin status`)."""
    return CommandSpec(
        name=name,
        summary=summary,
        example=example,
        params=params,
        exclusive=exclusive,
        meta={"needs": needs or frozenset(), "scope": scope, "needs_when": needs_when},
        elsewhere=elsewhere or {},
    )


READ = frozenset({Role.READER})
CONTRIBUTE = frozenset({Role.CONTRIBUTOR})
OWN = frozenset({Role.OWNER})
ROTATE = frozenset({Role.ONCALL, Role.OWNER})

# Each command's handler: handlers/__init__.py HANDLERS[name] (same names, same order).
COMMAND_LIST: tuple[CommandSpec, ...] = (
    _spec(
        "help",
        "list the commands you may run, or explain one",
        "help tags",
        None,
        Scope.NONE,
        Param("command", "COMMAND", "a command name", command_name, required=False),
    ),
    _spec("whoami", "show who the bot thinks you are and your roles", "whoami", None, Scope.NONE),
    _spec("registries", "list the registries you can see", "registries", READ, Scope.ANYWHERE),
    _spec(
        "repos",
        "list repositories",
        "repos --filter 'base*' --top 20",
        READ,
        Scope.SOME_REPOSITORY,
        Param("registry", "REGISTRY", "registry name", registry_name, required=False),
        Param(
            "filter",
            "GLOB",
            "only repositories matching GLOB",
            repo_glob,
            flag="--filter",
            required=False,
        ),
        TOP_OPT,
        AFTER_OPT,
    ),
    _spec(
        "tags",
        "list the tags of a repository",
        "tags baseimages/fedora --orderby time_desc",
        READ,
        Scope.REPOSITORY,
        Param("repository", "REPO", "repository name", validate_repository),
        REGISTRY_OPT,
        Param(
            "filter",
            "GLOB",
            "only tags matching GLOB (e.g. `v1.*`)",
            tag_glob,
            flag="--filter",
            required=False,
        ),
        Param(
            "digest",
            "DIGEST",
            "only the tags on this digest",
            validate_digest,
            flag="--digest",
            required=False,
        ),
        Param(
            "orderby",
            "ORDER",
            "time_desc (default where the registry has dates), time_asc, or name "
            "(default on `oci`: natural order, v10 after v9)",
            choice("time_desc", "time_asc", "name"),
            flag="--orderby",
            required=False,
        ),
        TOP_OPT,
        AFTER_OPT,
    ),
    _spec(
        "show",
        f"show an image: digest, size, dates, locks, the first {SHOW_TAGS} tags on its digest",
        "show baseimages/fedora:24",
        READ,
        Scope.REPOSITORY,
        Param(
            "image",
            "IMAGE",
            "repo:tag, repo@sha256:… or loginserver/repo:tag",
            partial(parse_image, default_tag="latest"),
        ),
        REGISTRY_OPT,
    ),
    _spec(
        "report",
        "storage by repository: tags, manifests, untagged, bytes (shared layers once), stale",
        "report --repo 'team/*' --stale 90d",
        READ,
        Scope.SOME_REPOSITORY,
        Param("registry", "REGISTRY", "registry name", registry_name, required=False),
        Param(
            "repo",
            "GLOB",
            "only repositories matching GLOB",
            repo_glob,
            flag="--repo",
            required=False,
        ),
        Param(
            "stale",
            "DURATION",
            "stale = no push in this long (default 90d; e.g. 30d, 2d12h)",
            stale_text,
            flag="--stale",
            required=False,
        ),
        TOP_OPT,
        AFTER_OPT,
    ),
    _spec(
        "delete",
        "request deletion of a tag (or with --manifest, the image and all its tags)",
        'delete baseimages/fedora:24 --reason "EOL"',
        CONTRIBUTE,
        Scope.REPOSITORY,
        Param("image", "IMAGE", "repo:tag, repo@sha256:… or loginserver/repo:tag", parse_image),
        REASON_OPT,
        Param(
            "manifest",
            "",
            "delete the manifest and every tag on it",
            flag="--manifest",
            takes_value=False,
            required=False,
        ),
        REGISTRY_OPT,
        BREAK_GLASS_OPT,
        needs_when=("break_glass", {True: ROTATE}),
    ),
    _spec(
        "purge",
        "remove many tags at once, with acr purge's options: one request, one approval",
        'purge --filter "myapp:^pr-" --ago 30d --keep 5 --dry-run',
        CONTRIBUTE,
        Scope.SOME_REPOSITORY,
        Param(
            "filter",
            "REPO:REGEX",
            "a repository name or glob, and a regex searched in tag names (`^…$` anchors)",
            purge_filter,
            flag="--filter",
            repeat=True,
        ),
        Param(
            "ago",
            "DURATION",
            "only tags older than this: 30d, 2d3h6m, 12h (0d: any age)",
            ago_text,
            flag="--ago",
            required=False,
        ),
        Param(
            "keep",
            "N",
            "keep the N most recent matching images of each repository, with all their tags",
            keep_count,
            flag="--keep",
            required=False,
        ),
        Param(
            "untagged",
            "",
            "also remove manifests that have no tag (acr, oci-layout)",
            flag="--untagged",
            takes_value=False,
            required=False,
        ),
        Param(
            "dry_run",
            "",
            "list what would go and change nothing (readers may run it)",
            flag="--dry-run",
            takes_value=False,
            required=False,
        ),
        REGISTRY_OPT,
        Param(
            "reason",
            "TEXT",
            "why (not needed with --dry-run)",
            reason,
            flag="--reason",
            required=False,
        ),
        BREAK_GLASS_OPT,
        needs_when=(("dry_run", {True: READ}), ("break_glass", {True: ROTATE})),
        exclusive=(("dry_run", "break_glass"),),
    ),
    _spec(
        "lock",
        "lock an image against deletion (--delete) or overwrite (--write); both by default; "
        "--deployed: every digest the [[deployed]] sources show in use",
        "lock baseimages/fedora:24 --delete",
        OWN,
        Scope.REPOSITORY,
        Param(
            "image",
            "IMAGE",
            "repo:tag, or repo@sha256:… for the manifest",
            parse_image,
            required=False,
        ),
        Param("delete", "", "against deletion", flag="--delete", takes_value=False, required=False),
        Param("write", "", "against overwrite", flag="--write", takes_value=False, required=False),
        Param(
            "deployed",
            "",
            "lock against deletion every digest in use (owner of the whole registry)",
            flag="--deployed",
            takes_value=False,
            required=False,
        ),
        REGISTRY_OPT,
        exclusive=(("image", "deployed"),),
    ),
    _spec(
        "where",
        "where an image runs (a tag, a digest, or every digest of a repository), from every "
        "[[deployed]] source, and how fresh that answer is",
        "where payments/api:v1.4.2",
        READ,
        Scope.REPOSITORY,
        Param("image", "IMAGE", "repo, repo:tag or repo@sha256:…", any_image),
        REGISTRY_OPT,
    ),
    _spec(
        "unlock",
        "unlock an image (--delete, --write, or both by default)",
        "unlock baseimages/fedora:24",
        OWN,
        Scope.REPOSITORY,
        Param("image", "IMAGE", "repo:tag, or repo@sha256:… for the manifest", parse_image),
        Param("delete", "", "for deletion", flag="--delete", takes_value=False, required=False),
        Param("write", "", "for overwrite", flag="--write", takes_value=False, required=False),
        REGISTRY_OPT,
    ),
    _spec(
        "request",
        "show one request in full (a purge: every item, paged)",
        "request 12",
        READ,
        Scope.ANYWHERE,
        REQUEST_ARG,
        TOP_OPT,
        AFTER_OPT,
    ),
    _spec(
        "requests",
        "list deletion requests (default: pending ones you can see)",
        "requests --mine",
        READ,
        Scope.ANYWHERE,
        Param(
            "mine", "", "only requests you made", flag="--mine", takes_value=False, required=False
        ),
        Param(
            "pending",
            "",
            "only pending requests",
            flag="--pending",
            takes_value=False,
            required=False,
        ),
        Param(
            "all",
            "",
            "every request, whatever its state",
            flag="--all",
            takes_value=False,
            required=False,
        ),
        exclusive=(("mine", "pending", "all"),),
    ),
    _spec(
        "approve",
        "approve a pending request (never your own)",
        "approve 12",
        OWN,
        Scope.REQUEST,
        REQUEST_ARG,
        Param("reason", "TEXT", "optional note", reason, flag="--reason", required=False),
        Param(
            "confirm",
            "REPO",
            'the repository name, where a rule has confirm = "type"',
            confirm_word,
            flag="--confirm",
            required=False,
        ),
    ),
    _spec(
        "deny",
        "deny a pending request",
        'deny 12 --reason "still in use"',
        OWN,
        Scope.REQUEST,
        REQUEST_ARG,
        REASON_OPT,
    ),
    _spec(
        "cancel",
        "cancel a pending request you made",
        "cancel 12",
        CONTRIBUTE,
        Scope.REQUEST,
        REQUEST_ARG,
    ),
    _spec(
        "review",
        "review a break-glass deletion afterwards: --ok or --concern TEXT (an owner, not the "
        "actor)",
        "review 12 --ok",
        OWN,
        Scope.REQUEST,
        REQUEST_ARG,
        Param("ok", "", "it was justified", flag="--ok", takes_value=False, required=False),
        Param("concern", "TEXT", "what was wrong", reason, flag="--concern", required=False),
        exclusive=(("ok", "concern"),),
    ),
    _spec(
        "policy",
        "list the [[policy]] rules, or show which applies to an image and what it requires",
        "policy prod/payments:1.2 purge",
        READ,
        Scope.ANYWHERE,
        Param(
            "image",
            "IMAGE",
            "repo, repo:tag or loginserver/repo:tag",
            partial(parse_image, default_tag="latest"),
            required=False,
        ),
        Param(
            "action",
            "ACTION",
            "delete, delete_manifest or purge (default: delete)",
            choice("delete", "delete_manifest", "purge"),
            required=False,
        ),
        REGISTRY_OPT,
    ),
    _spec(
        "undo",
        "put back what a done request deleted, from the bot's snapshots ([undo] window)",
        'undo 12 --only "myapp:v1" --reason "still in use by a pipeline"',
        CONTRIBUTE,
        Scope.REQUEST,
        REQUEST_ARG,
        Param(
            "only",
            "REGEX",
            "only the items whose repo:tag or repo@digest the RE2 regex finds",
            str,
            flag="--only",
            required=False,
        ),
        Param(
            "force",
            "",
            "also ask (a request, approved like a delete) to move the tags re-pushed since "
            "back to what was deleted",
            flag="--force",
            takes_value=False,
            required=False,
        ),
        REASON_OPT,
    ),
    _spec(
        "rotate",
        "regenerate the registry's admin password not in use",
        'rotate password2 --reason "quarterly rotation"',
        ROTATE,
        Scope.REGISTRY,
        Param(
            "which",
            "password|password2",
            "which admin password to regenerate",
            choice("password", "password2"),
        ),
        REGISTRY_OPT,
        REASON_OPT,
    ),
    _spec(
        "admin",
        "enable, disable or show the registry's admin user",
        "admin status",
        OWN,
        Scope.REGISTRY,
        Param(
            "action", "enable|disable|status", "what to do", choice("enable", "disable", "status")
        ),
        REGISTRY_OPT,
        needs_when=("action", {"status": ROTATE}),
    ),
    _spec(
        "roles",
        "show your roles, or another user's",
        "roles @carol",
        None,
        Scope.NONE,
        Param("user", "USER", "a user id or @mention", principal, required=False),
    ),
    _spec(
        "grant",
        "give a user or group a role",
        "grant carol reader --repo 'testimages/*'",
        OWN,
        Scope.REGISTRY,
        USER_ARG,
        ROLE_ARG,
        GRANT_REGISTRY_OPT,
        REPO_GLOB_OPT,
    ),
    _spec(
        "revoke",
        "take a role back",
        "revoke carol reader --repo 'testimages/*'",
        OWN,
        Scope.REGISTRY,
        USER_ARG,
        ROLE_ARG,
        GRANT_REGISTRY_OPT,
        REPO_GLOB_OPT,
    ),
    _spec(
        "audit",
        "show the audit log",
        "audit --last 20 --user alice",
        OWN,
        Scope.ANYWHERE,
        Param("last", "N", "the last N entries (default 20)", count, flag="--last", required=False),
        Param("user", "USER", "only this user's entries", principal, flag="--user", required=False),
        Param(
            "request",
            "ID",
            "only this request's entries",
            request_id,
            flag="--request",
            required=False,
        ),
        elsewhere={
            "verify": "`audit verify` is not a chat command: the hash chain is checked with "
            "`acrbot audit verify` (add --blob for the archive), in a shell where the bot's "
            "database is"
        },
    ),
    _spec(
        "events",
        "list recent registry events (pushes, deletions, drift) the bot was told of",
        "events team/api --last 20",
        READ,
        Scope.SOME_REPOSITORY,
        Param("repository", "REPO", "only this repository", validate_repository, required=False),
        REGISTRY_OPT,
        Param("last", "N", "the last N events (default 20)", count, flag="--last", required=False),
    ),
)

COMMANDS: dict[str, CommandSpec] = {spec.name: spec for spec in COMMAND_LIST}


def needs(spec: CommandSpec, args: dict | None = None) -> frozenset[Role]:
    """The roles that may run ``spec`` (with these ``args``, when the role depends on them)."""
    if args is not None:
        for name, by_value in needs_when(spec):
            if args.get(name) in by_value:
                return by_value[args[name]]
    return spec.meta["needs"]


def needs_when(spec: CommandSpec) -> tuple[tuple[str, dict[object, frozenset[Role]]], ...]:
    """The (argument, {value: roles}) pairs that change the role ``spec`` needs: one pair,
    or several (`purge`: --dry-run lowers it, --break-glass changes it)."""
    when = spec.meta["needs_when"]
    if when is None:
        return ()
    return (when,) if isinstance(when[0], str) else tuple(when)


def scope(spec: CommandSpec) -> Scope:
    return spec.meta["scope"]


def any_needs(spec: CommandSpec) -> frozenset[Role]:
    """Every role that can run ``spec`` in some form (used by `help`)."""
    roles = set(spec.meta["needs"])
    for _name, by_value in needs_when(spec):
        for extra in by_value.values():
            roles |= extra
    return frozenset(roles)


# What a Previous/Next button may re-run: the listings, which change nothing. A button's
# value comes back from the client, so it is data to check, not a command to trust
# (bot/slack/paging.py): `rotate`, `delete` or `purge` in it is refused, never run.
LISTINGS = frozenset(
    {
        "help",
        "whoami",
        "registries",
        "repos",
        "tags",
        "show",
        "report",
        "request",
        "requests",
        "roles",
        "audit",
        "events",
        "policy",
    }
)


def is_listing(name: str, args: Mapping[str, Any]) -> bool:
    """Whether the parsed command ``name`` ``args`` only lists (a purge only with --dry-run)."""
    return name in LISTINGS or (name == "purge" and args.get("dry_run") is True)
