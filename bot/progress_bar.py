"""A progress bar on stderr for the console and `acrbot run`, fed by the core's progress
reports (a 10,000-tag scan, a purge's items). tqdm draws it; nothing is drawn for work that
finishes before the first report."""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    """A `Progress` callable: ``bar(done, total)``; ``close()`` when the command ends."""

    def __init__(self, *, stream: TextIO | None = None, label: str = "working") -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._label = label
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is None or self._bar.total != total:
            self.close()
            self._bar = tqdm(
                total=total, desc=self._label, file=self._stream, leave=False, mininterval=0.2
            )
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
