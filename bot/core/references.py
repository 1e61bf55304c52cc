"""Image references and the OCI distribution-spec name grammar.

Users paste references from `docker` output, so `repo:tag`, `repo@sha256:…` and a full
`loginserver/repo:tag` are all accepted. Names are validated against the distribution-spec
regular expressions before they reach any registry, which keeps odd input (path traversal,
upper case, control characters) out of file paths and URLs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.core.errors import UsageError

# From the OCI distribution-spec, "Pulling manifests" / "Content discovery".
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
# docker's rule: the first path component is a host if it has a dot or a port, or is localhost.
_HOST_RE = re.compile(r"(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|[A-Za-z0-9.-]+:[0-9]+)")
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference; at least one of ``tag`` and ``digest`` is set."""

    repository: str
    tag: str | None = None
    digest: str | None = None
    login_server: str | None = None

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def validate_repository(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise a UsageError saying why."""
    if len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"repository name is longer than {MAX_NAME_LENGTH} characters")
    if not REPOSITORY_RE.fullmatch(name):
        raise UsageError(
            f"`{shorten(name)}` is not a valid repository name "
            "(lower-case letters, digits, and . _ - / separators)"
        )
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag, else raise a UsageError saying why."""
    if not TAG_RE.fullmatch(tag):
        raise UsageError(
            f"`{shorten(tag)}` is not a valid tag (up to 128 letters, digits, . _ -; "
            "not starting with . or -)"
        )
    return tag


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a valid sha256/sha512 digest, else raise a UsageError."""
    if not DIGEST_RE.fullmatch(digest):
        raise UsageError(f"`{shorten(digest)}` is not a valid digest (expected sha256:<64 hex>)")
    return digest


def parse_image(text: str, *, default_tag: str | None = None) -> ImageRef:
    """Parse `repo:tag`, `repo@digest`, `repo:tag@digest`, each optionally behind a host.

    Without a tag or digest, ``default_tag`` is used, or a UsageError is raised when it is None:
    destructive commands pass None so that nothing is ever deleted by an implied `latest`.
    """
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        validate_digest(digest)
    login_server = None
    first, sep, remainder = rest.partition("/")
    if sep and _HOST_RE.fullmatch(first):
        login_server, rest = first.lower(), remainder
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        validate_tag(tag)
    elif ":" in rest:  # `repo:../../x`: the colon is before a slash, so this is no repository
        validate_tag(rest.split(":", 1)[1])
    validate_repository(rest)
    if tag is None and digest is None:
        if default_tag is None:
            raise UsageError(
                f"`{shorten(text)}` needs a tag or a digest (repo:tag or repo@sha256:…)"
            )
        tag = default_tag
    return ImageRef(repository=rest, tag=tag, digest=digest, login_server=login_server)


def shorten(text: str, limit: int = 60) -> str:
    """Keep echoed user input short and printable in error messages."""
    printable = "".join(ch if ch.isprintable() else "?" for ch in text)
    return printable if len(printable) <= limit else printable[: limit - 1] + "…"
