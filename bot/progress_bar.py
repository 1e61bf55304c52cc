"""A progress bar on stderr for the console, `acrbot run` and notebooks, fed by the core's
progress reports (a 10,000-tag scan, a purge's items). tqdm draws it, labelled with what is
being done (`resolving 2,003 tags`); nothing is drawn for work that finishes before the first
report.

A bar is drawn only where someone watches it: a terminal (or a notebook cell, which asks for
it). Redrawn with carriage returns into a file or a pipe (`acrbot run … 2>log`, a script
capturing output), it would only be noise mixed into the output.
"""

from __future__ import annotations

import sys
from typing import TextIO

from bot.core.registry import WORKING, Activity


class ProgressBar:
    """A `Progress` callable: ``bar(done, total, what)``; ``close()`` when the command ends.
    ``draw`` defaults to whether ``stream`` is a terminal."""

    def __init__(self, *, stream: TextIO | None = None, draw: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._draw = _is_terminal(self._stream) if draw is None else draw
        self._bar = None
        self._what: Activity | None = None

    def __call__(self, done: int, total: int, /, what: Activity = WORKING) -> None:
        if not self._draw:
            return
        from tqdm import tqdm

        if self._bar is None or self._bar.total != total or self._what != what:
            self.close()
            self._what = what
            self._bar = tqdm(
                total=total,
                desc=what.describe(total),
                file=self._stream,
                leave=False,
                mininterval=0.2,
            )
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
