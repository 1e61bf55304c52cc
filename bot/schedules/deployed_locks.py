"""`[[deployed]] lock_schedule`: the running bot runs `lock --deployed` on a schedule, so that
what runs stays locked against a purge run outside the bot (an `acr purge` task), as the
nightly lock jobs teams write by hand do.

At each sweep, a source whose latest schedule slot has not been taken by this process locks
every digest in use on each ACR registry it covers (bot and sources read afresh). Locking is
idempotent, so a slot taken again after a restart costs PATCHes, never harm; each run is
audited (`lock.deployed` per digest, `lock.deployed.schedule` per run).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from croniter import croniter

from bot.core.errors import UserError
from bot.kernel.context import Context
from handlers.deployed import lock_in_use

log = logging.getLogger(__name__)
CATCH_UP = timedelta(hours=1)  # a slot older than this is skipped (the next one comes)
_TAKEN: dict[str, datetime] = {}
_LOCK = threading.Lock()


def run_due_locks(ctx: Context) -> list[str]:
    """Take every source's due slot; one line per registry locked (for logs and tests)."""
    done = []
    now = ctx.clock()
    for source in ctx.config.deployed:
        if not source.lock_schedule:
            continue
        slot = croniter(source.lock_schedule, now).get_prev(datetime)
        with _LOCK:
            if now - slot > CATCH_UP or _TAKEN.get(source.name) == slot:
                continue
            _TAKEN[source.name] = slot
        for registry in ctx.registries:
            if not registry.can_lock or not source.covers(registry.name):
                continue
            actor = f"deployed:{source.name}"
            try:
                result = lock_in_use(ctx, registry, actor=actor)
                line = f"{len(result.locked)} locked" + (
                    f"; {'; '.join(result.failures)}" if result.failures else ""
                )
                outcome = "ok" if not result.failures and not result.failed else "failed"
            except UserError as exc:
                line, outcome = str(exc), "failed"
            ctx.audit.append(
                actor=actor,
                action="lock.deployed.schedule",
                target=f"{registry.name} @ {slot.isoformat()}",
                outcome=outcome,
                error=None if outcome == "ok" else line,
                at=now,
            )
            log.info("lock --deployed %s on %s: %s", source.name, registry.name, line)
            done.append(f"{source.name} {registry.name}: {line}")
    return done
