"""End to end through the real command line: the demo, `run`, `roles`, `audit`."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

# Each test runs `acrbot` as a real process or two (~0.6 s of CPU each): left out of
# `make test-fast`, run by `make test`.
pytestmark = pytest.mark.slow

DEMO_SCRIPT = """\
repos --filter 'baseimages/*'
delete baseimages/fedora:24 --reason "EOL since 2017"
approve 1
:as carol
approve 1
:as bob
approve 1
tags baseimages/fedora
:quit
"""

EXPECTED = """\
alice> repos --filter 'baseimages/*'
2 repositories in demo matching `baseimages/*`
  repository
  baseimages/alpine
  baseimages/fedora
alice> delete baseimages/fedora:24 --reason "EOL since 2017"
Request #1 created: waiting for 1 approval from an owner (not you).
"""


def acrbot(*args, stdin=None, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        text=True,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


@pytest.fixture
def demo_dir(tmp_path):
    return tmp_path / "demo"


def test_demo_plays_a_whole_approval_flow(demo_dir):
    result = acrbot("demo", "--dir", str(demo_dir), stdin=DEMO_SCRIPT)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    transcript = result.stdout.split("\n", 3)[3]  # after the three-line banner
    assert transcript.startswith(EXPECTED)
    assert "alice> approve 1\nerror: you cannot approve request #1: you made it" in transcript
    assert "carol> approve 1\nerror: `approve` needs owner on demo/baseimages/fedora" in transcript
    assert (
        "bob> approve 1\nRequest #1 approved and done: deleted 24 from demo/baseimages/fedora."
    ) in transcript
    assert transcript.endswith(
        "bob> tags baseimages/fedora\n1 tag in demo/baseimages/fedora\n"
        + transcript.split("1 tag in demo/baseimages/fedora\n")[1]
    )
    assert "  24 " not in transcript.split("bob> tags baseimages/fedora")[1]


def test_demo_is_idempotent_and_keeps_state(demo_dir):
    acrbot("demo", "--dir", str(demo_dir), stdin="delete baseimages/fedora:24 --reason x\n")
    again = acrbot("demo", "--dir", str(demo_dir), "--user", "bob", stdin="requests\n")
    assert "#1  pending  demo/baseimages/fedora:24  alice" in again.stdout
    fresh = acrbot("demo", "--dir", str(demo_dir), "--fresh", "--user", "bob", stdin="requests\n")
    assert "0 pending requests." in fresh.stdout


@pytest.fixture
def demo_config(demo_dir):
    acrbot("demo", "--dir", str(demo_dir), stdin="")
    return str(demo_dir / "acrbot.toml")


def test_run_prints_json_and_exits_zero(demo_config):
    result = acrbot(
        "run",
        "--config",
        demo_config,
        "--user",
        "carol",
        "--json",
        "tags baseimages/fedora --orderby name",
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["ok"] is True
    assert [t["name"] for t in reply["data"]["tags"]] == ["24", "latest"]


def test_run_accepts_separate_words(demo_config):
    result = acrbot(
        "run",
        "--config",
        demo_config,
        "--user",
        "alice",
        "delete",
        "baseimages/fedora:24",
        "--reason",
        "two words",
    )
    assert result.returncode == 0
    assert "reason     two words" in result.stdout


def test_run_exits_non_zero_on_refusal(demo_config):
    result = acrbot(
        "run", "--config", demo_config, "--user", "carol", "delete baseimages/fedora:24 --reason x"
    )
    assert result.returncode == 1
    assert result.stdout.startswith("error: `delete` needs contributor")
    assert "Traceback" not in result.stdout + result.stderr


def test_operator_bootstraps_the_first_owner(tmp_path):
    (tmp_path / "reg").mkdir()
    config = tmp_path / "acrbot.toml"
    config.write_text('[[registry]]\nname = "r"\ntype = "oci-layout"\npath = "reg"\n')
    missing = acrbot("run", "--config", str(config), "--user", "U1", "audit")
    assert (missing.returncode, missing.stderr) == (
        2,
        f"acrbot: database {tmp_path / 'acrbot.db'}: no such file; check the `database` key, "
        f"or create it with `acrbot init --config {config}`\n",
    )
    assert not (tmp_path / "acrbot.db").exists()  # a mistyped path creates nothing
    created = acrbot("init", "--config", str(config))
    assert created.stdout.startswith(f"Created database {tmp_path / 'acrbot.db'} (schema ")
    assert created.stdout.endswith(
        f"). Next: acrbot roles grant USER owner --config {config}, for the first owner.\n"
    )
    assert acrbot("run", "--config", str(config), "--user", "U1", "audit").returncode == 1
    granted = acrbot("roles", "grant", "U1", "owner", "--config", str(config))
    assert granted.stdout == "Granted U1 owner on */*.\n"
    assert acrbot("run", "--config", str(config), "--user", "U1", "audit").returncode == 0
    listed = acrbot("roles", "list", "--config", str(config))
    assert listed.stdout == "U1\towner\t*\t*\n"
    bad = acrbot("roles", "grant", "U2", "king", "--config", str(config))
    assert (bad.returncode, bad.stderr) == (
        1,
        "acrbot: `king` is not a role (one of: reader, contributor, owner, oncall)\n",
    )


def test_audit_cli_prints_and_verifies(demo_config):
    acrbot("run", "--config", demo_config, "--user", "carol", "repos")
    printed = acrbot("audit", "--config", demo_config, "--json")
    assert json.loads(printed.stdout.splitlines()[-1])["action"] == "repos"
    verified = acrbot("audit", "verify", "--config", demo_config)
    assert (verified.returncode, verified.stdout) == (
        0,
        "audit chain intact: 1 entries verified (not keyed); no archive configured: compared "
        "with nothing outside the database\n",
    )
    db = sqlite3.connect(Path(demo_config).parent / "acrbot.db")
    db.executescript("DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'x';")
    db.commit()
    db.close()
    broken = acrbot("audit", "verify", "--config", demo_config)
    assert broken.returncode == 1
    assert "row 1: content does not match its hash (edited)" in broken.stdout


def test_bad_config_gets_one_line_naming_the_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[[registry]]\nname = "r"\ntype = "oci-layout"\n')
    result = acrbot("console", "--config", str(config), "--user", "u", stdin="")
    assert result.returncode == 2
    assert result.stderr == f"acrbot: {config}: registry[0].path: required for type 'oci-layout'\n"


def test_missing_config_says_how_to_give_one(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = acrbot("run", "--user", "u", "help", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "acrbot: no configuration: pass --config FILE, set ACRBOT_CONFIG, or put acrbot.toml "
        "in this directory (or try `acrbot demo`)\n"
    )


def test_run_after_the_demo_needs_no_config(tmp_path):
    acrbot("demo", stdin="", cwd=tmp_path)
    result = acrbot("run", "--user", "carol", "tags baseimages/fedora", cwd=tmp_path)
    assert (result.returncode, result.stdout.splitlines()[0]) == (
        0,
        "2 tags in demo/baseimages/fedora",
    )


def test_run_draws_no_progress_bar_into_captured_stderr(demo_config):
    """A purge reports progress as it deletes; with stderr captured (not a terminal), none of
    it lands there: stderr stays empty, stdout holds the answer alone."""
    created = acrbot(
        "run",
        "--config",
        demo_config,
        "--user",
        "alice",
        "purge --filter 'testimages/nginx:.*' --ago 0d --reason cleanup",
    )
    assert created.returncode == 0, created.stderr
    approved = acrbot("run", "--config", demo_config, "--user", "bob", "approve 1")
    assert approved.returncode == 0
    assert approved.stderr == ""
    assert approved.stdout.startswith(
        "Purge request #1 approved and done: 2 deleted, 0 skipped, 0 failed.\n"
    )


def test_roles_grant_cli_prints_a_glob_in_every_registry_plainly(demo_config):
    granted = acrbot(
        "roles", "grant", "tina", "contributor", "--repo", "team-a/*", "--config", demo_config
    )
    assert granted.stdout == "Granted tina contributor on team-a/* in every registry.\n"
    again = acrbot(
        "roles", "grant", "tina", "contributor", "--repo", "team-a/*", "--config", demo_config
    )
    assert again.stdout == "tina already has contributor on team-a/* in every registry.\n"
    scoped = acrbot(
        "roles",
        "grant",
        "tina",
        "reader",
        "--registry",
        "demo",
        "--repo",
        "team-b/*",
        "--config",
        demo_config,
    )
    assert scoped.stdout == "Granted tina reader on demo/team-b/*.\n"
    revoked = acrbot(
        "roles", "revoke", "tina", "contributor", "--repo", "team-a/*", "--config", demo_config
    )
    assert revoked.stdout == "Revoked contributor on team-a/* in every registry from tina.\n"


def test_console_audit_verify_points_at_the_command_line(demo_config):
    result = acrbot("console", "--config", demo_config, "--user", "bob", stdin="audit verify\n")
    assert (
        "error: `audit verify` is not a chat command: the hash chain is checked with "
        "`acrbot audit verify` (add --blob for the archive), in a shell where the bot's "
        "database is\nUsage: audit [--last N] [--user USER] [--request ID]\n"
    ) in result.stdout


@pytest.mark.parametrize("columns", [None, "60", "100"])
def test_run_help_fits_the_terminal(demo_config, columns):
    """Piped (no terminal) it fits 80 columns; with $COLUMNS, that width."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    result = acrbot("run", "--config", demo_config, "--user", "bob", "help", env=env)
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= int(columns or 80)
    assert lines[:3] == [
        "Commands you can run (`help COMMAND` for details):",
        "  help [COMMAND]",
        "      list the commands you may run, or explain one",
    ]
