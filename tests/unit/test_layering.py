"""The core never imports Slack: only bot/slack/ may (STYLE.md, "The house")."""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_slack_package_imports_slack():
    offenders = []
    for path in [*ROOT.glob("bot/*.py"), *ROOT.glob("handlers/*.py")]:
        slack = {
            m
            for m in imported_modules(path)
            if m.split(".")[0] in ("slack_bolt", "slack_sdk", "bot.slack")
        }
        slack = {m for m in slack if not m.startswith("bot.slack")} | {
            m for m in slack if m.startswith("bot.slack") and path.name != "cli.py"
        }
        if slack:
            offenders.append(f"{path.relative_to(ROOT)}: {sorted(slack)}")
    assert offenders == []


def test_handlers_do_not_print():
    for path in ROOT.glob("handlers/*.py"):
        assert "print(" not in path.read_text(), path
