"""`[[policy]]` rules, pure: parsing (one line naming the rule and the key), matching (first
match wins), the strictest of several rules, freeze windows."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.core.config import ConfigError, from_mapping
from bot.core.rules import Freeze, terms_for

REGISTRY = {"name": "demo", "type": "oci-layout", "path": "r"}
DEFAULT = {"delete": 1, "delete_manifest": 1, "purge": 1}


def load(*rules, **extra):
    data = {"registry": [REGISTRY], "policy": list(rules), **extra}
    return from_mapping(data, base=Path("/tmp"), environ={})


def rule(**keys):
    return {"name": "prod", "repos": ["prod/*"], **keys}


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        (
            {"repos": ["Prod/[a"]},
            'policy prod: repos: expected a list of repository globs such as "prod/*"; '
            "'Prod/[a' is not one",
        ),
        ({"repos": []}, 'policy prod: repos: expected a list of repository globs such as "prod/*"'),
        (
            {"freeze": [{"cron": "0 16 * FRI", "duration": "64h"}]},
            'policy prod: freeze[0].cron: expected five cron fields in UTC such as "0 16 * * FRI", '
            "got '0 16 * FRI'",
        ),
        (
            {"freeze": [{"cron": "61 16 * * FRI", "duration": "64h"}]},
            'policy prod: freeze[0].cron: expected five cron fields in UTC such as "0 16 * * FRI", '
            "got '61 16 * * FRI'",
        ),
        (
            {"freeze": [{"cron": "0 16 * * FRI", "duration": "forever"}]},
            'policy prod: freeze[0].duration: expected a duration such as "24h", "30m" or 3600, '
            "got 'forever'",
        ),
        (
            {"ttl": "90d"},
            'policy prod: ttl: 90d is out of bounds: from 1 minute to 30 days ("1m" to "30d")',
        ),
        (
            {"approvers": ["#security"]},
            "policy prod: approvers: '#security' is neither a user id (U0123ABC, a login name) "
            "nor a group (S0123ABC, a [groups] name)",
        ),
        ({"approvals": {"delet": 2}}, "policy prod: approvals.delet: unknown action"),
        ({"approvals": {"delete": 0}}, "policy prod: approvals.delete: expected a number from 1"),
        ({"confirm": "click"}, 'policy prod: confirm: expected "type"'),
        ({"break_glass": "yes"}, "policy prod: break_glass: expected true or false"),
        ({"reason_min": -1}, "policy prod: reason_min: expected a whole number from 0 to 500"),
        ({"max_purge": 0}, "policy prod: max_purge: expected a whole number from 1"),
        ({"registry": "nope"}, "policy prod: registry: no registry 'nope' is configured"),
        ({"aprovers": ["x"]}, "policy prod: aprovers: unknown key"),
        ({"name": "has space"}, "policy[0].name: expected a rule name"),
    ],
)
def test_rules_bad_input_is_one_line_naming_rule_and_key(keys, error):
    with pytest.raises(ConfigError) as caught:
        load(rule(**keys))
    assert str(caught.value).startswith(error), str(caught.value)
    assert "\n" not in str(caught.value)


def test_rules_a_rule_that_can_never_match_is_refused():
    with pytest.raises(ConfigError, match="policy late: repos: can never match: rule all above"):
        load({"name": "all", "repos": ["*"]}, {"name": "late", "repos": ["prod/*"]})
    with pytest.raises(ConfigError, match="policy b: name: another rule has this name"):
        load(rule(name="b"), rule(name="b", repos=["other/*"]))
    # a rule narrowed to a registry does not shadow one for every registry
    assert len(load({"name": "all", "repos": ["*"], "registry": "demo"}, rule()).rules) == 2


def test_rules_approvers_resolve_login_aliases_and_groups():
    config = load(
        rule(approvers=["erin", "@security", "S0SEC"]),
        users={"erin": "U0ERIN"},
        groups={"security": ["U0ERIN"]},
    )
    assert config.rules[0].approvers == ("U0ERIN", "security", "S0SEC")


def terms(config, repositories, action="delete", items=1):
    return terms_for(
        config.rules,
        default_required=config.approvals.required,
        default_ttl=config.approvals.ttl,
        registry="demo",
        repositories=repositories,
        action=action,
        items=items,
    )


def test_rules_first_match_wins_and_default_for_the_rest():
    config = load(
        rule(approvals={"delete": 3}),
        {"name": "wide", "repos": ["prod/*", "dev/*"], "approvals": {"delete": 5}},
    )
    assert terms(config, ["prod/app"]).rules == ("prod",)
    assert terms(config, ["prod/app"]).required == 3
    assert terms(config, ["dev/x"]).required == 5
    assert terms(config, ["other/x"]).rules == ("default",)
    assert terms(config, ["other/x"]).required == 1


def test_rules_several_rules_take_the_strictest_of_each_setting():
    config = load(
        rule(
            approvals={"purge": 2},
            approvers=["security"],
            ttl="4h",
            break_glass=True,
            max_purge=10,
            reason_min=5,
        ),
        {
            "name": "dev",
            "repos": ["dev/*"],
            "approvals": {"purge": 3},
            "approvers": ["leads"],
            "ttl": "2d",
            "reason_min": 20,
            "confirm": "type",
            "max_purge": 100,
        },
        groups={"security": ["a"], "leads": ["b"]},
    )
    found = terms(config, ["prod/a", "dev/b"], action="purge", items=50)
    assert found.rules == ("prod", "dev")
    assert found.required == 4  # 3, and one more: 50 items > max_purge 10
    assert found.approvers == (("prod", ("security",)), ("dev", ("leads",)))
    assert found.ttl == timedelta(hours=4)
    assert found.reason_min == 20
    assert found.confirm
    assert not found.break_glass and found.forbids_break_glass == ("dev",)
    assert found.missing_approvers([["x", "security"]]) == [("dev", ("leads",))]
    assert found.missing_approvers([["x", "security"], ["y", "leads"]]) == []


def test_rules_per_action_counts_fall_back_as_approvals_do():
    config = load(rule(approvals={"delete": 2}), approvals={"purge": 4})
    assert terms(config, ["prod/a"], "delete_manifest").required == 2
    assert terms(config, ["prod/a"], "purge").required == 2
    config = load(rule(ttl="1h"), approvals={"purge": 4})
    assert terms(config, ["prod/a"], "purge").required == 4  # no counts: [approvals]'


FRIDAY_NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_freeze_window_opens_at_its_cron_time_and_lasts_its_duration():
    weekend = Freeze("0 16 * * FRI", timedelta(hours=64))
    assert weekend.window_at(FRIDAY_NOON) is None
    opens = FRIDAY_NOON.replace(hour=16)
    assert weekend.window_at(opens) == (opens, opens + timedelta(hours=64))
    assert weekend.window_at(opens + timedelta(hours=63, minutes=59)) is not None
    assert weekend.window_at(opens + timedelta(hours=64)) is None


def test_freeze_windows_back_to_back_are_one_freeze():
    config = load(
        rule(
            freeze=[
                {"cron": "0 16 * * FRI", "duration": "64h"},
                {"cron": "0 8 * * MON", "duration": "4h"},  # Monday morning too
            ]
        )
    )
    found = terms(config, ["prod/a"])
    assert found.frozen_until(FRIDAY_NOON) is None
    rule_name, end = found.frozen_until(FRIDAY_NOON.replace(hour=17))
    assert (rule_name, end) == ("prod", datetime(2026, 11, 30, 12, 0, tzinfo=UTC))


def test_needs_text_names_rule_and_what_is_left():
    config = load(rule(approvals={"delete": 2}, approvers=["S0SECURITY"]))
    found = terms(config, ["prod/a"])
    assert found.needs_text(approvals=1, counted=[["bob"]]) == (
        "needs 2 approvals, one from S0SECURITY — rule prod; 1/2"
    )
    assert found.needs_text(approvals=2, counted=[["bob"], ["erin", "S0SECURITY"]]) == (
        "needs 2 approvals, one from S0SECURITY (given) — rule prod; 2/2"
    )
