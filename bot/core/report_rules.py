"""`[[report]]` rules: the storage report posted on a schedule, read from the configuration.

    [[report]]
    name = "weekly"
    schedule = "0 7 * * 1"       # cron, UTC: Mondays 07:00
    channel = "C0123456789"
    registry = "prod"            # default: the first [[registry]]
    repos = "team/*"             # default: every repository
    stale = "90d"                # default 90d
    growth = 10                  # percent; more growth since the last report is said

Kept apart from bot/core/config.py (which calls :func:`parse_reports`) so that the rule is
one idea in one module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.core.errors import ConfigError, UsageError

REPORT_KEYS = {"name", "schedule", "channel", "registry", "repos", "stale", "growth"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_GLOB = re.compile(r"[a-z0-9._/*?\-]{1,255}")
MAX_GROWTH = 10_000  # percent


@dataclass(frozen=True)
class ReportRule:
    name: str
    schedule: str  # cron, five fields, UTC
    channel: str
    registry: str | None = None
    repos: str | None = None  # a repository glob
    stale: str = "90d"
    growth: float = 10.0  # percent: growth beyond this since the previous report is said


def parse_reports(tables: Any, *, registries: set[str]) -> tuple[ReportRule, ...]:
    """The `[[report]]` tables, checked: each error names its key and what is expected."""
    if not isinstance(tables, list):
        raise ConfigError("report: expected [[report]] tables")
    if not tables:
        return ()
    from croniter import croniter  # only with [[report]] rules

    from bot.core.purge_spec import parse_ago

    rules, names = [], set()
    for i, table in enumerate(tables):
        key = f"report[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{key}: expected a table")
        for opt in table:
            if opt not in REPORT_KEYS:
                raise ConfigError(
                    f"{key}.{opt}: unknown key (known: {', '.join(sorted(REPORT_KEYS))})"
                )
        name = table.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in names:
            raise ConfigError(f"{key}.name: expected a unique name of letters, digits, . _ -")
        names.add(name)
        schedule = table.get("schedule")
        if not isinstance(schedule, str) or not croniter.is_valid(schedule):
            raise ConfigError(
                f'{key}.schedule: expected a cron schedule such as "0 7 * * 1" (UTC), '
                f"got {schedule!r}"
            )
        channel = table.get("channel")
        if not isinstance(channel, str) or not re.fullmatch(r"[CG][A-Z0-9]{2,}", channel):
            raise ConfigError(f"{key}.channel: expected a Slack channel id such as C0123456789")
        registry = table.get("registry")
        if registry is not None and registry not in registries:
            raise ConfigError(f"{key}.registry: no [[registry]] is named {registry!r}")
        repos = table.get("repos")
        if repos is not None and (not isinstance(repos, str) or not _GLOB.fullmatch(repos)):
            raise ConfigError(f'{key}.repos: expected a repository glob such as "team/*"')
        stale = table.get("stale", "90d")
        try:
            parse_ago(str(stale), option=f"{key}.stale")
        except UsageError as exc:
            raise ConfigError(str(exc)) from None
        growth = table.get("growth", 10)
        if (
            not isinstance(growth, int | float)
            or isinstance(growth, bool)
            or not 0 <= growth <= MAX_GROWTH
        ):
            raise ConfigError(f"{key}.growth: expected a percentage from 0 to {MAX_GROWTH}")
        rules.append(
            ReportRule(
                name=name,
                schedule=schedule,
                channel=channel,
                registry=registry,
                repos=repos,
                stale=str(stale),
                growth=float(growth),
            )
        )
    return tuple(rules)
