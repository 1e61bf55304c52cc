"""`[[policy]]` at the other doors: `acrbot run` (a real process on the demo's files) and
notebooks (`Acr`): typed confirmation with --confirm, break-glass and its review, `policy`."""

import subprocess
import sys

from bot.notebook import Acr

RULE = """
[[policy]]
name = "base"
repos = ["baseimages/*"]
approvals = { delete = 1 }
reason_min = 8
confirm = "type"
break_glass = true
"""


def acrbot(*args):
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], text=True, capture_output=True, timeout=60, stdin=None
    )


def test_policy_run_door_confirm_break_glass_and_review(tmp_path):
    demo = tmp_path / "demo"
    subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--dir", str(demo)],
        input="",
        text=True,
        capture_output=True,
        timeout=60,
        check=True,
    )
    config = demo / "acrbot.toml"
    config.write_text(config.read_text() + RULE)

    def run(user, line):
        return acrbot("run", "--config", str(config), "--user", user, line)

    assert run("alice", "delete baseimages/fedora:24 --reason 'EOL since 2017'").returncode == 0
    refused = run("bob", "approve 1")
    assert refused.returncode == 1
    assert "asks approvers to type the repository name: `approve 1 --confirm" in refused.stdout
    done = run("bob", "approve 1 --confirm baseimages/fedora")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Request #1 approved and done")
    glass = run("dave", "delete baseimages/alpine:3.19 --reason 'incident 12' --break-glass")
    assert glass.returncode == 0, glass.stdout + glass.stderr
    assert glass.stdout.startswith("Break-glass: Request #2 done")
    reviewed = run("erin", "review 2 --ok")
    assert reviewed.stdout.startswith("Review of break-glass #2 by dave recorded: ok.")
    listed = run("carol", "policy")
    assert listed.returncode == 0 and "base" in listed.stdout


def test_policy_notebook_door(make_bot):
    bot = make_bot(
        policy=[
            {
                "name": "base",
                "repos": ["baseimages/*"],
                "confirm": "type",
                "break_glass": True,
            }
        ]
    )
    alice, bob, dave = (Acr(user=u, dispatcher=bot.dispatcher) for u in ("alice", "bob", "dave"))
    assert alice.delete("baseimages/fedora:24", reason="EOL").ok
    assert not bob.approve(1).ok
    assert bob.approve(1, confirm="baseimages/fedora").ok
    assert bot.ctx.requests.get(1).state.value == "done"
    glass = dave.delete("baseimages/alpine:3.19", reason="incident", break_glass=True)
    assert glass.ok and glass.text.startswith("Break-glass: Request #2 done")
    assert bob.review(2, concern="no incident that night").ok
    terms = bob.policy("baseimages/alpine")
    assert terms.data["rules"] == ["base"] and terms.data["confirm"] is True
