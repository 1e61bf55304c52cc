"""Log lines as text (for a terminal) or as JSON (one object a line, for a log pipeline).

Every line written while a job runs carries the job's id (`job`: the key the acking process
gave it, bot/slack/handoff.py ``Job.key``), so one command can be followed from its ack in the
front, through the worker's run and the command's outcome, to the delivery of its answer:
`jq 'select(.job == "trigger:…")'`. The id travels in a context variable inside a process
and in the job itself between processes; delivery lines take it from the outbox key.

Secrets stay out in both formats: the redaction filter (bot/core/redaction.py) cleans records on
the loggers that log bodies, and both formatters pass their finished output through it again,
which also covers tracebacks and the extra fields of a JSON line.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from bot.core import config, redaction

FORMATS = ("text", "json")
FORMAT_ENV = "ACRBOT_LOG_FORMAT"  # handed down to the worker process
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("acrbot_job", default=None)
# The attributes every LogRecord has; anything else on a record came from `extra=` and goes
# into the JSON object as a field of its own.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Outbox keys that answer a job: `reply:<job>`, `reply:<job>:note2`, `refused:<job>`, …
_ANSWER_KEY = re.compile(r"^(?:reply|refused|home|sorry):(?P<job>.+?)(?::note\d+)?$")


@contextlib.contextmanager
def job_context(key: str) -> Iterator[None]:
    """Tag every line logged in this thread (and its context) with job ``key``."""
    token = _job.set(key)
    try:
        yield
    finally:
        _job.reset(token)


def current_job() -> str | None:
    return _job.get()


def job_of_outbox_key(key: str) -> str | None:
    """The job an outbox item answers (None for cards and announcements of requests)."""
    match = _ANSWER_KEY.match(key)
    return match.group("job") if match else None


class JobFilter(logging.Filter):
    """Put the current job's id on each record (unless the line named one itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job", None) is None:
            record.job = _job.get()
        return True


class TextFormatter(logging.Formatter):
    """The classic line, with ` [job=…]` when there is a job; redacted as a whole."""

    def __init__(self) -> None:
        super().__init__(TEXT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        job = getattr(record, "job", None)
        if job:
            first, newline, rest = line.partition("\n")
            line = f"{first} [job={job}]{newline}{rest}"
        return redaction.REDACTOR.redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, job, pid, any `extra=` fields, and
    `exc` (the traceback as one string) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        redact = redaction.REDACTOR.redact
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
            "pid": record.process,
        }
        job = getattr(record, "job", None)
        if job:
            entry["job"] = job
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key != "job" and not key.startswith("_"):
                entry[key] = _clean(value)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def _clean(value: Any) -> Any:
    """An extra field, redacted if it is text (JSON escaping would hide a secret from a
    redaction of the finished line)."""
    if isinstance(value, str):
        return redaction.REDACTOR.redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redaction.REDACTOR.redact(str(value))


def handler(fmt: str, stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (stderr by default) writing ``fmt`` lines, with the job filter."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    out.addFilter(JobFilter())
    return out


def configure(level: int = logging.WARNING, fmt: str | None = None) -> None:
    """Set up the root logger once per process: ``fmt`` (text when neither given nor handed
    down by the process that started this one), and the secret redaction.

    Like logging.basicConfig, this does nothing to a root logger that already has handlers
    (an embedding application's, or pytest's); it then only installs the redaction.
    """
    if fmt is not None:
        config.hand_down(FORMAT_ENV, fmt)
    fmt = fmt or config.inherited(FORMAT_ENV) or "text"
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler(fmt))
        root.setLevel(level)
    redaction.install()
