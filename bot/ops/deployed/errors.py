"""The one error a source raises: it could not be read, and what would fix it."""

from __future__ import annotations


class SourceUnreadable(Exception):
    """A source could not be read (unreachable, 401/403, timeout, a reply that does not
    parse): deletions on the registries it covers are refused, never read as "nothing runs"."""

    def __init__(self, message: str, *, fix: str) -> None:
        super().__init__(message)
        self.message, self.fix = message, fix
