"""`acrbot doctor`: check a deployment and say what to fix, before a user finds out.

Each check is one row: ✓ passed, ✗ failed (with the fix: what to change, and where), or –
not applicable. The doctor reads and probes; it changes nothing: the database is opened
without migrating (a write is tried inside a transaction that is rolled back), registries
are only listed, and the Blob container is only looked at. Checks that cannot run because an
earlier one failed (no configuration, no database) are left out rather than failed twice.

The Slack rows come from bot/slack/checks.py (the core does not import Slack); `acrbot
doctor` passes them in as ``extra``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.core.config import Config, RegistryConfig, config_arg, find_config, load
from bot.core.errors import BotError, ConfigError, NotFound, OutcomeUnknown
from bot.core.redaction import redact_urls
from bot.doctor.deployed import deployed_rows
from bot.state.snapshots import usage
from bot.state.store import SCHEMA_VERSION, Store

OK, FAIL, SKIP = "ok", "fail", "skip"
MARKS = {OK: "✓", FAIL: "✗", SKIP: "–"}


@dataclass(frozen=True)
class Check:
    """One row of the report. ``fix`` says what to do, for a failed check."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def passed(name: str, detail: str) -> Check:
    return Check(name, OK, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, FAIL, detail, fix)


def skipped(name: str, detail: str) -> Check:
    return Check(name, SKIP, detail)


Extra = Callable[[Config], list[Check]]
BuildRegistry = Callable[[RegistryConfig], Any]


def run(
    path: str | Path | None,
    *,
    extra: Sequence[Extra] = (),
    build_registry: BuildRegistry | None = None,
) -> list[Check]:
    """Every check for the configuration at ``path`` (or the usual places), in order."""
    checks, config = config_checks(path)
    if config is None:
        return checks
    if isinstance(config.database, Path):
        database = database_checks(config.database, config_arg=config_arg(config.source))
    else:  # PostgreSQL
        from bot.doctor.server import server_database_checks

        found = server_database_checks(config.database, config_arg=config_arg(config.source))
        database = [Check(*finding) for finding in found]
    checks += database
    for index, registry_config in enumerate(config.registries):
        checks += registry_checks(registry_config, index, build=build_registry)
    exists = not isinstance(config.database, Path) or config.database.exists()
    usable = exists and not any(c.failed for c in database)
    checks += archive_checks(config, database_ok=usable)
    checks += [  # [[deployed]] sources: reachable, may list each kind
        passed(name, detail) if fix is None else failed(name, detail, fix)
        for name, detail, fix in deployed_rows(config)
    ]
    if usable:
        checks += lease_checks(config)
    if usable:
        checks += undo_checks(config)
    for more in extra:
        checks += more(config)
    return checks


# -- configuration ----------------------------------------------------------------------


def config_checks(path: str | Path | None) -> tuple[list[Check], Config | None]:
    where = path or find_config()
    try:
        config = load(path)
    except ConfigError as exc:
        fix = (
            "pass --config FILE, or set ACRBOT_CONFIG"
            if where is None
            else f"edit {where}: the message names the key (docs/configuration.md)"
        )
        return [failed("config", str(exc), fix)], None
    registries = ", ".join(f"{r.name} ({r.type})" for r in config.registries)
    return [passed("config", f"{config.source} parses: registries {registries}")], config


# -- database ---------------------------------------------------------------------------


def database_checks(path: Path, *, config_arg: str = "--config FILE") -> list[Check]:
    """Writable (a write lock taken and a table created, then rolled back; and a file made
    in its folder, where SQLite keeps its WAL), schema current, WAL mode on."""
    if not path.exists():
        return [_creatable(path, config_arg=config_arg)]
    checks = [_writable(path)]
    try:
        version, mode = _read_header(path)
    except (sqlite3.Error, OSError, ValueError) as exc:
        checks.append(
            failed(
                "database schema",
                f"cannot read {path}: {exc}",
                "make sure the file is an acrbot database and readable by this user",
            )
        )
        return checks
    checks.append(_schema(path, version, config_arg=config_arg))
    if mode.lower() == "wal":
        checks.append(passed("database WAL", "journal_mode=wal"))
    else:
        checks.append(
            failed(
                "database WAL",
                f"journal_mode={mode}, not wal",
                "acrbot turns WAL on whenever it opens the database, so something refused it: "
                "keep the database on a local disk or a block volume (not NFS, SMB or Azure "
                "Files), then start acrbot once",
            )
        )
    return checks


def _read_header(path: Path) -> tuple[int, str]:
    """(user_version, journal_mode), through SQLite; from the file's header when SQLite
    cannot open it (a WAL database in a read-only folder has nowhere for its -shm file)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        finally:
            conn.close()
        return version, mode
    except sqlite3.OperationalError:
        with path.open("rb") as f:
            header = f.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
        raise ValueError("not an SQLite database")
    # Offset 18 holds 2 for a WAL database; 60–63 the user_version, big-endian.
    return int.from_bytes(header[60:64], "big"), "wal" if header[18] == 2 else "delete"


def _unwritable_fix(path: Path) -> str:
    return (
        f"make {path} and its folder {path.parent} writable by the user acrbot runs as "
        f"(uid {os.getuid()}): chown/chmod them, or in Kubernetes set fsGroup and mount the "
        "volume read-write; or point `database` in the config at a writable place"
    )


def _writable(path: Path) -> Check:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=10, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE acrbot_doctor_probe (x)")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        with tempfile.TemporaryFile(dir=path.parent, prefix=".acrbot-doctor-"):
            pass
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return failed(
                "database",
                f"{path} stayed locked for 10 s",
                "another process holds a long write transaction: look for a stuck acrbot",
            )
        return failed("database", f"{path} is read-only ({exc})", _unwritable_fix(path))
    except OSError as exc:
        return failed(
            "database",
            f"cannot write in {path.parent} ({exc.strerror or exc})",
            _unwritable_fix(path),
        )
    except sqlite3.Error as exc:
        return failed(
            "database",
            f"{path}: {exc}",
            "restore the database from a backup, or point `database` at another file",
        )
    return passed("database", f"{path} writable")


def _creatable(path: Path, *, config_arg: str) -> Check:
    """A database that does not exist: acrbot does not create one by itself (a mistyped path
    would start an empty role table), so this is a ✗ saying how to create it, or what stops
    that."""
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file")
        with tempfile.TemporaryFile(dir=folder, prefix=".acrbot-doctor-"):
            pass
    except OSError as exc:
        return failed(
            "database",
            f"{path} does not exist and cannot be created ({exc.strerror or exc})",
            _unwritable_fix(path),
        )
    return failed(
        "database",
        f"{path} does not exist",
        f"if the `database` key is right, create it: acrbot init {config_arg} (the deploy "
        "kit's init container does); otherwise fix the key",
    )


def _schema(path: Path, version: int, *, config_arg: str) -> Check:
    if version == SCHEMA_VERSION:
        return passed("database schema", f"version {version} (current)")
    if version > SCHEMA_VERSION:
        return failed(
            "database schema",
            f"version {version}, written by a newer acrbot (this one knows {SCHEMA_VERSION})",
            "upgrade acrbot to the version that wrote it (or restore a backup)",
        )
    return failed(
        "database schema",
        f"version {version}; this acrbot migrates it to {SCHEMA_VERSION}",
        f"back up {path}, then start acrbot once (serve, or `acrbot roles list {config_arg}`): "
        "it migrates the database when it opens it",
    )


# -- undo -------------------------------------------------------------------------------


def undo_checks(config: Config) -> list[Check]:
    """What the undo snapshots cost now (bounded by `[undo] window`, pruned by the sweep)."""
    try:
        store = Store(config.database, readonly=True)
    except (BotError, sqlite3.Error, OSError) as exc:
        return [skipped("undo snapshots", f"not read: {exc}")]
    try:
        if store.schema_version() != SCHEMA_VERSION:
            return [skipped("undo snapshots", "the schema is not current yet")]
        kept = usage(store)
    finally:
        store.close()
    days = config.undo_window.total_seconds() / 86400
    return [
        passed(
            "undo snapshots",
            f"{kept.snapshots:,} kept for the {days:g}-day window: "
            f"{kept.stored_bytes / 1e6:.1f} MB stored ({kept.raw_bytes / 1e6:.1f} MB before "
            "compression)",
        )
    ]


# -- registries -------------------------------------------------------------------------


def registry_checks(
    cfg: RegistryConfig, index: int, *, build: BuildRegistry | None = None
) -> list[Check]:
    """Reachable and the credentials work: list the repositories. For `acr`, also the ARM
    read of the registry resource, and whether rotation may read the admin credentials."""
    name = f"registry {cfg.name}"
    try:
        registry = (build or _build)(cfg)
    except BotError as exc:
        return [failed(name, str(exc), f"fix registry[{index}] in the config")]
    except Exception as exc:  # a client that cannot even be built (a bad URL, a bad CA file)
        return [
            failed(name, f"{exc.__class__.__name__}: {exc}", f"fix registry[{index}] in the config")
        ]
    try:
        found = registry.repositories()
    except BotError as exc:
        return [failed(name, str(exc), registry_fix(cfg, index, exc))]
    except Exception as exc:  # an error the backend does not translate: still one row
        return [
            failed(
                name,
                f"{exc.__class__.__name__}: {exc}",
                f"unexpected: check registry[{index}] and report it with this message",
            )
        ]
    shown = f" (first: {found[0]})" if found else ""
    checks = [passed(name, f"{cfg.type}: listed {len(found)} repositories{shown}")]
    if cfg.type == "acr":
        checks += _acr_checks(cfg, index, registry)
    return checks


def _acr_checks(cfg: RegistryConfig, index: int, registry: Any) -> list[Check]:
    name = f"registry {cfg.name} ARM"
    try:
        status = registry.admin_status()
    except BotError as exc:
        if isinstance(exc, NotFound):
            fix = (
                f"check registry[{index}].subscription_id, resource_group and resource_name: "
                "ARM has no such registry resource"
            )
        else:
            fix = registry_fix(cfg, index, exc, arm=True)
        return [failed(name, str(exc), fix)]
    checks = [
        passed(
            name,
            "read the registry resource (admin user "
            + _on(status.enabled)
            + ")"
            + _pace(cfg, registry),
        )
    ]
    rotation = f"registry {cfg.name} rotation"
    if not status.enabled:
        return [
            *checks,
            skipped(rotation, "admin user disabled: nothing to rotate (`admin enable` first)"),
        ]
    try:
        registry.check_list_credentials()
    except BotError as exc:
        return [
            *checks,
            failed(
                rotation,
                str(exc),
                "rotation needs listCredentials and regenerateCredential: give the bot's "
                "identity Contributor on the registry, or a custom role with "
                "Microsoft.ContainerRegistry/registries/listCredentials/action and "
                "regenerateCredential/action",
            ),
        ]
    return [*checks, passed(rotation, "the identity may list the admin credentials")]


def _pace(cfg: RegistryConfig, registry: Any) -> str:
    """`; Standard tier: purges at 7.5 deletions/s, scans at 45 reads/s` (the pace purges and
    scans keep when write_rate/read_rate are not set)."""
    limits = registry.limits()
    if limits is None or not limits.known:
        return ""
    writes = cfg.options.get("write_rate") or limits.write_rate
    reads = cfg.options.get("read_rate") or limits.read_rate
    return f"; {limits.tier} tier: purges at {writes:.3g} deletions/s, scans at {reads:.3g} reads/s"


def _on(enabled: bool) -> str:
    return "enabled" if enabled else "disabled"


def _build(cfg: RegistryConfig) -> Any:
    from bot.state.facts import MemoryFacts
    from handlers.registries import BACKENDS

    return BACKENDS[cfg.type](cfg, MemoryFacts())


def registry_fix(cfg: RegistryConfig, index: int, exc: BaseException, *, arm: bool = False) -> str:
    """What to change when a registry refused or could not be reached, by what it said."""
    message, key = str(exc), f"registry[{index}]"
    # The status the registry answered, where the backend set it (RegistryError.status);
    # else the one its message names (the SDKs' errors reach here as text).
    status = getattr(exc, "status", None)
    if status is None:
        found = re.search(r"\((401|403|429)\)", message)
        status = int(found.group(1)) if found else None
    if cfg.type == "oci-layout":
        return f"check {key}.path ({cfg.options.get('path')}): it must be a readable directory"
    if "unreachable" in message or "did not answer" in message or isinstance(exc, OutcomeUnknown):
        if cfg.type == "acr":
            return (
                f"check {key}.login_server ({cfg.login_server}): DNS (private endpoint?), the "
                "registry's network rules and firewalls; behind a TLS-inspecting proxy set "
                f"{key}.ca_bundle"
            )
        return (
            f"check {key}.url ({cfg.options.get('url')}): is the registry running, and can "
            f"this host reach it (DNS, firewall, proxy)? For a private CA set {key}.ca_bundle"
        )
    if status == 401:
        if cfg.type == "acr":
            return (
                "DefaultAzureCredential's identity was refused: check AZURE_CLIENT_ID and "
                "AZURE_TENANT_ID (with workload identity, the federated token), the managed "
                "identity, or `az login`"
            )
        return (
            f"the registry refused the credentials: check {key}.username and the secret in "
            f"the variable {key}.password_env (or token_env) names"
        )
    if status == 403:
        if cfg.type == "acr":
            role = "Reader (to read the resource)" if arm else "AcrPull and AcrDelete"
            return f"assign the bot's identity {role} on registry {cfg.name}"
        return "give the bot's account rights to list the catalog and pull (and delete)"
    if status == 429:
        return "the registry is throttling: run the doctor again in a minute"
    return "see the message; check the registry's own health and try again"


# -- audit archive ----------------------------------------------------------------------


def archive_checks(config: Config, *, database_ok: bool) -> list[Check]:
    """Blob archive reachable (the container is looked at, not written) and its backlog."""
    if config.archive is None:
        return [skipped("audit archive", "no [audit.blob] table: the audit stays in SQLite")]
    from azure.core.exceptions import AzureError

    from bot.ops.archive import container_client

    settings = config.archive
    where = settings.account_url or "the account in connection_string_env"
    try:
        container = container_client(settings)
        exists = container.exists()
    except (AzureError, ValueError) as exc:
        reachable = failed(
            "audit archive",
            f"{where}, container {settings.container}: {exc.__class__.__name__}",
            "check [audit.blob] account_url (or the connection string), the network path to "
            "the storage account, and that the bot's identity has Storage Blob Data "
            "Contributor on it",
        )
    else:
        state = "reachable" if exists else "reachable; created at the first shipment"
        reachable = passed("audit archive", f"{where}, container {settings.container} {state}")
    checks = [reachable]
    if not database_ok:
        return [*checks, skipped("audit backlog", "needs a usable database (see above)")]
    from bot.ops.archive import AuditArchive
    from bot.state.store import Store

    store = Store(config.database)
    try:
        backlog = AuditArchive(store, None, prefix=settings.prefix).pending()
    finally:
        store.close()
    if backlog and reachable.failed:
        return [
            *checks,
            failed(
                "audit backlog",
                f"{backlog} audit rows wait for the archive",
                "they are shipped as soon as the archive is reachable: fix the row above",
            ),
        ]
    return [*checks, passed("audit backlog", f"{backlog} audit rows not archived yet")]


def lease_checks(config: Config, *, now: datetime | None = None) -> list[Check]:
    """Who runs each singleton (sweep, archive, ordered delivery) now: with two replicas,
    one holds each lease (bot/state/leases.py). Informational: a lease held by nobody just
    means no `acrbot serve` runs (or one is taking it over)."""
    from bot.state.leases import SINGLETONS, Leases
    from bot.state.store import Store

    store = Store(config.database)
    try:
        rows = {lease.name: lease for lease in Leases(store).holders()}
    finally:
        store.close()
    now = now or datetime.now(UTC)
    parts = []
    for name in SINGLETONS:
        lease = rows.get(name)
        if lease is None:
            parts.append(f"{name}: free")
        elif lease.expires_at > now:
            left = (lease.expires_at - now).total_seconds()
            parts.append(f"{name}: {lease.owner} (for {left:.0f} s more unless renewed)")
        else:
            ago = (now - lease.expires_at).total_seconds()
            parts.append(f"{name}: expired {ago:.0f} s ago ({lease.owner}, gone)")
    return [passed("leases", "; ".join(parts))]


# -- output -----------------------------------------------------------------------------


def render(checks: Sequence[Check], *, source: str | None = None) -> str:
    """The ✓/✗ table, each failure followed by its fix, and a last line that sums up."""
    width = max((len(c.name) for c in checks), default=0)
    lines = [f"acrbot doctor: {source}"] if source else []
    for check in checks:
        lines.append(f"{MARKS[check.status]} {check.name:<{width}}  {check.detail}")
        if check.failed and check.fix:
            lines.append(f"  {'':<{width}}  fix: {check.fix}")
    bad = sum(c.failed for c in checks)
    lines.append(
        f"{bad} of {len(checks)} checks failed." if bad else f"All {len(checks)} checks passed."
    )
    return redact_urls("\n".join(lines))  # an SDK's message may quote a URL with its password


def as_json(checks: Sequence[Check]) -> str:
    return json.dumps(
        {
            "ok": not any(c.failed for c in checks),
            "checks": [
                {k: redact_urls(v) if isinstance(v, str) else v for k, v in asdict(c).items()}
                for c in checks
            ],
        },
        indent=2,
        ensure_ascii=False,
    )
