"""Docs stay in step with the code: every command is in the README and has working help."""

import re
from pathlib import Path

import pytest

from bot.commands import COMMAND_LIST, COMMANDS
from bot.grammar import parse

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make demo", "make test"]


@pytest.mark.parametrize("spec", COMMAND_LIST, ids=lambda s: s.name)
def test_every_command_has_a_readme_row(spec):
    assert re.search(rf"^\| `{spec.name}[ `]", README, re.MULTILINE), spec.name


@pytest.mark.parametrize("spec", COMMAND_LIST, ids=lambda s: s.name)
def test_every_example_parses_to_its_command(spec):
    assert parse(spec.example, COMMANDS).name == spec.name
    assert spec.summary and all(p.help for p in spec.params)


def test_help_command_shows_usage_arguments_and_example(bot):
    reply = bot.say("alice", "help delete")
    fields = dict(reply.fields)
    assert reply.text.startswith("delete: request deletion of a tag")
    assert fields["usage"] == "delete IMAGE --reason TEXT [--manifest] [--registry R]"
    assert fields["example"] == 'delete baseimages/fedora:24 --reason "EOL"'
    assert fields["needs"] == "contributor"
    assert bot.say("alice", "help tgas").text == "unknown command `tgas`. Did you mean `tags`?"
