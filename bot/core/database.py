"""Where the state lives: a SQLite file (the default) or a PostgreSQL server.

`database = "acrbot.db"` is a path, resolved against the configuration's folder, as it always
was. `database = "postgresql://USER@HOST:5432/DB?sslmode=require"` is a server; its password
never sits in the URL (the configuration may be committed): it comes from the environment
variable named by `database_password_env`, or, with `database_auth = "azure"`, is an Entra ID
token that the store asks DefaultAzureCredential for. Pure: the store (bot/state/store.py)
does the connecting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.core.errors import ConfigError

SCHEMES = ("postgresql://", "postgres://")
AUTHS = ("password", "azure")
# The scope of an Entra ID token that Azure Database for PostgreSQL takes as a password.
AZURE_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"


@dataclass(frozen=True)
class ServerDatabase:
    """A PostgreSQL database: its URL (no password in it), and how to authenticate.

    ``str()`` is the URL, so every message that names "database X" names it safely.
    """

    url: str
    auth: str = "password"  # "password" (from password_env, or none: trust/peer/.pgpass) | "azure"
    password: str | None = field(default=None, repr=False)  # a secret: never logged
    password_env: str | None = None

    def __str__(self) -> str:
        return self.url

    @property
    def where(self) -> str:
        """host:port/database, for one-line messages."""
        parts = urlsplit(self.url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"


Target = Path | ServerDatabase


def is_server_url(value: str) -> bool:
    return value.startswith(SCHEMES)


def server_database(
    url: str,
    *,
    password_env: Any = None,
    auth: Any = None,
    environ: Any = None,
) -> ServerDatabase:
    """Check a `database` URL and its authentication keys; ConfigError naming the fix."""
    parts = urlsplit(url)
    if parts.password is not None:
        raise ConfigError(
            "database: the URL holds a password; remove it and name an environment variable "
            'that holds it: database_password_env = "VARIABLE" (or database_auth = "azure")'
        )
    if not parts.hostname or not parts.path.strip("/"):
        raise ConfigError(
            "database: expected postgresql://USER@HOST:5432/DATABASE?sslmode=require "
            f"(host and database name), got {url!r}"
        )
    if auth is None:
        auth = "password"
    if auth not in AUTHS:
        raise ConfigError(f'database_auth: expected "password" or "azure", got {auth!r}')
    password = None
    if password_env is not None:
        if auth == "azure":
            raise ConfigError(
                'database_password_env: not with database_auth = "azure" (the password is an '
                "Entra ID token); remove one of them"
            )
        if not isinstance(password_env, str) or not password_env:
            raise ConfigError("database_password_env: expected the name of a variable")
        if environ is None or password_env not in environ:
            raise ConfigError(
                f"database_password_env: the environment variable {password_env} is not set; "
                "set it to the database user's password"
            )
        password = environ[password_env]
    if auth == "azure" and not parts.username:
        raise ConfigError(
            'database: with database_auth = "azure" the URL names the Entra user or managed '
            "identity: postgresql://NAME@HOST:5432/DATABASE?sslmode=require"
        )
    return ServerDatabase(url=url, auth=auth, password=password, password_env=password_env)


def sqlite_only(key: str, value: Any) -> None:
    """The authentication keys mean nothing for a file: say so instead of ignoring them."""
    if value is not None:
        raise ConfigError(
            f"{key}: only for a PostgreSQL `database` (postgresql://…); remove it for a file"
        )
