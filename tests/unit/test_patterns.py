"""User-supplied regexes run on RE2: no pattern a reader types can hang a worker (issue 17.1)."""

import subprocess
import sys

import pytest

from bot.core.errors import UsageError
from bot.core.patterns import compile_user_regex
from bot.core.purge_spec import parse_filter
from bot.demo import CONFIG
from tests.support.fixtures import make_config

EVIL = "(a+)+$"  # catastrophic on a backtracking engine: minutes over 'a'*40 + '-'
EVIL_TAG = "a" * 40 + "-"

# Runs in a child process, so that the unfixed code (Python's `re`) can be killed by the
# timeout: a backtracking match holds the GIL, so no thread of the test could stop it.
CHILD = """
import sys, time
from bot.app import build_dispatcher
from bot.core.config import load
from bot.core.policy import Grant, Role
from handlers.registries.oci_layout import OciLayoutRegistry

config = load(sys.argv[1])
registry = OciLayoutRegistry("demo", config.database.parent / "registry")
digest = registry.resolve("testimages/nginx", "1.25")
registry.add_tag("testimages/nginx", sys.argv[2], digest)
bot = build_dispatcher(config, registries=[registry])
bot.ctx.roles.grant(Grant("carol", Role.READER), by="t", at=bot.ctx.clock())
started = time.process_time()
reply = bot.handle("purge --filter 'testimages/nginx:" + sys.argv[3] + "' --dry-run", user="carol")
print(round(time.process_time() - started, 3))
print(reply.text)
"""


def test_a_catastrophic_regex_answers_a_reader_within_a_second(tmp_path, registry):
    make_config(tmp_path)  # the database, as `acrbot init` makes it
    (tmp_path / "acrbot.toml").write_text(CONFIG)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "acrbot.toml"), EVIL_TAG, EVIL],
        capture_output=True,
        text=True,
        timeout=30,  # Python's `re` takes minutes here: the unfixed code fails by timing out
        env={"PATH": "/usr/bin:/bin"},
    )
    assert child.returncode == 0, child.stderr
    seconds, text = child.stdout.split("\n", 1)
    assert float(seconds) < 1.0, f"{seconds} s of CPU"
    assert text == (
        "Dry run on demo: 0 tags would be deleted from 0 repositories; nothing was changed.\n"
    )
    assert child.stderr == ""  # RE2 logs nothing of its own


def test_the_match_is_still_a_search_in_the_tag_name():
    assert compile_user_regex(EVIL).search(EVIL_TAG) is None
    assert compile_user_regex(EVIL).search("aaa") is not None
    assert compile_user_regex("^pr-\\d+$").search("pr-42") is not None
    assert compile_user_regex("rc").search("v1-rc2") is not None  # unanchored, as acr purge


@pytest.mark.parametrize(
    "pattern",
    ["(a)\\1", "(?P<x>a)(?P=x)", "v(?=1)", "v(?!1)", "(?<=v)1", "(?<!v)1"],
)
def test_backreferences_and_lookaround_are_refused_by_name(pattern):
    with pytest.raises(UsageError) as caught:
        parse_filter(f"app:{pattern}")
    assert str(caught.value) == (
        f"`{pattern}` uses a backreference or lookaround, which the bot's regex engine "
        "(RE2, linear time: no pattern can hang it) does not run; rewrite it without "
        "`\\1`, `(?P=name)`, `(?=…)`, `(?!…)`, `(?<=…)` or `(?<!…)`"
    )


def test_a_broken_or_huge_regex_is_one_line_naming_re2():
    with pytest.raises(UsageError) as caught:
        parse_filter("app:(")
    assert str(caught.value) == (
        "`(` is not a regular expression the bot runs (missing ): (); "
        "patterns use RE2 syntax (no backreferences or lookaround)"
    )
    with pytest.raises(UsageError, match="is not a regular expression the bot runs"):
        parse_filter("app:((a{1000}){1000}){1000}")


def test_a_retention_rule_with_lookaround_names_its_key(tmp_path):
    from bot.core.errors import ConfigError

    rule = {"name": "r", "schedule": "0 6 * * 1", "filter": "app:v(?!1)", "channel": "C012"}
    with pytest.raises(ConfigError, match=r"^retention\[0\]: `v\(\?!1\)` uses a backreference"):
        make_config(tmp_path, retention=[rule])
