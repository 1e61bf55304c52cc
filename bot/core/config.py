"""Read and check the TOML configuration; the only module that reads the environment.

A bad configuration stops the bot with one message naming the key, e.g.
`acrbot.toml: registry[1].path: required for type "oci-layout"`.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.core.database import ServerDatabase, Target, is_server_url, server_database, sqlite_only
from bot.core.errors import ConfigError, UsageError
from bot.core.event_rules import EventsConfig, WatchRule, events_config, watch_rules
from bot.core.patterns import compile_user_regex
from bot.core.references import shorten
from bot.core.report_rules import ReportRule, parse_reports
from bot.core.rules import PolicyRule, parse_rules

CONFIG_ENV = "ACRBOT_CONFIG"
# type -> required keys. Optional keys of `oci`: username, password_env, token_env,
# tag_delete, ca_bundle, timeout.
REGISTRY_TYPES = {
    "oci-layout": ("path",),
    "oci": ("url",),
    "acr": ("login_server", "subscription_id", "resource_group"),
}
# Optional keys of `acr`: resource_name (default: name), cloud (public, china, usgov) or
# arm_endpoint/authority/audience, ca_bundle, key_vault_url + key_vault_secret.
CLOUDS = ("public", "china", "usgov")
ACTIONS = ("delete", "delete_manifest", "purge")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# [users]: a login name (JupyterHub names may be e-mail addresses) → a user id as grants name it.
_LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # what `grant` accepts as a principal
NOTEBOOK_KEYS = ("user",)


@dataclass(frozen=True)
class RegistryConfig:
    """One `[[registry]]` table; ``options`` holds the type's own keys, paths resolved."""

    name: str
    type: str
    login_server: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ApprovalConfig:
    ttl: timedelta = timedelta(hours=24)
    required: Mapping[str, int] = field(default_factory=lambda: {a: 1 for a in ACTIONS})

    def required_for(self, action: str) -> int:
        return self.required.get(action, self.required.get("delete", 1))


@dataclass(frozen=True)
class ArchiveConfig:
    """`[audit.blob]`: where the audit is archived. The connection string is a secret."""

    container: str = "acrbot-audit"
    prefix: str = "audit"
    account_url: str | None = None
    connection_string: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RetentionConfig:
    """`[[retention]]`: a purge the running bot *requests* on a schedule (never runs it):
    owners approve its card like any other request."""

    name: str
    schedule: str  # cron, five fields, UTC
    filters: tuple[str, ...]
    channel: str
    registry: str | None = None
    ago: str | None = None
    keep: int = 0
    untagged: bool = False
    reason: str | None = None

    def command(self) -> str:
        """The `purge` command line this rule runs (parsed like a typed one)."""
        import shlex

        words = ["purge"]
        for f in self.filters:
            words += ["--filter", f]
        if self.ago:
            words += ["--ago", self.ago]
        if self.keep:
            words += ["--keep", str(self.keep)]
        if self.untagged:
            words.append("--untagged")
        if self.registry:
            words += ["--registry", self.registry]
        words += ["--reason", self.reason or f"scheduled retention `{self.name}`"]
        return shlex.join(words)


@dataclass(frozen=True)
class ProtectConfig:
    """`[protect]`: tags never deleted or purged, what a deployed-image source that cannot be
    read does to deletions, and tags written once (locked on push). Patterns are RE2, searched
    in the tag name, compiled at load (a bad one is a config error naming the key)."""

    tags: tuple[str, ...] = ()
    on_source_error: str = "refuse"  # refuse | warn
    immutable: tuple[str, ...] = ()

    def protected(self, tag: str) -> str | None:
        """The first `tags` pattern that ``tag`` matches, or None."""
        return next((p for p in self.tags if compile_user_regex(p).search(tag)), None)

    def is_immutable(self, tag: str) -> bool:
        return any(compile_user_regex(p).search(tag) for p in self.immutable)


PROTECT_KEYS = {"tags", "on_source_error", "immutable"}


@dataclass(frozen=True)
class DeployedConfig:
    """`[[deployed]]`: where images run (a Kubernetes cluster, Container Apps in a
    subscription); deletions and purges spare what a source shows in use (bot/core/deployed.py).
    ``registries`` empty: the source covers every configured registry."""

    name: str
    type: str  # kubernetes | containerapps
    kubeconfig: Path | None = None  # kubernetes; None: the in-cluster service account
    context: str | None = None
    subscription_id: str | None = None  # containerapps
    resource_group: str | None = None
    registries: tuple[str, ...] = ()
    cache_seconds: float = 10.0  # listings (`where`, dry runs) only; never an execution
    timeout: float = 10.0
    lock_schedule: str | None = None  # cron (UTC): `lock --deployed` on the covered ACRs

    def covers(self, registry: str) -> bool:
        return not self.registries or registry in self.registries


@dataclass(frozen=True)
class Config:
    database: Path | ServerDatabase  # a SQLite file, or a PostgreSQL server (bot/core/database.py)
    registries: tuple[RegistryConfig, ...]
    approvals: ApprovalConfig = ApprovalConfig()
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    archive: ArchiveConfig | None = None
    source: str = "<defaults>"
    requests_channel: str | None = None  # [slack] requests_channel: cards of non-Slack requests
    retention: tuple[RetentionConfig, ...] = ()
    reports: tuple[ReportRule, ...] = ()  # [[report]] (bot/core/report_rules.py)
    audit_key: str | None = field(default=None, repr=False)  # a secret: never logged
    audit_keyed_from: int = 1  # [audit] keyed_from: the first audit row the key applies to
    users: Mapping[str, str] = field(default_factory=dict)  # [users]: login name -> user id
    notebook_user: str | None = None  # [notebook] user: who a notebook acts as by default
    protect: ProtectConfig = ProtectConfig()
    security_channel: str | None = None  # [slack] security_channel: break-glass, drift alerts
    deployed: tuple[DeployedConfig, ...] = ()  # [[deployed]]: where images run
    events: EventsConfig | None = None  # [events]: the registry-event receiver (issue 24)
    watches: tuple[WatchRule, ...] = ()  # [[watch]]: registry events posted to channels
    rules: tuple[PolicyRule, ...] = ()  # [[policy]]: per-repository rules (bot/core/rules.py)
    undo_window: timedelta = timedelta(days=7)  # [undo] window: how long deletions can be undone

    @property
    def default_registry(self) -> RegistryConfig:
        return self.registries[0]

    def user_id(self, name: str) -> str:
        """The user id the role table knows ``name`` by: its `[users]` alias, else ``name``.

        The console, `acrbot run` and notebooks are told a login name (alice), while grants
        made in Slack name Slack ids (U0123ALICE); this is where the two meet, so alice has
        exactly her Slack roles at every door. Slack itself sends ids and never comes here.
        """
        return self.users.get(name, name)


# `[approvals] ttl`: how long a request may wait for its approvals. A request pins digests and
# is re-checked at execution, but one approvable for years is a standing order nobody
# remembers: a month at most; a minute at least (shorter expires before anyone can look).
MIN_TTL = timedelta(minutes=1)
MAX_TTL = timedelta(days=30)
# `[[registry]] timeout` (oci): seconds one HTTP request may take; bounds write_grace too.
MAX_TIMEOUT = 300.0


def parse_duration(
    value: object,
    *,
    key: str,
    minimum: timedelta = timedelta(seconds=1),
    maximum: timedelta,
    bounds: str,
) -> timedelta:
    """`90`, `"90s"`, `"30m"`, `"24h"`, `"1d12h"` → timedelta, from ``minimum`` to ``maximum``
    (``bounds`` says so in words for the error). The number is compared before a timedelta is
    made: `99999999999999999999` is one line naming ``key``, never an OverflowError."""
    seconds: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match and any(match.groups()):
            # int() of 4,300+ digits raises ValueError; 12 digits are past every bound
            d, h, m, s = (_bounded_int(g) for g in match.groups())
            seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds is None:
        raise ConfigError(
            f'{key}: expected a duration such as "24h", "30m" or 3600, '
            f"got {shorten(repr(value), 30)}"
        )
    if not minimum.total_seconds() <= seconds <= maximum.total_seconds():
        shown = value if isinstance(value, str) else f"{value} s"
        raise ConfigError(f"{key}: {shorten(shown, 30)} is out of bounds: {bounds}")
    return timedelta(seconds=seconds)


def _bounded_int(digits: str | None) -> int:
    if not digits:
        return 0
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 12 else 10**12


def parse_rate(value: object, *, key: str) -> float:
    """`"500/min"`, `"8/s"` or a number (per second) → writes per second."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|min|m|h)\s*", value)
        if match and float(match.group(1)) > 0:
            per = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}[match.group(2)]
            return float(match.group(1)) / per
    raise ConfigError(f'{key}: expected a rate such as "500/min" or "8/s", got {value!r}')


# Looked for, in order, when neither --config nor $ACRBOT_CONFIG is given: a config in the
# working directory, then the one `acrbot demo` writes, so `acrbot run` works after the demo.
FALLBACK_PATHS = (Path("acrbot.toml"), Path(".acrbot-demo") / "acrbot.toml")


@dataclass(frozen=True)
class SlackSettings:
    """Tokens and endpoints for `acrbot serve`, from the environment. Secrets: never log."""

    bot_token: str = field(repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    app_token: str | None = field(default=None, repr=False)
    api_url: str = "https://slack.com/api/"

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None


def slack_settings(environ: Mapping[str, str] | None = None) -> SlackSettings:
    """Read SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_APP_TOKEN and SLACK_API_URL."""
    env = os.environ if environ is None else environ
    bot_token = env.get("SLACK_BOT_TOKEN")
    if not bot_token:
        raise ConfigError("SLACK_BOT_TOKEN: not set (the bot token, xoxb-…)")
    app_token = env.get("SLACK_APP_TOKEN") or None
    signing_secret = env.get("SLACK_SIGNING_SECRET") or None
    if app_token is None and signing_secret is None:
        raise ConfigError(
            "SLACK_SIGNING_SECRET: not set; HTTP mode needs it (or set SLACK_APP_TOKEN for "
            "Socket Mode)"
        )
    api_url = env.get("SLACK_API_URL") or "https://slack.com/api/"
    _check_slack_api_url(api_url)
    if not api_url.endswith("/"):
        api_url += "/"
    return SlackSettings(
        bot_token=bot_token, signing_secret=signing_secret, app_token=app_token, api_url=api_url
    )


def _check_slack_api_url(url: str) -> None:
    """SLACK_API_URL receives the bot token with every call: https, or http:// only to
    loopback (a local proxy, the tests' fake), like a registry's credentials; never with a
    user name or password in it."""
    from urllib.parse import urlsplit

    from bot.core.redaction import has_userinfo, redact_urls

    if has_userinfo(url):
        raise ConfigError(
            f"SLACK_API_URL: {redact_urls(url)} has a user name or password in it; give the "
            "URL without them"
        )
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        parts, host = None, ""
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"SLACK_API_URL: expected an https:// URL, got {url!r}")
    if parts.scheme == "http" and host not in LOOPBACK:
        raise ConfigError(
            f"SLACK_API_URL: {url} is plain HTTP to another host, and the bot token would "
            "cross the network in clear: use https://, or http:// only to loopback "
            "(localhost, 127.0.0.1, ::1)"
        )


def config_path_from_env() -> str | None:
    return os.environ.get(CONFIG_ENV) or None


def find_config() -> Path | None:
    named = config_path_from_env()
    if named:
        return Path(named)
    return next((p for p in FALLBACK_PATHS if p.is_file()), None)


def config_arg(source: str) -> str:
    """`--config acrbot.toml`: how to name, in a fix a message suggests, the configuration
    that was read (quoted for a shell); `--config FILE` when none was (a mapping, in tests)."""
    if source.startswith("<"):
        return "--config FILE"
    return f"--config {shlex.quote(source)}"


def default_user() -> str | None:
    """The acting user of the console and notebooks when none is given: $ACRBOT_USER, else
    the login name ($USER). A `[users]` alias maps either to the id grants name."""
    return os.environ.get("ACRBOT_USER") or os.environ.get("USER") or None


def load(path: str | Path | None = None) -> Config:
    """Load ``path`` (or $ACRBOT_CONFIG, or a fallback); raise ConfigError naming the bad key."""
    path = path or find_config()
    if path is None:
        raise ConfigError(
            f"no configuration: pass --config FILE, set {CONFIG_ENV}, or put acrbot.toml in "
            "this directory (or try `acrbot demo`)"
        )
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except ValueError:  # tomllib's int() of a number of 4,300+ digits
        raise ConfigError(f"{path}: not valid TOML (a number with thousands of digits)") from None
    try:
        return from_mapping(data, base=path.parent, source=str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def from_mapping(
    data: Mapping[str, Any],
    *,
    base: Path,
    source: str = "<mapping>",
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build a Config from parsed TOML; relative paths are resolved against ``base``."""
    environ = os.environ if environ is None else environ
    known = {
        "database",
        "database_password_env",
        "database_auth",
        "approvals",
        "registry",
        "groups",
        "audit",
        "slack",
        "retention",
        "report",
        "users",
        "notebook",
        "plain_http_hosts",
        "protect",
        "deployed",
        "events",
        "watch",
        "policy",
        "undo",
    }
    for key in data:
        if key not in known:
            raise ConfigError(unknown_key(key, key, known))
    database = _database(data, base=base, environ=environ)
    plain_http = data.get("plain_http_hosts", [])
    if not isinstance(plain_http, list) or not all(isinstance(h, str) for h in plain_http):
        raise ConfigError('plain_http_hosts: expected a list of "host:port" strings')
    registries = _registries(
        data.get("registry"),
        base=base,
        environ=environ,
        plain_http_hosts={h.lower() for h in plain_http},
    )
    groups = _groups(data.get("groups", {}))
    users = _users(data.get("users", {}), groups=groups)
    return Config(
        database=database,
        registries=registries,
        approvals=_approvals(data.get("approvals", {})),
        groups=groups,
        archive=_archive(data.get("audit", {}), environ=environ),
        audit_key=_audit_key(data.get("audit", {}), environ=environ),
        audit_keyed_from=_audit_keyed_from(data.get("audit", {})),
        source=source,
        requests_channel=_slack(data.get("slack", {}), "requests_channel"),
        security_channel=_slack(data.get("slack", {}), "security_channel"),
        protect=_protect(data.get("protect", {})),
        deployed=_deployed(data.get("deployed", []), base=base, registries=registries),
        events=events_config(data.get("events"), environ=environ, duration=parse_duration),
        watches=watch_rules(data.get("watch", []), registries=tuple(r.name for r in registries)),
        undo_window=_undo_window(data.get("undo", {})),
        retention=_retention(data.get("retention", []), registries=registries),
        reports=parse_reports(data.get("report", []), registries={r.name for r in registries}),
        users=users,
        notebook_user=_notebook(data.get("notebook", {}), users=users, groups=groups),
        rules=parse_rules(
            data.get("policy", []),
            registries=[r.name for r in registries],
            groups=groups,
            users=users,
            duration=parse_duration,
            max_ttl=MAX_TTL,
        ),
    )


def _database(data: Mapping[str, Any], *, base: Path, environ: Mapping[str, str]) -> Target:
    """`database` (a path or a postgresql:// URL) with `database_password_env`/`database_auth`."""
    database = data.get("database", "acrbot.db")
    if not isinstance(database, str) or not database:
        raise ConfigError("database: expected a file path or a postgresql:// URL")
    password_env, auth = data.get("database_password_env"), data.get("database_auth")
    if is_server_url(database):
        return server_database(database, password_env=password_env, auth=auth, environ=environ)
    sqlite_only("database_password_env", password_env)
    sqlite_only("database_auth", auth)
    return (base / database).resolve()


# Keys each [[registry]] type accepts (besides name, type, login_server and the purge keys).
REGISTRY_KEYS = {
    "oci-layout": {"path"},
    "oci": {
        "url",
        "username",
        "password_env",
        "token_env",
        "token_realms",
        "tag_delete",
        "ca_bundle",
        "timeout",
        "concurrency",
    },
    "acr": {
        "subscription_id",
        "resource_group",
        "resource_name",
        "cloud",
        "arm_endpoint",
        "authority",
        "audience",
        "ca_bundle",
        "key_vault_url",
        "key_vault_secret",
        "read_rate",
    },
}
COMMON_REGISTRY_KEYS = {"name", "type", "login_server", "purge_concurrency", "write_rate"}
# A secret written in the file would sit in a repository, a ConfigMap, a backup: refused.
SECRET_KEYS = {"password", "token", "secret", "client_secret", "connection_string", "key"}
LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


def unknown_key(key: str, name: str, known: set[str]) -> str:
    """`registry[0].tag_delet: unknown key; did you mean tag_delete? (known: …)`."""
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{key}: unknown key{hint} (known: {', '.join(sorted(known))})"


def _registries(
    tables: Any, *, base: Path, environ: Mapping[str, str], plain_http_hosts: set[str] = frozenset()
) -> tuple[RegistryConfig, ...]:
    if not isinstance(tables, list) or not tables:
        raise ConfigError("registry: at least one [[registry]] table is required")
    seen: set[str] = set()
    result = []
    for i, table in enumerate(tables):
        key = f"registry[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{key}: expected a table")
        name, kind = table.get("name"), table.get("type")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"{key}.name: expected a name of letters, digits, . _ -")
        if name in seen:
            raise ConfigError(f"{key}.name: {name!r} is used twice")
        seen.add(name)
        if kind not in REGISTRY_TYPES:
            raise ConfigError(
                f"{key}.type: expected one of {', '.join(REGISTRY_TYPES)}, got {kind!r}"
            )
        options: dict[str, Any] = {}
        secrets: dict[str, str] = {}
        allowed = REGISTRY_KEYS[kind] | COMMON_REGISTRY_KEYS
        for opt in table:
            if opt in SECRET_KEYS:
                raise ConfigError(
                    f"{key}.{opt}: secrets are never written in the file; put it in an "
                    f'environment variable and name it: {opt}_env = "VARIABLE"'
                )
            if opt not in allowed:
                raise ConfigError(unknown_key(f"{key}.{opt}", opt, allowed))
        for required in REGISTRY_TYPES[kind]:
            if not isinstance(table.get(required), str) or not table[required]:
                raise ConfigError(f"{key}.{required}: required for type {kind!r}")
        for opt, value in table.items():
            if opt in ("name", "type", "login_server"):
                continue
            if opt in URL_KEYS:
                _refuse_url_credentials(f"{key}.{opt}", value)
            if opt.endswith("_env"):
                if not isinstance(value, str) or value not in environ:
                    raise ConfigError(f"{key}.{opt}: environment variable {value!r} is not set")
                secrets[opt.removesuffix("_env")] = environ[value]
            elif opt in ("path", "ca_bundle"):
                options[opt] = (base / str(value)).resolve()
            elif opt == "url" and not str(value).startswith(("http://", "https://")):
                raise ConfigError(f"{key}.url: expected an http:// or https:// URL")
            elif opt == "token_realms":
                if not isinstance(value, list) or not all(
                    isinstance(v, str) and v.startswith("https://") for v in value
                ):
                    raise ConfigError(
                        f"{key}.token_realms: expected a list of https:// URLs (the token "
                        'servers that may receive the credentials, e.g. ["https://auth.docker.io"])'
                    )
                for n, realm in enumerate(value):
                    _refuse_url_credentials(f"{key}.token_realms[{n}]", realm)
                options[opt] = tuple(value)
            elif opt == "purge_concurrency":
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 32:
                    raise ConfigError(f"{key}.purge_concurrency: expected a number from 1 to 32")
                options[opt] = value
            elif opt in ("write_rate", "read_rate"):
                options[opt] = parse_rate(value, key=f"{key}.{opt}")
            elif opt == "timeout":
                if (
                    not isinstance(value, int | float)
                    or isinstance(value, bool)
                    or not 0 < value <= MAX_TIMEOUT
                ):
                    raise ConfigError(
                        f"{key}.timeout: expected seconds, more than 0 and at most "
                        f"{MAX_TIMEOUT:g}, got {shorten(repr(value), 30)}"
                    )
                options[opt] = float(value)
            else:
                options[opt] = value
        url = str(table.get("url", ""))
        if url.startswith("http://") and (secrets or table.get("username")):
            host = httpx_host(url)
            if host not in LOOPBACK and host not in plain_http_hosts:
                raise ConfigError(
                    f"{key}.url: {url} is plain HTTP to another host, and the credentials "
                    "would cross the network in clear: use https://, or list the host in "
                    f'plain_http_hosts = ["{host}"] if that network is trusted'
                )
        login = table.get("login_server")
        if login is not None and (not isinstance(login, str) or "://" in login):
            raise ConfigError(
                f"{key}.login_server: expected a host name such as "
                "myreg.azurecr.io (no scheme: ACR is always https)"
            )
        if kind == "acr" and table.get("cloud", "public") not in CLOUDS:
            raise ConfigError(f"{key}.cloud: expected one of {', '.join(CLOUDS)}")
        if kind == "acr" and ("key_vault_url" in table) != ("key_vault_secret" in table):
            raise ConfigError(
                f"{key}.key_vault_secret: key_vault_url and key_vault_secret go together"
            )
        result.append(
            RegistryConfig(
                name=name,
                type=kind,
                login_server=login and login.lower(),
                options=options,
                secrets=secrets,
            )
        )
    return tuple(result)


URL_KEYS = {"url", "arm_endpoint", "authority", "key_vault_url"}


def _refuse_url_credentials(key: str, value: object) -> None:
    """A URL with a user name or password in it (`https://robot:pw@host`) puts a secret in the
    file and in every message that prints the URL: refused, like `password = "…"`, with the
    `_env` advice. The message shows the URL without them."""
    from bot.core.redaction import has_userinfo, redact_urls

    if isinstance(value, str) and has_userinfo(value):
        raise ConfigError(
            f"{key}: {redact_urls(value)} has a user name or password in it; secrets are "
            'never written in the file: give the URL without them, username = "…" and '
            'password_env = "VARIABLE" (or token_env) naming the environment variable'
        )


def httpx_host(url: str) -> str:
    """`http://Harbor.lan:5000/x` → `harbor.lan:5000` (port kept: a listed host names it);
    loopback addresses without their port."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host in LOOPBACK:
        return host
    return f"{host}:{parts.port}" if parts.port else host


def _approvals(table: Any) -> ApprovalConfig:
    if not isinstance(table, dict):
        raise ConfigError("approvals: expected a table")
    ttl = parse_duration(
        table.get("ttl", "24h"),
        key="approvals.ttl",
        minimum=MIN_TTL,
        maximum=MAX_TTL,
        bounds='from 1 minute to 30 days ("1m" to "30d")',
    )
    required = {a: 1 for a in ACTIONS}
    for key, value in table.items():
        if key == "ttl":
            continue
        if key not in ACTIONS:
            raise ConfigError(f"approvals.{key}: unknown action (known: {', '.join(ACTIONS)})")
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10:
            raise ConfigError(f"approvals.{key}: expected a number of approvals from 1 to 10")
        required[key] = value
    if "delete_manifest" not in table:
        required["delete_manifest"] = required["delete"]
    if "purge" not in table:
        required["purge"] = required["delete_manifest"]
    return ApprovalConfig(ttl=ttl, required=required)


# `[undo] window`: how long the snapshot taken before each deletion is kept (then `undo`
# refuses, saying when it expired). A minute at least; 90 days at most: a snapshot is the
# exact bytes of every manifest that went, and a year of purges adds up.
MIN_UNDO_WINDOW = timedelta(minutes=1)
MAX_UNDO_WINDOW = timedelta(days=90)


def _undo_window(table: Any) -> timedelta:
    if not isinstance(table, dict):
        raise ConfigError("undo: expected a table")
    for key in table:
        if key != "window":
            raise ConfigError(unknown_key(f"undo.{key}", key, {"window"}))
    return parse_duration(
        table.get("window", "7d"),
        key="undo.window",
        minimum=MIN_UNDO_WINDOW,
        maximum=MAX_UNDO_WINDOW,
        bounds='from 1 minute to 90 days ("1m" to "90d")',
    )


def _audit_key(table: Any, *, environ: Mapping[str, str]) -> str | None:
    """`[audit] key_env`: the environment variable holding the key of the audit chain."""
    if not isinstance(table, dict):
        return None
    name = table.get("key_env")
    if name is None:
        return None
    if not isinstance(name, str) or not environ.get(name):
        raise ConfigError(f"audit.key_env: environment variable {name!r} is not set")
    if len(environ[name]) < 16:
        raise ConfigError(f"audit.key_env: the key in {name} is too short (16 characters or more)")
    return environ[name]


def _audit_keyed_from(table: Any) -> int:
    """`[audit] keyed_from`: the first row the key applies to, for a chain begun before the
    key was set (`acrbot audit verify` names it). Configuration, never the database: whoever
    can write the database must not be able to move where the key starts."""
    if not isinstance(table, dict) or "keyed_from" not in table:
        return 1
    value = table["keyed_from"]
    if "key_env" not in table:
        raise ConfigError("audit.keyed_from: only with key_env (the key it applies to)")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            "audit.keyed_from: expected the id of the first keyed audit row (1 or more), "
            "as `acrbot audit verify` names it"
        )
    return value


AUDIT_KEYS = {"blob", "key_env", "keyed_from"}


def _archive(table: Any, *, environ: Mapping[str, str]) -> ArchiveConfig | None:
    if not isinstance(table, dict) or set(table) - AUDIT_KEYS:
        extra = sorted(set(table) - AUDIT_KEYS) if isinstance(table, dict) else []
        raise ConfigError(
            unknown_key(f"audit.{extra[0]}", extra[0], AUDIT_KEYS)
            if extra
            else "audit: expected a table"
        )
    blob = table.get("blob")
    if blob is None:
        return None
    if not isinstance(blob, dict):
        raise ConfigError("audit.blob: expected a table")
    known = {"account_url", "connection_string_env", "container", "prefix"}
    for key in blob:
        if key not in known:
            raise ConfigError(f"audit.blob.{key}: unknown key (known: {', '.join(sorted(known))})")
    connection = None
    if "connection_string_env" in blob:
        name = blob["connection_string_env"]
        if not isinstance(name, str) or not environ.get(name):
            raise ConfigError(
                f"audit.blob.connection_string_env: environment variable {name!r} is not set"
            )
        connection = environ[name]
    account_url = blob.get("account_url")
    _refuse_url_credentials("audit.blob.account_url", account_url)
    if isinstance(account_url, str) and "sig=" in account_url:
        raise ConfigError(
            "audit.blob.account_url: has a SAS token (sig=…) in it; secrets are never written "
            "in the file: put it in a connection string and name its variable: "
            'connection_string_env = "VARIABLE"'
        )
    if connection is None and not (
        isinstance(account_url, str) and account_url.startswith("https://")
    ):
        raise ConfigError(
            "audit.blob: give account_url (https://…, signed in with "
            "DefaultAzureCredential) or connection_string_env"
        )
    container = blob.get("container", "acrbot-audit")
    if not isinstance(container, str) or not re.fullmatch(
        r"[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]", container
    ):
        raise ConfigError("audit.blob.container: expected a container name (3-63 of a-z 0-9 -)")
    prefix = blob.get("prefix", "audit")
    if not isinstance(prefix, str) or not prefix.strip("/"):
        raise ConfigError('audit.blob.prefix: expected a path such as "audit"')
    return ArchiveConfig(
        container=container,
        prefix=prefix.strip("/"),
        account_url=account_url,
        connection_string=connection,
    )


SLACK_KEYS = ("requests_channel", "security_channel")


def _slack(table: Any, key: str) -> str | None:
    """`[slack]`: ``requests_channel``, where requests made outside Slack (console, notebook)
    get their card; ``security_channel``, where break-glass actions and drift alerts go."""
    if not isinstance(table, dict):
        raise ConfigError("slack: expected a table")
    for name in table:
        if name not in SLACK_KEYS:
            raise ConfigError(f"slack.{name}: unknown key (known: {', '.join(SLACK_KEYS)})")
    channel = table.get(key)
    if channel is not None and (
        not isinstance(channel, str) or not re.fullmatch(r"[CG][A-Z0-9]{2,}", channel)
    ):
        raise ConfigError(
            f"slack.{key}: expected a Slack channel id such as C0123456789 "
            "(channel details → About; a name like #platform is not an id)"
        )
    return channel


def _protect(table: Any) -> ProtectConfig:
    if not isinstance(table, dict):
        raise ConfigError("protect: expected a table")
    for key in table:
        if key not in PROTECT_KEYS:
            raise ConfigError(unknown_key(f"protect.{key}", key, PROTECT_KEYS))
    patterns: dict[str, tuple[str, ...]] = {}
    for key in ("tags", "immutable"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise ConfigError(f'protect.{key}: expected a list of regexes, e.g. ["^latest$"]')
        for pattern in value:
            try:
                compile_user_regex(pattern)
            except UsageError as exc:
                raise ConfigError(f"protect.{key}: {exc}") from None
        patterns[key] = tuple(value)
    on_error = table.get("on_source_error", "refuse")
    if on_error not in ("refuse", "warn"):
        raise ConfigError(
            'protect.on_source_error: expected "refuse" (a source that cannot be read '
            'refuses deletions) or "warn" (proceed and say so)'
        )
    return ProtectConfig(
        tags=patterns["tags"], on_source_error=on_error, immutable=patterns["immutable"]
    )


DEPLOYED_KEYS = {
    "kubernetes": {"kubeconfig", "context"},
    "containerapps": {"subscription_id", "resource_group"},
}
DEPLOYED_COMMON = {"name", "type", "registries", "cache_seconds", "timeout", "lock_schedule"}
MAX_DEPLOYED_CACHE = 300.0  # seconds: an in-use answer older than this is not "fresh"


def _deployed(
    tables: Any, *, base: Path, registries: tuple[RegistryConfig, ...]
) -> tuple[DeployedConfig, ...]:
    if not isinstance(tables, list):
        raise ConfigError("deployed: expected [[deployed]] tables")
    found, names = [], set()
    known_registries = {r.name for r in registries}
    for i, table in enumerate(tables):
        key = f"deployed[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{key}: expected a table")
        kind = table.get("type")
        if kind not in DEPLOYED_KEYS:
            raise ConfigError(f'{key}.type: expected "kubernetes" or "containerapps"')
        allowed = DEPLOYED_COMMON | DEPLOYED_KEYS[kind]
        for opt in table:
            if opt not in allowed:
                raise ConfigError(unknown_key(f"{key}.{opt}", opt, allowed))
        name = table.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in names:
            raise ConfigError(f"{key}.name: expected a unique name of letters, digits, . _ -")
        names.add(name)
        covered = table.get("registries", [])
        if not isinstance(covered, list) or not all(isinstance(r, str) for r in covered):
            raise ConfigError(f'{key}.registries: expected a list of registry names, e.g. ["prod"]')
        for r in covered:
            if r not in known_registries:
                raise ConfigError(f"{key}.registries: no [[registry]] named {r!r}")
        numbers = {}
        for opt, default, top in (
            ("cache_seconds", 10.0, MAX_DEPLOYED_CACHE),
            ("timeout", 10.0, 120.0),
        ):
            value = table.get(opt, default)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value <= top
            ):
                raise ConfigError(f"{key}.{opt}: expected seconds from 0 to {top:g}")
            numbers[opt] = float(value)
        for opt in ("context", "subscription_id", "resource_group", "kubeconfig"):
            if opt in table and (not isinstance(table[opt], str) or not table[opt]):
                raise ConfigError(f"{key}.{opt}: expected a non-empty string")
        if kind == "containerapps" and not table.get("subscription_id"):
            raise ConfigError(f"{key}.subscription_id: required for type containerapps")
        lock_schedule = table.get("lock_schedule")
        if lock_schedule is not None:
            from croniter import croniter  # only with a lock_schedule

            if not isinstance(lock_schedule, str) or not croniter.is_valid(lock_schedule):
                raise ConfigError(
                    f'{key}.lock_schedule: expected a cron schedule such as "*/30 * * * *" '
                    f"(UTC), got {lock_schedule!r}"
                )
        kubeconfig = table.get("kubeconfig")
        found.append(
            DeployedConfig(
                name=name,
                type=kind,
                kubeconfig=(base / kubeconfig).resolve() if kubeconfig else None,
                context=table.get("context"),
                subscription_id=table.get("subscription_id"),
                resource_group=table.get("resource_group"),
                registries=tuple(covered),
                cache_seconds=numbers["cache_seconds"],
                timeout=numbers["timeout"],
                lock_schedule=lock_schedule,
            )
        )
    return tuple(found)


RETENTION_KEYS = {
    "name",
    "schedule",
    "filter",
    "channel",
    "registry",
    "ago",
    "keep",
    "untagged",
    "reason",
}


def _retention(
    tables: Any, *, registries: tuple[RegistryConfig, ...]
) -> tuple[RetentionConfig, ...]:
    if not isinstance(tables, list):
        raise ConfigError("retention: expected [[retention]] tables")
    if not tables:
        return ()
    from croniter import croniter  # only for [[retention]]: ~15 ms that `acrbot run` skips

    from bot.core.errors import UsageError
    from bot.core.purge_spec import parse_ago, parse_filter

    rules, names = [], set()
    for i, table in enumerate(tables):
        key = f"retention[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{key}: expected a table")
        for opt in table:
            if opt not in RETENTION_KEYS:
                raise ConfigError(
                    f"{key}.{opt}: unknown key (known: {', '.join(sorted(RETENTION_KEYS))})"
                )
        name = table.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in names:
            raise ConfigError(f"{key}.name: expected a unique name of letters, digits, . _ -")
        names.add(name)
        schedule = table.get("schedule")
        if not isinstance(schedule, str) or not croniter.is_valid(schedule):
            raise ConfigError(
                f'{key}.schedule: expected a cron schedule such as "0 6 * * 1" (UTC), '
                f"got {schedule!r}"
            )
        filters = table.get("filter")
        if isinstance(filters, str):
            filters = [filters]
        if not isinstance(filters, list) or not filters:
            raise ConfigError(f'{key}.filter: expected "REPO:REGEX" or a list of them')
        try:
            for f in filters:
                parse_filter(str(f))
        except UsageError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        try:
            if table.get("ago") is not None:
                parse_ago(str(table["ago"]), option=f"{key}.ago")
        except UsageError as exc:
            raise ConfigError(str(exc)) from None
        channel = table.get("channel")
        if not isinstance(channel, str) or not re.fullmatch(r"[CG][A-Z0-9]{2,}", channel):
            raise ConfigError(f"{key}.channel: expected a Slack channel id such as C0123456789")
        registry = table.get("registry")
        if registry is not None and registry not in {r.name for r in registries}:
            raise ConfigError(f"{key}.registry: no [[registry]] is named {registry!r}")
        keep = table.get("keep", 0)
        if not isinstance(keep, int) or isinstance(keep, bool) or not 0 <= keep <= 10_000:
            raise ConfigError(f"{key}.keep: expected a number from 0 to 10000")
        rules.append(
            RetentionConfig(
                name=name,
                schedule=schedule,
                filters=tuple(str(f) for f in filters),
                channel=channel,
                registry=registry,
                ago=str(table["ago"]) if table.get("ago") is not None else None,
                keep=keep,
                untagged=bool(table.get("untagged", False)),
                reason=str(table["reason"]) if table.get("reason") else None,
            )
        )
    return tuple(rules)


def _users(table: Any, *, groups: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """`[users]`: `alice = "U0123ALICE"`, the login name the console, `acrbot run` and
    notebooks are given → the user id grants name (a Slack id when the team uses Slack)."""
    if not isinstance(table, dict):
        raise ConfigError('users: expected a table of login = "USER-ID"')
    users = {}
    for login, user_id in table.items():
        if not _LOGIN.fullmatch(login):
            raise ConfigError(f"users.{login}: not a login name (letters, digits and . _ @ + -)")
        if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
            raise ConfigError(
                f'users.{login}: expected the user id its grants name, such as "U0123ALICE", '
                f"got {user_id!r}"
            )
        users[login] = user_id
    for login, user_id in users.items():
        if _is_group(user_id, groups):
            raise ConfigError(
                f"users.{login}: {user_id!r} is a user group; a login maps to a user id "
                "(groups hold roles but never act)"
            )
        if user_id in users and user_id != login:
            raise ConfigError(
                f"users.{login}: {user_id!r} is itself an alias; name the user id it maps to "
                f"({users[user_id]!r})"
            )
    return users


def _notebook(
    table: Any, *, users: Mapping[str, str], groups: Mapping[str, tuple[str, ...]]
) -> str | None:
    """`[notebook]`: defaults for notebooks (bot/notebook); ``user`` is who they act as."""
    if not isinstance(table, dict):
        raise ConfigError("notebook: expected a table")
    for key in table:
        if key not in NOTEBOOK_KEYS:
            raise ConfigError(f"notebook.{key}: unknown key (known: {', '.join(NOTEBOOK_KEYS)})")
    user = table.get("user")
    if user is not None and (not isinstance(user, str) or not _LOGIN.fullmatch(user)):
        raise ConfigError('notebook.user: expected a login name or user id, such as "alice"')
    if user is not None and _is_group(users.get(user, user), groups):
        raise ConfigError(
            f"notebook.user: {user!r} is a user group; name a user (groups never act)"
        )
    return user


def _is_group(user_id: str, groups: Mapping[str, tuple[str, ...]]) -> bool:
    from bot.core.commands import canonical_id, group_id
    from bot.core.errors import UsageError

    try:
        return group_id(canonical_id(user_id), groups)
    except UsageError:
        return False


def _groups(table: Any) -> dict[str, tuple[str, ...]]:
    """Static user groups for the console and tests; Slack resolves its own groups."""
    if not isinstance(table, dict):
        raise ConfigError("groups: expected a table of group = [members]")
    groups = {}
    for name, members in table.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ConfigError(f"groups.{name}: expected a list of user ids")
        from bot.core.commands import canonical_id
        from bot.core.errors import UsageError

        try:
            groups[canonical_id(name)] = tuple(canonical_id(m) for m in members)
        except UsageError as exc:
            raise ConfigError(f"groups.{name}: {exc}") from None
    return groups


def inherited(name: str) -> str | None:
    """A setting `acrbot serve` hands down to its worker process through the environment
    (the log format, the metrics switch, PROMETHEUS_MULTIPROC_DIR): a spawned child inherits
    it, and prometheus-client reads its variable before anything else could pass it on."""
    return os.environ.get(name) or None


def hand_down(name: str, value: str) -> None:
    """Set a setting for this process and the processes it starts (see `inherited`)."""
    os.environ[name] = value
