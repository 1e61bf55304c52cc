"""`audit`: read the append-only audit log."""

from __future__ import annotations

from collections.abc import Callable

from bot.core.commands import OWN
from bot.core.errors import NotFound
from bot.core.policy import ALL, Scope, allows
from bot.core.replies import Reply, Table
from bot.kernel.context import Call, Context
from bot.state.audit import AuditEntry


def _reader(call: Call, ctx: Context) -> Callable[[AuditEntry], bool]:
    if any(
        g.registry == ALL and g.repositories == ALL and g.role.value == "owner" for g in call.grants
    ):
        return lambda entry: True
    cache: dict[int, bool] = {}

    def owns(registry: str, repository: str | None) -> bool:
        return allows(call.grants, OWN, Scope.REPOSITORY, registry=registry, repository=repository)

    def allowed(entry: AuditEntry) -> bool:
        if entry.actor == call.user:
            return True
        if entry.request_id:
            if entry.request_id not in cache:
                try:
                    request = ctx.requests.get(entry.request_id)
                    cache[entry.request_id] = all(
                        owns(request.registry, r) for r in request.repositories
                    )
                except NotFound:
                    cache[entry.request_id] = False
            return cache[entry.request_id]
        target = entry.target.split(" on ", 1)[-1]  # grant rows: "who role on reg/glob"
        registry, _, rest = target.partition("/")
        if not rest:
            return False  # not about one repository: for owners of everything only
        repository = rest.split("@", 1)[0].rsplit(":", 1)[0]
        return (
            owns(registry, repository)
            if "*" not in repository
            else owns(registry, None)
            and all(g.repositories == ALL for g in call.grants if g.registry in (registry, ALL))
        )

    return allowed


def audit(call: Call, *, ctx: Context) -> Reply:
    """The newest entries the caller may read: an owner of everything reads every row; an
    owner of some repositories reads the rows about those (and their own)."""
    last = call.args["last"] or 20
    allowed = _reader(call, ctx)
    entries: list[AuditEntry] = []
    before = None
    while len(entries) < last:  # filter newest first, in batches, until the page is full
        batch = ctx.audit.entries(
            last=500, actor=call.args["user"], request_id=call.args["request"], before=before
        )
        if not batch:
            break
        entries = [e for e in batch if allowed(e)][-(last - len(entries)) :] + entries
        before = batch[0].id
    rows = tuple(
        (
            str(e.id),
            e.ts[:19].replace("T", " "),
            e.actor,
            e.action,
            e.target,
            f"#{e.request_id}" if e.request_id else "",
            e.outcome,
            e.error or "",
        )
        for e in entries
    )
    return Reply(
        text=f"{len(rows)} audit entr{'y' if len(rows) == 1 else 'ies'}" + (":" if rows else "."),
        table=Table(
            ("id", "time", "actor", "action", "target", "request", "outcome", "error"), rows
        ),
        data=[e.as_dict() for e in entries],
    )
