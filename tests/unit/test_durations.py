"""Every duration a user or an operator types has a documented maximum, and going past it is
one line naming the option or key, never an OverflowError (issue 17.4)."""

import subprocess
import sys
from datetime import timedelta

import pytest

from bot.core.config import from_mapping
from bot.core.errors import ConfigError, UsageError
from bot.core.purge_spec import parse_ago
from tests.support.fixtures import make_config

REG = {"name": "r", "type": "oci-layout", "path": "registry"}
TOO_LONG = "is too long: at most 54750d (150 years)"


@pytest.mark.parametrize(
    "text",
    [
        "99999999999999999999d",
        "1d99999999999999999999999h",
        "99999999999999999999999999999ns",
        "9" * 400 + "ns",  # a float of 400 digits is inf
        "9" * 5000 + "d",  # int() of 4,300+ digits raises ValueError
        "54751d",
        "54750d1ms",
        "1314001h",
    ],
)
def test_an_ago_past_150_years_is_one_line_naming_the_option(text):
    with pytest.raises(UsageError) as caught:
        parse_ago(text)
    shown = text if len(text) <= 30 else text[:29] + "…"
    assert str(caught.value) == f"--ago `{shown}` {TOO_LONG}"


def test_the_longest_ago_is_accepted():
    assert parse_ago("54750d") == timedelta(days=54750)
    assert parse_ago("1314000h") == timedelta(days=54750)


def test_a_reader_with_a_huge_ago_gets_one_line_not_a_traceback(bot, caplog):
    reply = bot.say(
        "carol", "purge --filter 'baseimages/*:.*' --ago 99999999999999999999d --dry-run"
    )
    assert not reply.ok
    first, usage = reply.text.split("\n")  # the refusal, then the command's usage line
    assert first == f"--ago `99999999999999999999d` {TOO_LONG}"
    assert usage.startswith("Usage: purge ")
    assert "Traceback" not in caplog.text and "OverflowError" not in caplog.text
    reply = bot.say(
        "carol", "purge --filter 'baseimages/*:.*' --ago 1d99999999999999999999999h --dry-run"
    )
    assert reply.text.startswith(f"--ago `1d99999999999999999999999h` {TOO_LONG}\n")


TTL_BOUNDS = 'is out of bounds: from 1 minute to 30 days ("1m" to "30d")'


@pytest.mark.parametrize(
    ("ttl", "shown"),
    [
        ("9999999999d", "9999999999d"),
        (99999999999999999999, "99999999999999999999 s"),
        ("36500d", "36500d"),
        ("31d", "31d"),
        ("30d1s", "30d1s"),
        ("99999999999999999999999999d", "99999999999999999999999999d"),
        (59, "59 s"),
        ("0s", "0s"),
        (0, "0 s"),
        (-5, "-5 s"),
    ],
)
def test_an_absurd_ttl_is_refused_naming_the_key(tmp_path, ttl, shown):
    with pytest.raises(ConfigError) as caught:
        from_mapping({"registry": [REG], "approvals": {"ttl": ttl}}, base=tmp_path, environ={})
    assert str(caught.value) == f"approvals.ttl: {shown} {TTL_BOUNDS}"


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [("30d", timedelta(days=30)), (60, timedelta(minutes=1)), ("1m", timedelta(minutes=1))],
)
def test_a_ttl_within_bounds_is_taken(tmp_path, ttl, expected):
    config = from_mapping({"registry": [REG], "approvals": {"ttl": ttl}}, base=tmp_path, environ={})
    assert config.approvals.ttl == expected


@pytest.mark.parametrize("ttl", ['"9999999999d"', "99999999999999999999", "9" * 5000, '"36500d"'])
def test_acrbot_run_with_an_absurd_ttl_says_one_line_and_no_traceback(tmp_path, ttl):
    (tmp_path / "acrbot.toml").write_text(
        f'[approvals]\nttl = {ttl}\n\n[[registry]]\nname = "r"\ntype = "oci-layout"\n'
        'path = "registry"\n'
    )
    config = str(tmp_path / "acrbot.toml")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--config", config, "--user", "carol", "help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "approvals.ttl" in result.stderr or "not valid TOML" in result.stderr


def test_a_retention_ago_past_150_years_names_its_key(tmp_path):
    rule = {
        "name": "r",
        "schedule": "0 6 * * 1",
        "filter": "app:.*",
        "channel": "C012",
        "ago": "99999999999999999999d",
    }
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, retention=[rule])
    assert str(caught.value) == f"retention[0].ago `99999999999999999999d` {TOO_LONG}"


@pytest.mark.parametrize("timeout", [1e308, 0, -1, "10", 301])
def test_a_registry_timeout_is_bounded(tmp_path, timeout):
    reg = {"name": "r", "type": "oci", "url": "http://127.0.0.1:5000", "timeout": timeout}
    with pytest.raises(ConfigError, match=r"^registry\[0\]\.timeout: expected seconds, more"):
        from_mapping({"registry": [reg]}, base=tmp_path, environ={})


@pytest.mark.parametrize("wait", ["1e400", "inf", "nan", "-1", "3601"])
def test_serve_startup_wait_is_bounded(wait, capsys):
    from bot.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["serve", "--startup-wait", wait])
    assert caught.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"argument --startup-wait: expected seconds from 0 to 3600, got {wait!r}\n"
    )
