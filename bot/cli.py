"""`acrbot`: the command line. A thin layer that turns BotErrors into one clean line.

acrbot demo                      seed the offline demo and open its console
acrbot console [--user ID]       chat with the bot in a terminal
acrbot run --user ID "COMMAND"   run one command (exit 1 if refused or failed)
acrbot roles grant|revoke|list   bootstrap the role table without Slack
acrbot audit [--json] | audit verify
acrbot doctor [--json]           check a deployment and say what to fix
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from bot import __version__
from bot.app import build_context, build_dispatcher, configure_logging, ship_audit
from bot.console import run_console
from bot.core import commands
from bot.core.config import Config, config_arg, default_user, load
from bot.core.errors import BotError, ConfigError, UsageError
from bot.core.policy import ALL, Grant
from bot.core.render_text import render, terminal_width
from bot.ops import logs, metrics
from bot.progress_bar import ProgressBar


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="configuration file (default: $ACRBOT_CONFIG)"
    )


def _log_format_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="log lines as text (the default) or one JSON object a line",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acrbot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"acrbot {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    manifest = sub.add_parser(
        "slack-manifest", help="print the Slack app manifest for Socket Mode or HTTP"
    )
    manifest.add_argument("--mode", choices=["socket", "http"], default="socket")
    manifest.add_argument(
        "--url",
        help="HTTP mode: the public base URL of the bot, or its events URL "
        "(https://HOST/slack/events)",
    )

    init = sub.add_parser("init", help="create the database (or bring it to the current schema)")
    _config_arg(init)

    demo = sub.add_parser("demo", help="seed the offline demo and open its console")
    demo.add_argument("--dir", default=".acrbot-demo", help="demo directory (default: %(default)s)")
    demo.add_argument("--fresh", action="store_true", help="throw away the old demo first")
    demo.add_argument("--user", default="alice", help="acting user (default: %(default)s)")

    console = sub.add_parser("console", help="chat with the bot on stdin/stdout")
    _config_arg(console)
    console.add_argument(
        "--user", help="acting user, an id or a [users] login (default: $ACRBOT_USER or $USER)"
    )
    _log_format_arg(console)

    serve = sub.add_parser(
        "serve", help="run the Slack app (Socket Mode if SLACK_APP_TOKEN is set, else HTTP)"
    )
    _config_arg(serve)
    serve.add_argument(
        "--host", default="127.0.0.1", help="HTTP mode: address (default %(default)s)"
    )
    serve.add_argument(
        "--port", type=int, default=3000, help="HTTP mode: port (default %(default)s)"
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics on this port (and only there: never on --port, which Slack "
        "reaches); default: no /metrics",
    )
    serve.add_argument(
        "--metrics-host",
        metavar="HOST",
        help="the address of --metrics-port (default: --host; e.g. 127.0.0.1 for a local agent)",
    )
    serve.add_argument(
        "--events-port",
        type=int,
        metavar="PORT",
        help="Socket Mode: serve POST /registry/events on this port (HTTP mode serves it on "
        "--port); needs [events] in the config",
    )
    serve.add_argument(
        "--startup-wait",
        type=_startup_wait,
        default=30.0,
        metavar="SECONDS",
        help="retry an unreachable Slack this long at start-up (default %(default)g, at most "
        f"{MAX_STARTUP_WAIT:g})",
    )
    _log_format_arg(serve)

    run = sub.add_parser("run", help="run one command and exit")
    _config_arg(run)
    run.add_argument("--user", required=True, help="acting user: an id, or a login name in [users]")
    run.add_argument("--json", action="store_true", help="print the reply as JSON")
    _log_format_arg(run)
    # REMAINDER: everything after the first word is the bot command, its --options included.
    run.add_argument(
        "words",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help='e.g. "tags baseimages/fedora" (after acrbot\'s own options)',
    )

    roles = sub.add_parser("roles", help="manage the role table as the operator")
    roles_sub = roles.add_subparsers(dest="roles_cmd", required=True, metavar="ACTION")
    for action in ("grant", "revoke"):
        p = roles_sub.add_parser(action, help=f"{action} a role")
        _config_arg(p)
        p.add_argument("user", help="user or user-group id")
        p.add_argument("role", help="reader, contributor, owner or oncall")
        p.add_argument("--registry", default=ALL, help="registry name (default: all)")
        p.add_argument("--repo", default=ALL, help="repository glob (default: *)")
    listing = roles_sub.add_parser("list", help="list grants")
    _config_arg(listing)
    listing.add_argument("user", nargs="?", help="only this user's grants")

    audit = sub.add_parser("audit", help="print or verify the audit log")
    _config_arg(audit)
    audit.add_argument("action", nargs="?", choices=["verify"], help="check the hash chain")
    audit.add_argument("--json", action="store_true", help="JSON lines")
    audit.add_argument(
        "--blob", action="store_true", help="with verify: check the archive in Azure Blob Storage"
    )
    audit.add_argument("--last", type=int, default=50, help="entries to print (default 50)")

    doctor = sub.add_parser("doctor", help="check a deployment and say what to fix")
    _config_arg(doctor)
    doctor.add_argument("--json", action="store_true", help="the checks as JSON (for CI)")
    return parser


MAX_STARTUP_WAIT = 3600.0  # an hour: past it, a supervisor's restart says more than waiting


def _startup_wait(text: str) -> float:
    """`--startup-wait`: seconds from 0 to MAX_STARTUP_WAIT (`inf`, `nan`, `1e400`: refused)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= MAX_STARTUP_WAIT:  # also false for nan
        raise argparse.ArgumentTypeError(
            f"expected seconds from 0 to {MAX_STARTUP_WAIT:g}, got {text[:30]!r}"
        )
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(fmt=getattr(args, "log_format", None))
    try:
        return _COMMANDS[args.cmd](args)
    except ConfigError as exc:
        print(f"acrbot: {exc}", file=sys.stderr)
        return 2
    except BotError as exc:
        print(f"acrbot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `acrbot audit | head -1`: the reader left; stop quietly, as other CLI tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bot import demo

    config = demo.prepare(Path(args.dir), fresh=args.fresh)
    print(f"Demo registry and database in {Path(args.dir).resolve()}.")
    print("Users: alice (contributor), bob and erin (owners), carol (reader), dave (oncall).")
    print(
        'Try: repos · tags baseimages/fedora · delete baseimages/fedora:24 --reason "EOL" · '
        ":as bob · requests · approve 1"
    )
    return _console_loop(config, args.user)


def _console(args: argparse.Namespace) -> int:
    user = args.user or default_user()
    if not user:
        raise ConfigError("no acting user: pass --user ID")
    return _console_loop(load(args.config), user)


def _console_loop(config: Config, user: str) -> int:
    dispatcher = build_dispatcher(config, defer=True)
    run_console(
        dispatcher,
        user=user,
        stdin=sys.stdin,
        stdout=sys.stdout,
        interactive=sys.stdin.isatty(),
        after=lambda: ship_audit(dispatcher.ctx),
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging

    from bot.core.config import slack_settings
    from bot.ops import metrics
    from bot.slack.service import serve

    settings = slack_settings()
    config = load(args.config)
    logging.getLogger().setLevel(logging.INFO)
    metrics.enable_multiprocess()  # before the worker process starts: it inherits the mode
    serve(
        config,
        settings,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        events_port=args.events_port,
        startup_wait=args.startup_wait,
    )
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from bot import doctor
    from bot.core.config import find_config
    from bot.slack.checks import slack_checks

    checks = doctor.run(args.config, extra=[slack_checks])
    if args.json:
        print(doctor.as_json(checks))
    else:
        source = args.config or find_config()
        print(doctor.render(checks, source=str(source) if source else None))
    return 1 if any(c.failed for c in checks) else 0


def _run(args: argparse.Namespace) -> int:
    if not args.words:
        raise ConfigError('run: give the bot command to run, e.g. acrbot run --user ID "help"')
    text = args.words[0] if len(args.words) == 1 else shlex.join(args.words)
    if metrics.multiprocess_dir() is None:
        # Nothing scrapes a one-shot process: counting would only import prometheus-client
        # (~0.1 s of CPU). Inside `acrbot serve`'s environment the counts still reach /metrics.
        metrics.disable()
    config = load(args.config)
    dispatcher = build_dispatcher(config, defer=True)  # `help` builds no registry client
    bar = ProgressBar()
    try:
        reply = dispatcher.handle(text, user=config.user_id(args.user), progress=bar)
    finally:
        bar.close()
    ship_audit(dispatcher.ctx)
    if args.json:
        print(json.dumps(reply.as_json(), indent=2, default=str))
        if reply.secret is not None:
            print(f"(shown once, only to you) {reply.secret}", file=sys.stderr)
    else:
        print(render(reply, width=terminal_width()))
    return 0 if reply.ok else 1


def _roles(args: argparse.Namespace) -> int:
    ctx = build_context(load(args.config))
    if args.roles_cmd == "list":
        grants = ctx.roles.direct_grants(args.user) if args.user else ctx.roles.all_grants()
        for g in grants:
            print(f"{g.principal}\t{g.role}\t{g.registry}\t{g.repositories}")
        return 0
    try:
        grant = Grant(
            principal=commands.principal(args.user),
            role=commands.role(args.role),
            registry=commands.registry_or_all(args.registry),
            repositories=commands.repo_glob(args.repo),
        )
    except UsageError as exc:
        raise BotError(str(exc)) from None
    if args.registry != ALL:
        ctx.registries.get(args.registry)
    actor = f"cli:{default_user() or 'operator'}"
    if args.roles_cmd == "grant":
        added = ctx.roles.grant(grant, by=actor, at=ctx.clock())
        print(
            f"Granted {grant.principal} {grant}."
            if added
            else f"{grant.principal} already has {grant}."
        )
    else:
        ctx.roles.revoke(grant)
        print(f"Revoked {grant} from {grant.principal}.")
    ctx.audit.append(
        actor=actor, action=args.roles_cmd, target=str(grant), outcome="ok", at=ctx.clock()
    )
    ship_audit(ctx)
    return 0


def _audit(args: argparse.Namespace) -> int:
    config = load(args.config)
    if args.action == "verify":
        return _verify(config, blob=args.blob)
    if args.blob:
        raise UsageError("--blob: only with `acrbot audit verify`")
    if not 1 <= args.last <= 1000:
        raise UsageError(f"--last: expected a number from 1 to 1000, got {args.last}")
    ctx = build_context(config)
    for entry in ctx.audit.entries(last=args.last):
        if args.json:
            print(json.dumps(entry.as_dict()))
        else:
            print(
                f"{entry.id:>5} {entry.ts} {entry.actor} {entry.action} {entry.target} "
                f"{entry.outcome}" + (f" ({entry.error})" if entry.error else "")
            )
    return 0


def _verify(config: Config, *, blob: bool) -> int:
    """Read-only on both sides: the database is opened read-only and never migrated (an
    auditor's copy works), nothing is shipped, and the Blob archive is only read. The chain
    is checked with the configured key from the configured row; with an archive, the two are
    compared both ways. ``blob``: the archive's own chain is re-verified too, and an archive
    that cannot be read is an error, not a note."""
    from bot.app import audit_of
    from bot.ops.archive import (
        SHIPPED_KEY,
        ArchiveBroken,
        ArchiveUnavailable,
        AuditArchive,
        container_client,
    )
    from bot.state.audit import ChainCheck, compare_with_archive
    from bot.state.store import Store

    if blob and config.archive is None:
        raise ConfigError("audit verify --blob: no [audit.blob] table in the configuration")
    store = Store(config.database, readonly=True, config_arg=config_arg(config.source))
    audit = audit_of(config, store)
    result = audit.verify()
    problems = list(result.problems)
    keyed = f"keyed (HMAC) from row {audit.keyed_from}" if audit.keyed else "not keyed"
    anchored = "no archive configured: compared with nothing outside the database"
    archive_check = ChainCheck(label="archive row", key=audit.key, keyed_from=audit.keyed_from or 1)
    if config.archive is not None:
        archive = AuditArchive(
            store, container_client(config.archive), prefix=config.archive.prefix
        )
        row = store.db.execute("select value from meta where key = ?", [SHIPPED_KEY]).fetchone()
        shipped = int(row[0]) if row else 0

        def checked(rows: Any) -> Any:
            for row in rows:
                archive_check.feed(row)  # the archive's own chain, as its rows stream past
                yield row

        try:
            compared, differ = compare_with_archive(
                audit.local_rows(), checked(archive.rows()), shipped=shipped
            )
        except ArchiveBroken as exc:
            problems.append(str(exc))
            anchored = "the Blob archive holds a line that is not an audit row"
        except ArchiveUnavailable as exc:
            if blob:
                raise
            anchored = f"the Blob archive could not be read ({exc}): not compared"
        else:
            problems += differ
            anchored = f"{compared} rows compared both ways with the Blob archive"
    if blob:
        chain = archive_check.result()
        problems = [*chain.problems, *problems]
        behind = result.checked - chain.last_id
        note = f"; {behind} newer rows not shipped yet" if behind > 0 else ""
        if not problems:
            print(
                f"audit archive intact: {chain.checked} rows verified from the archive alone "
                f"({keyed}); the database's {result.checked} rows match it{note}"
            )
            return 0
        print(
            f"audit archive BROKEN ({chain.checked} rows checked; {result.checked} in the "
            "database):"
        )
    elif not problems:
        print(f"audit chain intact: {result.checked} entries verified ({keyed}); {anchored}")
        return 0
    else:
        print(f"audit chain BROKEN ({result.checked} entries checked; {anchored}):")
    for problem in problems:
        print(f"  {problem}")
    return 1


def _slack_manifest(args: argparse.Namespace) -> int:
    from bot.slack.manifest import PLACEHOLDER, manifest

    if args.url is not None and args.mode != "http":
        raise ConfigError("--url: only with --mode http (in Socket Mode Slack posts to no URL)")
    print(json.dumps(manifest(mode=args.mode, url=args.url or PLACEHOLDER), indent=2))
    return 0


def _init(args: argparse.Namespace) -> int:
    from bot.state.store import SCHEMA_VERSION, Store

    config = load(args.config)
    store = Store(config.database, create=True)
    existed = store.migrated_from > 0
    from bot.app import audit_of, utc_now

    switched = audit_of(config, store).seal(at=utc_now())
    store.close()
    if switched is not None and switched.id > 1:
        print(
            f"The audit key applies from row {switched.id} (an `audit.keyed` row records "
            f"it): add `keyed_from = {switched.id}` to [audit], or `acrbot audit verify` "
            "will say the rows before it are not keyed."
        )
    if existed:
        print(f"Database {config.database} is ready (schema {SCHEMA_VERSION}).")
    else:
        print(
            f"Created database {config.database} (schema {SCHEMA_VERSION}). Next: "
            f"acrbot roles grant USER owner {config_arg(config.source)}, for the first owner."
        )
    return 0


_COMMANDS = {
    "init": _init,
    "slack-manifest": _slack_manifest,
    "serve": _serve,
    "demo": _demo,
    "console": _console,
    "run": _run,
    "roles": _roles,
    "audit": _audit,
    "doctor": _doctor,
}
