"""What a notebook gets back from a command: the core's Reply as data, drawn for Jupyter.

A Result changes nothing in the Reply: ``.data`` is exactly what `acrbot run --json` prints
(`"data"`), ``.ok`` and ``.text`` are what every door shows. It adds the views a notebook
wants: ``_repr_html_`` (bot/notebook/html.py) and ``to_df()``.

A secret (`rotate`) is never displayed, in HTML or text: a notebook saves its outputs in the
.ipynb file, where a password shown "once" would stay forever. It is only in ``.secret``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from bot.core.errors import BotError
from bot.core.render_text import render
from bot.core.replies import Paging, Reply, Table
from bot.core.request_types import DeletionRequest
from bot.notebook import html as draw

# Columns of the data that hold times, turned into timezone-aware datetimes by to_df().
TIME_COLUMNS = ("created", "updated", "when", "expires_at", "ts", "newest", "oldest")
# Keys of a listing's data that say where its rows come from: repeated on every row.
CONTEXT_KEYS = ("registry", "repository")


class CommandFailed(BotError):
    """A command was refused or failed, raised only when asked to (``raise_errors``, `--debug`).

    The message is what the user would have read; ``result`` is the whole Result. An internal
    error is raised *from* the original exception, so its traceback is there to read.
    """

    def __init__(self, result: Result) -> None:
        super().__init__(result.text)
        self.result = result


class WaitTimeout(CommandFailed, TimeoutError):
    """`wait` gave up before the request was decided; ``result`` shows it as it stands."""


class Result:
    """One command's answer. Display it, or read ``ok``, ``text``, ``data``, ``to_df()``."""

    def __init__(
        self,
        reply: Reply,
        *,
        command: str,
        user: str,
        exception: BaseException | None = None,
        log: Iterable[str] = (),
    ) -> None:
        self.reply = reply
        self.command = command  # the line that was run
        self.user = user  # the user id it ran as
        self.exception = exception  # the bug behind an internal error, for --debug
        self.log = tuple(log)  # what the bot logged meanwhile (warnings, errors), no tracebacks

    # -- the Reply, as data ------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.reply.ok

    @property
    def text(self) -> str:
        return self.reply.text

    @property
    def data(self) -> Any:
        """What `acrbot run --json` prints under "data": dicts and lists of plain values."""
        return self.reply.data

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        return self.reply.fields

    @property
    def table(self) -> Table | None:
        return self.reply.table

    @property
    def notes(self) -> tuple[str, ...]:
        return self.reply.notes

    @property
    def paging(self) -> Paging | None:
        return self.reply.paging

    @property
    def request(self) -> DeletionRequest | None:
        return self.reply.request

    @property
    def secret(self) -> str | None:
        """A new password from `rotate`: shown nowhere, so it stays out of saved notebooks."""
        return self.reply.secret

    def as_json(self) -> dict[str, Any]:
        return self.reply.as_json()

    # -- views -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        text = render(replace(self.reply, secret=None))
        if self.reply.secret is not None:
            text += "\n  (the new value is in .secret; not displayed, so it stays out of the file)"
        return text

    def _repr_html_(self) -> str:
        return draw.reply_html(self.reply, hidden_secret=self.reply.secret is not None)

    def to_df(self) -> Any:
        """The rows as a pandas DataFrame (pandas is optional: `pip install pandas`).

        A listing gives one row per item with its registry and repository repeated (so pages of
        several repositories concatenate), a purge one row per item it deletes; tags get a
        ``tag`` column (``name`` in ``data``:
        ``row.name`` is the index label in pandas). Anything else is one row. Times are
        timezone-aware datetimes.
        """
        pandas = _pandas()
        if not self.ok:
            raise CommandFailed(self)
        rows, columns = records(self.reply)
        frame = pandas.DataFrame.from_records(rows, columns=columns)
        for column in TIME_COLUMNS:
            if column in frame.columns:
                frame[column] = pandas.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame

    def plot(self) -> Any:
        """`report`'s chart (storage by repository, stacked tagged / stale / untagged), the
        one Slack gets as a PNG, drawn inline; ValueError for a reply without one."""
        if not self.ok or self.reply.chart is None:
            raise ValueError(f"`{self.command}` has no chart to draw (`report` has one)")
        from bot.notebook.chart import Chart

        return Chart(self.reply.chart)


class Results(list[Result]):
    """The results of a `%%acr` cell, one per command line, drawn one after another.

    A failure stops the cell, like a script: ``not_run`` holds the lines after it."""

    not_run: list[str]

    def __init__(self, results: Iterable[Result] = ()) -> None:
        super().__init__(results)
        self.not_run = []

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self) and not self.not_run

    def __repr__(self) -> str:
        text = "\n\n".join(f"> {r.command}\n{r!r}" for r in self)
        return text + (f"\n\n({self._skipped()})" if self.not_run else "")

    def _repr_html_(self) -> str:
        parts = [
            '<div class="acr-command" style="opacity: 0.7; margin-top: 8px">'
            f"<code>&gt; {html.escape(r.command)}</code></div>{r._repr_html_()}"
            for r in self
        ]
        if self.not_run:
            parts.append(f'<p style="opacity: 0.7">{html.escape(self._skipped())}</p>')
        return "".join(parts)

    def _skipped(self) -> str:
        n = len(self.not_run)
        return f"stopped after the failure: {n} line{'' if n == 1 else 's'} not run"


def records(reply: Reply) -> tuple[list[dict[str, Any]], list[str] | None]:
    """The rows behind a reply, for a DataFrame: (list of row dicts, column order or None)."""
    data = reply.data
    if isinstance(data, list):
        return [d if isinstance(d, dict) else {"value": d} for d in data], None
    if isinstance(data, dict):
        context = {k: data[k] for k in CONTEXT_KEYS if isinstance(data.get(k), str)}
        listed = data.get("repositories")
        if isinstance(listed, list) and listed and isinstance(listed[0], dict):  # `report`
            return [{**context, **row} for row in listed], None
        if isinstance(data.get("repositories"), list):
            return [{**context, "repository": name} for name in data["repositories"]], [
                *context,
                "repository",
            ]
        if isinstance(data.get("items"), list):  # a purge: its dry run, or `request ID`
            return [{**context, **item} for item in data["items"]], None
        tags = data.get("tags")
        if "total" in data and isinstance(tags, list):  # a page of `tags` (`show` has no total)
            rows = [{**context, "tag": t["name"], **_without(t, "name")} for t in tags]
            # The times under the name the table gives them: a backend that knows no update
            # times (layouts, distribution) leaves `updated` out rather than a column of NaT.
            times = ["created", "updated"]
            if not any(row.get("updated") is not None for row in rows):
                times.remove("updated")
                rows = [_without(row, "updated") for row in rows]
            columns = [*context, "tag", "digest", "size", *times, "locked"]
            columns += [k for row in rows for k in row if k not in columns]
            return rows, list(dict.fromkeys(columns))
        return [data], None
    if reply.table is not None:
        return [dict(zip(reply.table.columns, row, strict=True)) for row in reply.table.rows], list(
            reply.table.columns
        )
    return [], None


def _without(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "to_df() needs pandas, which is not installed: pip install 'acr-chatops[notebook]' "
            "(or just pandas). .data holds the same rows as plain dicts and lists."
        ) from None
    return pandas
