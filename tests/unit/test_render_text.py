"""Plain-text replies fit the terminal: `help`'s table at 80 columns, and any table."""

import pytest

from bot.core.render_text import render, table_lines, terminal_width
from bot.core.replies import Reply, Table

HELPISH = Table(
    ("usage", "what it does"),
    (
        ("help [COMMAND]", "list the commands you may run, or explain one"),
        (
            "purge --filter REPO:REGEX [--filter …] [--ago DURATION] [--keep N] [--untagged] "
            "[--dry-run] [--registry R] [--reason TEXT]",
            "remove many tags at once, with acr purge's options: one request, one approval",
        ),
    ),
)


def test_table_lines_unchanged_when_they_fit():
    table = Table(("tag", "size"), (("latest", "1 kB"), ("3.20", "2 kB")))
    assert (
        table_lines(table, width=80)
        == table_lines(table)
        == [
            "  tag     size",
            "  latest  1 kB",
            "  3.20    2 kB",
        ]
    )


def test_table_lines_too_wide_put_the_prose_under_each_row():
    assert table_lines(HELPISH, width=80) == [
        "  help [COMMAND]",
        "      list the commands you may run, or explain one",
        "  purge --filter REPO:REGEX [--filter …] [--ago DURATION] [--keep N]",
        "      [--untagged] [--dry-run] [--registry R] [--reason TEXT]",
        "      remove many tags at once, with acr purge's options: one request, one",
        "      approval",
    ]


def test_table_lines_wrap_the_last_column_beside_when_there_is_room():
    table = Table(
        ("id", "reason"),
        (("#1", "EOL since 2017, replaced by fedora 40 in every team's base images"),),
    )
    assert table_lines(table, width=40) == [
        "  id  reason",
        "  #1  EOL since 2017, replaced by fedora",
        "      40 in every team's base images",
    ]


@pytest.mark.parametrize("width", [50, 60, 80, 100, 120])
def test_table_lines_never_exceed_the_width_where_words_allow(width):
    assert max(len(line) for line in table_lines(HELPISH, width=width)) <= width


def test_render_passes_the_width_to_the_table():
    reply = Reply(text="Commands you can run (`help COMMAND` for details):", table=HELPISH)
    assert render(reply, width=80).splitlines()[1:3] == [
        "  help [COMMAND]",
        "      list the commands you may run, or explain one",
    ]
    assert render(reply).splitlines()[1].startswith("  usage   ")  # no width: as wide as cells


def test_terminal_width_reads_columns_else_80(monkeypatch):
    monkeypatch.setenv("COLUMNS", "132")
    assert terminal_width() == 132
    monkeypatch.delenv("COLUMNS")
    assert terminal_width() == 80  # pytest's stdout is no terminal
