"""Regular expressions that users write, compiled for a linear-time engine.

Anyone who may `purge --dry-run` (a reader) types a regex the bot then runs over every tag of
a repository. On Python's backtracking `re`, `(a+)+$` over `'a'*40 + '-'` runs for minutes and
holds a worker thread for good. RE2 (google-re2, `import re2`) matches in time linear in the
tag's length whatever the pattern, with `re`'s API for what the bot needs (`search`). What it
buys that with: no backreferences (`\\1`, `(?P=name)`) and no lookaround (`(?=…)`, `(?!…)`,
`(?<=…)`, `(?<!…)`); a pattern using them is refused here with one line saying so.

Every user-supplied regex goes through :func:`compile_user_regex`: purge filters typed in a
command, and those of `[[retention]]` rules.
"""

from __future__ import annotations

from typing import Protocol

import re2

from bot.core.errors import UsageError
from bot.core.references import shorten

# RE2's own bound on a compiled program (its default, 8 MiB): `a{1000}{1000}` is refused at
# compile time ("pattern too large") instead of taking the memory.
_MAX_MEM = 8 << 20
_LOOKAROUND = ("(?=", "(?!", "(?<=", "(?<!")


class Matcher(Protocol):
    """What the bot asks of a compiled pattern (`re.Pattern` and RE2's both have it)."""

    def search(self, text: str) -> object | None: ...


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern on stderr via absl
    options.max_mem = _MAX_MEM
    return options


def compile_user_regex(pattern: str) -> Matcher:
    """``pattern`` compiled by RE2; a UsageError that says why when RE2 refuses it."""
    try:
        return re2.compile(pattern, options=_options())
    except re2.error as exc:
        raise UsageError(_refusal(pattern, exc)) from None


def _refusal(pattern: str, exc: Exception) -> str:
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    shown = shorten(pattern, 40)
    if any(mark in pattern for mark in _LOOKAROUND) or _has_backreference(pattern):
        return (
            f"`{shown}` uses a backreference or lookaround, which the bot's regex engine "
            "(RE2, linear time: no pattern can hang it) does not run; rewrite it without "
            "`\\1`, `(?P=name)`, `(?=…)`, `(?!…)`, `(?<=…)` or `(?<!…)`"
        )
    return (
        f"`{shown}` is not a regular expression the bot runs ({shorten(str(detail), 60)}); "
        "patterns use RE2 syntax (no backreferences or lookaround)"
    )


def _has_backreference(pattern: str) -> bool:
    """`\\1`…`\\9` or `(?P=name)` outside a character class (a cheap linear scan)."""
    if "(?P=" in pattern:
        return True
    escaped = False
    for char in pattern:
        if escaped:
            if char in "123456789":
                return True
            escaped = False
        elif char == "\\":
            escaped = True
    return False
