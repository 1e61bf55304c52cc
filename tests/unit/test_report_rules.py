"""`[[report]]` rules: read and checked at load, each error naming its key."""

from __future__ import annotations

import pytest

from bot.core.errors import ConfigError
from bot.core.report_rules import ReportRule, parse_reports

REGISTRIES = {"prod"}
BASE = {"name": "weekly", "schedule": "0 7 * * 1", "channel": "C0123456789"}


def test_a_rule_with_its_defaults():
    assert parse_reports([BASE], registries=REGISTRIES) == (
        ReportRule("weekly", "0 7 * * 1", "C0123456789", None, None, "90d", 10.0),
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schedule": "weekly"}, "report[0].schedule: expected a cron schedule"),
        ({"channel": "#general"}, "report[0].channel: expected a Slack channel id"),
        ({"registry": "dev"}, "report[0].registry: no [[registry]] is named 'dev'"),
        ({"repos": "Team/*"}, "report[0].repos: expected a repository glob"),
        ({"stale": "3 months"}, "report[0].stale `3 months` is not a duration"),
        ({"growth": -1}, "report[0].growth: expected a percentage from 0 to 10000"),
        ({"growth": True}, "report[0].growth: expected a percentage"),
        ({"every": "week"}, "report[0].every: unknown key"),
    ],
)
def test_a_bad_rule_names_its_key(change, message):
    with pytest.raises(ConfigError) as caught:
        parse_reports([{**BASE, **change}], registries=REGISTRIES)
    assert str(caught.value).startswith(message)


def test_names_are_unique():
    with pytest.raises(ConfigError, match=r"report\[1\]\.name: expected a unique name"):
        parse_reports([BASE, BASE], registries=REGISTRIES)
