"""The one way in: text and a user id go in, a Reply comes out, and the audit gets a row.

This is the error boundary. A UserError becomes a short reply; any other exception is logged
with a reference id and the user gets one line with that id, never a traceback.

Each dispatcher serves one *door* (console, notebook, slack), and the audit row of every command
names it, in the row's ``action``: ``delete@notebook``. The console, the default door, writes the
bare command name, as every row did before doors were recorded. Why there:
- ``action`` is hashed, so the door is as tamper-evident as the rest of the row. A new column
  outside the hash could be edited unnoticed; inside it, it would change the hashed payload, a
  schema migration and every reader of the chain (`audit verify`, the archive's JSON lines, an
  older `audit verify --blob`) at once.
- ``actor`` stays the bare user id: `audit --user`, the role table and a request's requester
  all match on it. ``target`` is free text (image references hold ``@``), so a suffix there could
  not be told from the target; ``action``'s vocabulary is ours (command names, which never
  hold ``@``), so :func:`split_door` is unambiguous.
- Console rows stay byte-for-byte what they were: existing readers see no change, and a marker
  appears exactly where another door was used.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime

from bot.core.commands import COMMANDS, acting_user, is_listing, needs, scope
from bot.core.errors import PermissionDenied, UsageError, UserError
from bot.core.grammar import ParsedCommand, parse
from bot.core.policy import ALL, Scope, require
from bot.core.redaction import redact_urls
from bot.core.references import ImageRef
from bot.core.registry import Progress, no_progress
from bot.core.replies import Reply, error
from bot.kernel.context import Call, Context
from bot.ops import observe
from bot.state.dbhealth import HEALTH

log = logging.getLogger(__name__)
SWEEP_EVERY = 30  # seconds between expiry sweeps made on the way through
Handler = Callable[..., Reply]
CONSOLE, NOTEBOOK, SLACK = "console", "notebook", "slack"
DOORS = (CONSOLE, NOTEBOOK, SLACK)  # a closed set: split_door relies on it


def door_action(command: str, door: str) -> str:
    """The audit ``action`` for ``command`` arriving through ``door`` (see the module doc)."""
    return command if door == CONSOLE else f"{command}@{door}"


def split_door(action: str) -> tuple[str, str]:
    """``delete@notebook`` → (delete, notebook); an unmarked action came through the console
    (or was written before doors were recorded)."""
    command, _, door = action.rpartition("@")
    return (command, door) if command and door in DOORS else (action, CONSOLE)


class Dispatcher:
    def __init__(
        self, ctx: Context, handlers: Mapping[str, Handler], *, door: str = CONSOLE
    ) -> None:
        missing = set(COMMANDS) - set(handlers)
        if missing:
            raise ValueError(f"commands without a handler: {', '.join(sorted(missing))}")
        _check_door(door)
        self.ctx = ctx
        self.door = door  # where commands come from, unless handle() is told otherwise
        self._handlers = handlers
        self._last_sweep: datetime | None = None
        # Finishes requests a crash left in `executing` (handlers.requests.decide.recover), set by
        # the wiring: the dispatcher does not know how deletions are reconciled.
        self.recover: Callable[[], object] | None = None

    def handle(
        self,
        text: str,
        *,
        user: str,
        progress: Progress = no_progress,
        channel: str | None = None,
        origin: str | None = None,
        finish: Callable[[Reply], None] | None = None,
        door: str | None = None,
        listing_only: bool = False,
    ) -> Reply:
        """Parse, authorize, run and audit one command. Never raises.

        ``progress`` receives (done, total) from long registry scans, for the transport to
        show ("still working: 2,300 of 10,000 tags checked"). ``channel`` is where a chat
        command came from; ``origin`` the job that runs it (effects keyed by it happen once
        however often the job runs). ``finish(reply)`` runs inside the transaction that
        writes the command's audit row: a transport records the job done and its answer
        there, so both commit with the audit or not at all. ``door`` (default: the
        dispatcher's) is written into the audit row; one outside DOORS is a bug (ValueError).
        ``listing_only``: the text came back from a client (a page button's value), so only a
        listing may run; anything else is refused and audited as refused.
        """
        door = self.door if door is None else door
        _check_door(door)
        command: ParsedCommand | None = None
        call: Call | None = None
        try:  # a malformed id, or a group's (groups never act: commands.acting_user)
            user = acting_user(user, groups=self.ctx.config.groups)
        except UserError as exc:
            return error(str(exc))  # nobody to audit as: the id itself is the problem
        try:
            self._expire_due()
            command = parse(text, COMMANDS)
            if listing_only and not is_listing(command.name, command.args):
                raise PermissionDenied(
                    f"a page button re-runs only listings, and `{command.name}` is not one: "
                    "nothing was run"
                )
            call = self._call(command, user, progress, channel=channel, origin=origin, door=door)
            reply = self._handlers[command.name](call, ctx=self.ctx)
        except UserError as exc:
            outcome = "refused" if isinstance(exc, PermissionDenied | UsageError) else "failed"
            # A line that did not parse may hold anything the user typed: keep it out.
            # A URL's user name and password never reach a reply or the audit (a backend
            # built by hand, an SDK's message), whatever raised.
            message = redact_urls(str(exc))
            detail = (
                "could not parse the command"
                if isinstance(exc, UsageError) and command is None
                else message
            )
            reply = error(message)
            self._audit(user, command, call, outcome, detail, door=door, finish=finish, reply=reply)
            return reply
        except Exception as exc:
            ref = secrets.token_hex(4)
            if not HEALTH.guard(exc, doing="run a command"):  # a full disk: a line a minute
                log.exception(
                    "command %r by %s failed (ref %s)", command.name if command else "?", user, ref
                )
            reply = error(
                f"something went wrong on our side (ref {ref}); nothing was changed "
                "unless the reply says so. Please tell the bot's operators."
            )
            self._audit(
                user,
                command,
                call,
                "error",
                f"internal error (ref {ref})",
                door=door,
                finish=finish,
                reply=reply,
            )
            return reply
        self._audit(
            user,
            command,
            call,
            "ok" if reply.ok else "failed",
            None if reply.ok else reply.text,
            request_id=reply.request.id if reply.request else None,
            door=door,
            finish=finish,
            reply=reply,
        )
        return reply

    def _expire_due(self) -> None:
        """Sweep expired requests now and then, not on every command (it takes the write lock).

        Deciding an overdue request is refused regardless (Requests._pending); this only
        keeps listings current for transports without a sweeper of their own (the console).
        """
        now = self.ctx.clock()
        if self._last_sweep is None or (now - self._last_sweep).total_seconds() >= SWEEP_EVERY:
            self._last_sweep = now
            self.ctx.requests.expire_due()
            if self.recover is not None and self.ctx.requests.stale():
                self.recover()

    def _call(
        self,
        command: ParsedCommand,
        user: str,
        progress: Progress = no_progress,
        *,
        channel: str | None = None,
        origin: str | None = None,
        door: str = CONSOLE,
    ) -> Call:
        """Resolve the registry and repository the command is about, and check the role."""
        spec = COMMANDS[command.name]
        args = command.args
        grants = tuple(self.ctx.roles.grants_for(user))
        registry = None
        registry_name = args.get("registry")
        repository = args.get("repository")
        image = args.get("image")
        if isinstance(image, ImageRef):
            registry = self.ctx.registries.for_image(image, registry_name)
            repository = image.repository
        elif "registry" in args and registry_name != ALL:
            registry = self.ctx.registries.get(registry_name)
        if registry is not None:
            registry_name = registry.name
        require(
            grants,
            needs(spec, args),
            scope(spec) if scope(spec) is not Scope.REQUEST else Scope.NONE,
            action=spec.name,
            registry=registry_name,
            repository=repository,
        )
        return Call(
            command=command,
            user=user,
            grants=grants,
            registry=registry,
            registry_name=registry_name,
            repository=repository,
            progress=progress,
            channel=channel,
            origin=origin,
            door=door,
        )

    def _audit(
        self,
        user: str,
        command: ParsedCommand | None,
        call: Call | None,
        outcome: str,
        detail: str | None,
        *,
        request_id: int | None = None,
        door: str = CONSOLE,
        finish: Callable[[Reply], None] | None = None,
        reply: Reply | None = None,
    ) -> None:
        observe.command_done(command.name if command else "(unparsed)", outcome, user=user)
        target = ""
        if call is not None:
            parts = [call.registry_name or ""]
            image = call.args.get("image")
            if image is not None:
                parts.append(str(image))
            elif call.repository:
                parts.append(call.repository)
            target = "/".join(p for p in parts if p)
            if call.args.get("id"):
                target = f"#{call.args['id']}"
            if command is not None and command.name in ("grant", "revoke"):
                # Who got (or lost) which role where: the registry alone says too little.
                target = (
                    f"{call.args['user']} {call.args['role']} on "
                    f"{call.registry_name or '*'}/{call.args.get('repo') or '*'}"
                )
        if request_id is None and call is not None:
            request_id = call.args.get("id")
        try:
            with self.ctx.store.transaction():
                self.ctx.audit.append(
                    actor=user,
                    action=door_action(command.name if command else "(unparsed)", door),
                    target=target,
                    request_id=request_id,
                    outcome=outcome,
                    error=detail,
                    at=self.ctx.clock(),
                )
                if finish is not None and reply is not None:
                    finish(reply)
        except Exception as exc:
            if not HEALTH.guard(exc, doing="record a command's audit row"):
                log.exception("could not write the audit row for %s", user)
            if finish is not None and reply is not None:
                try:
                    finish(reply)  # the answer still goes out; the job still ends
                except Exception as again:
                    if not HEALTH.guard(again, doing="record a command's answer"):
                        log.exception("could not record the answer to %s", user)


def _check_door(door: str) -> None:
    if door not in DOORS:
        raise ValueError(f"unknown door {door!r} (known: {', '.join(DOORS)})")
