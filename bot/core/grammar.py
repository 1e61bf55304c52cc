"""Turn the text after `/acr` into a ParsedCommand, for every transport alike.

Slack, the console and notebooks all call :func:`parse`. Arguments are declared per command
(see bot/core/commands.py); this module only knows how to tokenize and match them.

Written by hand rather than with argparse because argparse prints to stderr and may call
sys.exit() on bad input even with exit_on_error=False, and its messages are written for
shells, not for a chat.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.core.errors import UsageError
from bot.core.references import shorten

MAX_LINE = 4000
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Bidi overrides and isolates (U+202A–202E, 2066–2069) make text display in another order
# than it reads (a reason that hides what it says); zero-width characters hide in names.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")

Converter = Callable[[str], Any]


@dataclass(frozen=True)
class Param:
    """A positional argument (``flag`` is None) or an option (``--flag``)."""

    name: str
    metavar: str
    help: str
    convert: Converter = str
    flag: str | None = None
    takes_value: bool = True
    required: bool = True
    repeat: bool = False  # an option given several times collects a list

    @property
    def label(self) -> str:
        """How `help COMMAND` names it: `REPO`, `--top N`, `--dry-run`."""
        if self.flag is None:
            return self.metavar
        return f"{self.flag} {self.metavar}" if self.takes_value else self.flag

    @property
    def usage(self) -> str:
        if self.flag is None:
            return self.metavar if self.required else f"[{self.metavar}]"
        text = f"{self.flag} {self.metavar}" if self.takes_value else self.flag
        if self.repeat:
            text += f" [{self.flag} …]"
        return text if self.required else f"[{text}]"


@dataclass(frozen=True)
class CommandSpec:
    """One command: its words, arguments, help, and the roles that may run it."""

    name: str
    summary: str
    example: str
    params: tuple[Param, ...] = ()
    exclusive: tuple[tuple[str, ...], ...] = ()
    usage_override: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    # A word that, after this command, names something another door does (`audit verify` is
    # `acrbot audit verify`), and the one line that says so instead of "unexpected argument".
    elsewhere: Mapping[str, str] = field(default_factory=dict)

    @property
    def positionals(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.flag is None)

    @property
    def options(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.flag is not None)

    @property
    def usage(self) -> str:
        if self.usage_override:
            return self.usage_override
        return " ".join([self.name, *(p.usage for p in self.params)])


@dataclass(frozen=True)
class ParsedCommand:
    """A command name and its converted arguments (absent options are None or False)."""

    name: str
    args: dict[str, Any]
    text: str


def tokenize(text: str) -> list[str]:
    """Split a chat line into words, honouring quotes; refuse what a person would not type."""
    if len(text) > MAX_LINE:
        raise UsageError(f"command is too long ({len(text)} characters; the limit is {MAX_LINE})")
    cleaned = _CONTROL.sub(" ", text.replace("\t", " ")).translate(_SMART_QUOTES)
    cleaned = _INVISIBLE.sub("", cleaned)
    try:
        return shlex.split(cleaned, posix=True)
    except ValueError:
        raise UsageError("unbalanced quotes: close every \" or ' you open") from None


def parse(text: str, commands: Mapping[str, CommandSpec]) -> ParsedCommand:
    """Parse one command line against ``commands``; raise UsageError with the usage line."""
    words = tokenize(text)
    if not words:
        words = ["help"]
    name, rest = words[0].lower(), words[1:]
    spec = commands.get(name)
    if spec is None:
        raise UsageError(unknown_command_message(words[0], commands))
    args = _bind(spec, rest)
    return ParsedCommand(name=spec.name, args=args, text=text)


def unknown_command_message(word: str, commands: Mapping[str, CommandSpec]) -> str:
    """One line: the unknown word and the closest known command, if any is close."""
    close = difflib.get_close_matches(word.lower(), list(commands), n=1, cutoff=0.7)
    hint = f" Did you mean `{close[0]}`?" if close else " Try `help`."
    return f"unknown command `{shorten(word, 30)}`.{hint}"


def _bind(spec: CommandSpec, words: list[str]) -> dict[str, Any]:
    by_flag = {p.flag: p for p in spec.options}
    args: dict[str, Any] = {
        p.name: ([] if p.repeat else None if p.takes_value else False) for p in spec.params
    }
    positionals = list(spec.positionals)
    seen: set[str] = set()
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--") and len(word) > 2:
            flag, has_inline, inline = word.partition("=")
            param = by_flag.get(flag.lower())
            if param is None:
                raise UsageError(f"unknown option `{shorten(flag, 30)}`", usage=spec.usage)
            if param.name in seen and not param.repeat:
                raise UsageError(f"option `{param.flag}` given twice", usage=spec.usage)
            seen.add(param.name)
            if not param.takes_value:
                if has_inline:
                    raise UsageError(f"option `{param.flag}` takes no value", usage=spec.usage)
                args[param.name] = True
            else:
                if has_inline:
                    value = inline
                elif i + 1 < len(words) and words[i + 1].split("=", 1)[0].lower() not in by_flag:
                    i += 1
                    value = words[i]
                else:
                    # `--reason --manifest`: the next word is another option, not a value
                    raise UsageError(f"option `{param.flag}` needs a value", usage=spec.usage)
                converted = _convert(spec, param, value)
                if param.repeat:
                    args[param.name].append(converted)
                else:
                    args[param.name] = converted
        else:
            if not positionals:
                if word.lower() in spec.elsewhere:
                    raise UsageError(spec.elsewhere[word.lower()], usage=spec.usage)
                raise UsageError(f"unexpected argument `{shorten(word, 30)}`", usage=spec.usage)
            param = positionals.pop(0)
            args[param.name] = _convert(spec, param, word)
            seen.add(param.name)
        i += 1
    for param in spec.params:
        if param.required and param.name not in seen:
            what = param.metavar if param.flag is None else param.flag
            raise UsageError(f"missing {what}", usage=spec.usage)
    for group in spec.exclusive:
        given = [name for name in group if args.get(name)]
        if len(given) > 1:
            flags = " and ".join(f"--{name}" for name in given)
            raise UsageError(f"{flags} cannot be used together", usage=spec.usage)
    return args


def _convert(spec: CommandSpec, param: Param, value: str) -> Any:
    try:
        return param.convert(value)
    except UsageError as exc:
        raise UsageError(str(exc), usage=spec.usage) from None
