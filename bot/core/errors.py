"""The one error tree of acr-chatops.

    BotError                  root: anything the bot raises on purpose
    ├── ConfigError           the configuration file or environment is wrong (names the key)
    └── UserError             a message the person at the keyboard should read, as is
        ├── UsageError        the command was not understood; carries the usage line
        ├── PermissionDenied  the role table says no; says which rule
        ├── NotFound          the registry, repository, tag, request or user does not exist
        ├── Conflict          the world changed or the request is in the wrong state
        ├── Unsupported       the backend cannot do this (and says what to do instead)
        └── RegistryError     the registry is unreachable, refuses the bot, throttles or fails
            ├── OutcomeUnknown    a write (DELETE, PATCH) went unanswered: it may or may not
            │                     have happened; read the registry before doing anything else
            └── LayersGone        a manifest put back was refused because blobs it names are
                                  gone (MANIFEST_BLOB_UNKNOWN: garbage collection ran)

The dispatcher shows a UserError's text to the user. Any other exception is a bug: it is
logged with a reference id and the user gets one short line with that id.
"""

from __future__ import annotations


class BotError(Exception):
    """Root of every error raised on purpose by acr-chatops."""


class ConfigError(BotError):
    """The configuration is wrong; the message names the key and what is expected."""


class UserError(BotError):
    """An error whose message is written for the user and shown verbatim."""


class UsageError(UserError):
    """The command could not be parsed. ``usage`` is the command's usage line, if known."""

    def __init__(self, message: str, *, usage: str | None = None) -> None:
        super().__init__(message)
        self.usage = usage

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\nUsage: {self.usage}" if self.usage else base


class PermissionDenied(UserError):
    """The role table does not allow this action."""


class NotFound(UserError):
    """Something named in the command does not exist."""


class Conflict(UserError):
    """The action clashes with the current state (request decided, tag moved, tag locked)."""


class Unsupported(UserError):
    """The registry backend cannot perform this operation."""


class RegistryError(UserError):
    """The registry could not be used: unreachable, 401/403, 429 or 5xx; says what to do.

    ``status``: the HTTP status the registry answered, when it answered; ``retry_after``: the
    seconds its 429 asked for (a purge pauses every worker that long)."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


class OutcomeUnknown(RegistryError):
    """A non-idempotent call (DELETE, PATCH, regenerate) got no answer: timeout or dropped
    connection. It is never retried blindly; the caller reads the registry to learn what
    happened (a manifest gone after an unanswered DELETE means the DELETE landed).

    ``grace``: seconds after which an unanswered write has either landed or never will (the
    backend knows: about twice its timeout); only then may it be sent again."""

    def __init__(self, message: str, *, grace: float = 45.0) -> None:
        super().__init__(message)
        self.grace = grace


class LayersGone(RegistryError):
    """A manifest could not be put back: the registry no longer has blobs it names
    (distribution's MANIFEST_BLOB_UNKNOWN after garbage collection; ACR after it reclaimed
    the storage). Nothing was written; only a push from the image's build brings it back."""
