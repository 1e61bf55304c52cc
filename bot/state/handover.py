"""What a stopping worker gives back, so that another replica takes it over at once.

After SIGTERM the worker finishes the jobs it can within its grace; a purge stops at an item
boundary (bot/kernel/shutdown.py). Until now what it left was found by the next process on the
same host (its pid is gone) or, on another host, after FOREIGN_LEASE (10 minutes). With two
replicas the other one is already running: the stopping worker, once none of its threads runs
anything any more, puts its unfinished jobs back in the queue and drops its ownership of the
requests it was executing, and the other replica's worker claims them within seconds.

Only rows that name this process as their owner are touched (compare-and-set on the owner),
and only after its job threads have ended: nothing given back can still be running here, so
nothing runs twice. A request whose DELETE may still land keeps its `exec_retry_after`: the
taker waits for it as after a crash (bot/state/recovery.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.state.leases import owner_gone
from bot.state.store import Store, iso


@dataclass(frozen=True)
class GivenBack:
    jobs: int  # jobs put back in the queue
    requests: int  # `executing` requests left for another replica's recovery

    def __bool__(self) -> bool:
        return bool(self.jobs or self.requests)


def give_back(store: Store, *, owner: str) -> GivenBack:
    """Requeue ``owner``'s running jobs and release its executing requests."""
    with store.transaction() as db:
        jobs = db.execute(
            "update jobs set state = 'queued', owner = null where state = 'running' and owner = ?",
            [owner],
        ).rowcount
        requests = db.execute(
            "update requests set exec_owner = null where state = 'executing' and exec_owner = ?",
            [owner],
        ).rowcount
    return GivenBack(jobs=jobs, requests=requests)


def waiting(store: Store, *, now: datetime) -> bool:
    """Whether work waits for a taker: an executing request given back (or whose unanswered
    DELETE's grace is over), or a request or job whose owner is gone (bot/state/leases.py
    ``owner_gone``). The sweep's holder then sweeps now, not at its interval (60 s)."""
    row = store.db.execute(
        "select 1 from requests where state = 'executing' and exec_owner is null "
        "and (exec_retry_after is null or exec_retry_after <= ?) limit 1",
        [iso(now)],
    ).fetchone()
    if row is not None:
        return True
    owners = store.db.execute(
        "select exec_owner from requests where state = 'executing' and exec_owner is not null "
        "union select owner from jobs where state = 'running' and owner is not null"
    ).fetchall()
    return any(owner_gone(store, owner, now=now) for (owner,) in owners)
