"""Per-repository policy rules (`[[policy]]`): what a deletion needs where it deletes.

`[approvals]` is the default; a `[[policy]]` rule overrides it for the repositories its globs
match, first match wins (per repository). A request whose items fall under several rules (a
purge across `prod/*` and `sandbox/*`) takes the strictest of each setting: the most
approvals, every rule's approvers, the longest reason, the shortest ttl, every freeze, the
smallest max_purge, break-glass only where every rule allows it.

Pure: parsed from TOML data, evaluated against a clock the caller passes. The state machine
(bot/state/requests.py) and the request handlers (handlers/requests/rules_gate.py) ask
:func:`terms_for` at request, at each approval and at execution.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from bot.core.errors import ConfigError, UsageError

ACTIONS = ("delete", "delete_manifest", "purge")
DEFAULT = "default"  # the name `[approvals]` goes by when it applies
RULE_KEYS = {
    "name",
    "repos",
    "registry",
    "approvals",
    "approvers",
    "reason_min",
    "ttl",
    "freeze",
    "max_purge",
    "break_glass",
    "confirm",
    "review_within",
    "break_glass_per_day",
}
FREEZE_KEYS = {"cron", "duration"}
MAX_REASON_MIN = 500  # a reason is at most 500 characters (bot/core/commands.py MAX_REASON)
REVIEW_WITHIN = timedelta(hours=24)
BREAK_GLASS_PER_DAY = 3
_GLOB = re.compile(r"[a-z0-9._/*?\-]{1,255}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")

# parse_duration(value, *, key, minimum, maximum, bounds) from bot/core/config.py, passed in
# by the configuration loader (config imports this module; this module cannot import it back).
DurationParser = Callable[..., timedelta]


@dataclass(frozen=True)
class Freeze:
    """A window that opens at each `cron` time (five fields, UTC) and lasts `duration`."""

    cron: str
    duration: timedelta

    def window_at(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The window ``now`` is in, if any: (start, end), end excluded."""
        from croniter import croniter  # only when a rule has a freeze

        # get_prev excludes its start: one second later makes a window opening now count.
        start = croniter(self.cron, now + timedelta(seconds=1)).get_prev(datetime)
        end = start + self.duration
        return (start, end) if start <= now < end else None

    def __str__(self) -> str:
        return f"`{self.cron}` for {_human(self.duration)}"


@dataclass(frozen=True)
class PolicyRule:
    """One `[[policy]]` table, validated."""

    name: str
    repos: tuple[str, ...]
    registry: str | None = None
    approvals: Mapping[str, int] = field(default_factory=dict)  # as given (see required_for)
    approvers: tuple[str, ...] = ()
    reason_min: int = 0
    ttl: timedelta | None = None
    freeze: tuple[Freeze, ...] = ()
    max_purge: int | None = None
    break_glass: bool = False
    confirm: bool = False  # confirm = "type"
    review_within: timedelta = REVIEW_WITHIN
    break_glass_per_day: int = BREAK_GLASS_PER_DAY

    def matches(self, registry: str, repository: str) -> bool:
        if self.registry is not None and self.registry != registry:
            return False
        return any(fnmatchcase(repository, glob) for glob in self.repos)

    def required_for(self, action: str, default: Mapping[str, int]) -> int:
        """As in `[approvals]`: delete_manifest falls back on delete, purge on
        delete_manifest; a rule that names no count uses `[approvals]`'."""
        if not self.approvals:
            return default[action]
        chain = {"delete": ("delete",), "delete_manifest": ("delete_manifest", "delete")}
        for name in chain.get(action, ("purge", "delete_manifest", "delete")):
            if name in self.approvals:
                return self.approvals[name]
        return default[action]


@dataclass(frozen=True)
class Terms:
    """What one request needs under the rules in force: the strictest of every rule that
    governs one of its repositories (`[approvals]` for a repository no rule matches)."""

    rules: tuple[str, ...]  # rule names, `default` for [approvals]
    required: int
    approvers: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (rule, ids): one approval each
    reason_min: int = 0
    ttl: timedelta = timedelta(hours=24)
    freeze: tuple[tuple[str, Freeze], ...] = ()  # (rule, window)
    max_purge: int | None = None
    break_glass: bool = False
    confirm: bool = False
    review_within: timedelta = REVIEW_WITHIN
    break_glass_per_day: int = BREAK_GLASS_PER_DAY
    forbids_break_glass: tuple[str, ...] = ()  # the rules that do not allow it

    @property
    def rule(self) -> str:
        return ", ".join(self.rules)

    def frozen_until(self, now: datetime) -> tuple[str, datetime] | None:
        """(rule, end) if ``now`` is inside a freeze; windows that overlap or follow each
        other without a gap are one freeze, ending when the last of them does."""
        found: tuple[str, datetime] | None = None
        at = now
        for _ in range(50):  # chained windows; 50 back to back is already a misconfiguration
            covering = [(r, w) for r, f in self.freeze if (w := f.window_at(at)) is not None]
            if not covering:
                break
            rule, (_start, end) = max(covering, key=lambda c: c[1][1])
            if found is not None and end <= found[1]:
                break
            found, at = (rule, end), end
        return found

    def missing_approvers(self, counted: Iterable[Iterable[str]]) -> list[tuple[str, tuple]]:
        """The (rule, approvers) not yet satisfied by ``counted``: each counted approval given
        as the principals of its approver (the user id and their groups)."""
        principals = [set(p) for p in counted]
        return [
            (rule, ids) for rule, ids in self.approvers if not any(set(ids) & p for p in principals)
        ]

    def needs_text(self, *, approvals: int, counted: Iterable[Iterable[str]] = ()) -> str:
        """`needs 2 approvals, one from S0SECURITY or erin — rule prod; 1/2`."""
        text = f"needs {self.required} approval{'' if self.required == 1 else 's'}"
        missing = self.missing_approvers(counted)
        for _rule, ids in self.approvers:
            done = (_rule, ids) not in missing
            text += f", one from {' or '.join(ids)}" + (" (given)" if done else "")
        if self.confirm:
            text += ", typing the repository name"
        if self.reason_min:
            text += f", a reason of {self.reason_min}+ characters"
        text += f" — rule {self.rule}; {approvals}/{self.required}"
        return text


def terms_for(
    rules: Iterable[PolicyRule],
    *,
    default_required: Mapping[str, int],
    default_ttl: timedelta,
    registry: str,
    repositories: Iterable[str],
    action: str,
    items: int = 1,
) -> Terms:
    """The strictest terms of the rules governing ``repositories`` (first match each)."""
    rules = tuple(rules)
    governing: list[PolicyRule | None] = []
    for repository in repositories:
        rule = next((r for r in rules if r.matches(registry, repository)), None)
        if rule not in governing:
            governing.append(rule)
    if not governing:
        governing = [None]
    required = 0
    approvers: list[tuple[str, tuple[str, ...]]] = []
    freeze: list[tuple[str, Freeze]] = []
    reason_min, ttl = 0, None
    max_purge: int | None = None
    confirm = False
    review_within, per_day = REVIEW_WITHIN, BREAK_GLASS_PER_DAY
    forbids: list[str] = []
    for rule in governing:
        if rule is None:
            required = max(required, default_required[action])
            ttl = default_ttl if ttl is None else min(ttl, default_ttl)
            forbids.append(DEFAULT)
            continue
        required = max(required, rule.required_for(action, default_required))
        if rule.approvers:
            approvers.append((rule.name, rule.approvers))
        reason_min = max(reason_min, rule.reason_min)
        mine = default_ttl if rule.ttl is None else rule.ttl
        ttl = mine if ttl is None else min(ttl, mine)
        freeze.extend((rule.name, f) for f in rule.freeze)
        if rule.max_purge is not None:
            max_purge = rule.max_purge if max_purge is None else min(max_purge, rule.max_purge)
        confirm = confirm or rule.confirm
        review_within = min(review_within, rule.review_within)
        per_day = min(per_day, rule.break_glass_per_day)
        if not rule.break_glass:
            forbids.append(rule.name)
    if action == "purge" and max_purge is not None and items > max_purge:
        required += 1
    return Terms(
        rules=tuple(DEFAULT if r is None else r.name for r in governing),
        required=required,
        approvers=tuple(approvers),
        reason_min=reason_min,
        ttl=default_ttl if ttl is None else ttl,
        freeze=tuple(freeze),
        max_purge=max_purge,
        break_glass=not forbids,
        confirm=confirm,
        review_within=review_within,
        break_glass_per_day=per_day,
        forbids_break_glass=tuple(forbids),
    )


# -- parsing ------------------------------------------------------------------------------


def parse_rules(
    raw: Any,
    *,
    registries: Iterable[str],
    groups: Mapping[str, object],
    users: Mapping[str, str],
    duration: DurationParser,
    max_ttl: timedelta,
) -> tuple[PolicyRule, ...]:
    """`[[policy]]` tables → rules; a bad one is a ConfigError naming the rule and the key."""
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError("policy: expected [[policy]] tables")
    known = set(registries)
    rules: list[PolicyRule] = []
    for index, table in enumerate(raw):
        rule = _rule(table, index, known, groups, users, duration, max_ttl)
        if any(r.name == rule.name for r in rules):
            raise ConfigError(f"policy {rule.name}: name: another rule has this name")
        shadow = next((r for r in rules if _covers(r, rule)), None)
        if shadow is not None:
            raise ConfigError(
                f"policy {rule.name}: repos: can never match: rule {shadow.name} above it "
                "matches every repository it names (first match wins; move it up)"
            )
        rules.append(rule)
    return tuple(rules)


def _covers(earlier: PolicyRule, later: PolicyRule) -> bool:
    if earlier.registry is not None and earlier.registry != later.registry:
        return False
    return all("*" in earlier.repos or glob in earlier.repos for glob in later.repos)


def _rule(
    table: dict[str, Any],
    index: int,
    known: set[str],
    groups: Mapping[str, object],
    users: Mapping[str, str],
    duration: DurationParser,
    max_ttl: timedelta,
) -> PolicyRule:
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"policy[{index}].name: expected a rule name (letters, digits, . _ -)")
    where = f"policy {name}"
    for key in table:
        if key not in RULE_KEYS:
            raise ConfigError(
                f"{where}: {key}: unknown key (known: {', '.join(sorted(RULE_KEYS))})"
            )
    repos = table.get("repos")
    if (
        not isinstance(repos, list)
        or not repos
        or not all(isinstance(g, str) and _GLOB.fullmatch(g) for g in repos)
    ):
        bad = next((g for g in repos or [] if not (isinstance(g, str) and _GLOB.fullmatch(g))), "")
        raise ConfigError(
            f'{where}: repos: expected a list of repository globs such as "prod/*"'
            + (f"; {str(bad)[:40]!r} is not one" if bad else "")
        )
    registry = table.get("registry")
    if registry is not None and registry not in known:
        raise ConfigError(
            f"{where}: registry: no registry {str(registry)[:40]!r} is configured, so the rule "
            f"can never match (known: {', '.join(sorted(known))})"
        )
    approvals = table.get("approvals", {})
    if not isinstance(approvals, dict):
        raise ConfigError(f"{where}: approvals: expected a table such as {{ delete = 2 }}")
    for action, count in approvals.items():
        if action not in ACTIONS:
            raise ConfigError(
                f"{where}: approvals.{action}: unknown action (known: {', '.join(ACTIONS)})"
            )
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10:
            raise ConfigError(f"{where}: approvals.{action}: expected a number from 1 to 10")
    return PolicyRule(
        name=name,
        repos=tuple(repos),
        registry=registry,
        approvals=dict(approvals),
        approvers=_approvers(table.get("approvers", []), where, groups, users),
        reason_min=_count(table, "reason_min", where, 0, MAX_REASON_MIN, 0),
        ttl=None
        if "ttl" not in table
        else duration(
            table["ttl"],
            key=f"{where}: ttl",
            minimum=timedelta(minutes=1),
            maximum=max_ttl,
            bounds='from 1 minute to 30 days ("1m" to "30d")',
        ),
        freeze=_freezes(table.get("freeze", []), where, duration),
        max_purge=_count(table, "max_purge", where, 1, 1_000_000, None),
        break_glass=_flag(table, "break_glass", where),
        confirm=_confirm(table.get("confirm"), where),
        review_within=duration(
            table.get("review_within", "24h"),
            key=f"{where}: review_within",
            minimum=timedelta(minutes=10),
            maximum=timedelta(days=7),
            bounds='from 10 minutes to 7 days ("10m" to "7d")',
        ),
        break_glass_per_day=_count(table, "break_glass_per_day", where, 1, 50, BREAK_GLASS_PER_DAY),
    )


def _approvers(
    value: Any, where: str, groups: Mapping[str, object], users: Mapping[str, str]
) -> tuple[str, ...]:
    from bot.core.commands import canonical_id  # commands never imports configuration

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{where}: approvers: expected a list of user or group ids ["S0SEC"]')
    ids = []
    for item in value:
        try:
            ident = canonical_id(item.removeprefix("@"))
        except UsageError:
            raise ConfigError(
                f"{where}: approvers: {item[:40]!r} is neither a user id (U0123ABC, a login "
                "name) nor a group (S0123ABC, a [groups] name)"
            ) from None
        ids.append(users.get(ident, ident))
    return tuple(dict.fromkeys(ids))


def _freezes(value: Any, where: str, duration: DurationParser) -> tuple[Freeze, ...]:
    from croniter import croniter  # only when a rule has a freeze

    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(
            f'{where}: freeze: expected [{{ cron = "0 16 * * FRI", duration = "64h" }}]'
        )
    windows = []
    for i, window in enumerate(value):
        extra = sorted(set(window) - FREEZE_KEYS)
        if extra:
            raise ConfigError(
                f"{where}: freeze[{i}].{extra[0]}: unknown key (known: cron, duration)"
            )
        cron = window.get("cron")
        if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
            raise ConfigError(
                f"{where}: freeze[{i}].cron: expected five cron fields in UTC such as "
                f'"0 16 * * FRI", got {str(cron)[:40]!r}'
            )
        length = duration(
            window.get("duration"),
            key=f"{where}: freeze[{i}].duration",
            minimum=timedelta(minutes=1),
            maximum=timedelta(days=14),
            bounds='from 1 minute to 14 days ("1m" to "14d")',
        )
        windows.append(Freeze(cron=cron, duration=length))
    return tuple(windows)


def _count(
    table: Mapping[str, Any], key: str, where: str, low: int, high: int, default: Any
) -> Any:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where}: {key}: expected a whole number from {low} to {high:,}")
    return value


def _flag(table: Mapping[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key}: expected true or false")
    return value


def _confirm(value: Any, where: str) -> bool:
    if value is None:
        return False
    if value != "type":
        raise ConfigError(f'{where}: confirm: expected "type" (approvers type the repository name)')
    return True


def _human(delta: timedelta) -> str:
    hours, rest = divmod(int(delta.total_seconds()), 3600)
    return f"{hours}h" + (f"{rest // 60}m" if rest else "") if hours else f"{rest // 60}m"
