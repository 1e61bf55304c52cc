"""Leases: work that must run on one replica at a time, and who runs it now.

Two `acrbot serve` replicas on one database both run jobs, but a few things must run in one
place only: the sweep (expiry, crash recovery, the retention scheduler, requeueing a dead
worker's jobs), the audit archive shipper (one writer per append blob), and the ordered part of
the outbox delivery (a request's card, its thread lines, App Home views). Each is a row in
`leases`: its name, its owner (bot/state/liveness.py's `host:pid:start`) and when it expires.

Taking, renewing and releasing are single compare-and-set statements (portable SQL: the same
text runs on SQLite and PostgreSQL), so two replicas can never both believe they hold a lease.
A holder renews every RENEW_EVERY seconds; a lease not renewed for TTL seconds is free. So a
dead holder's lease is taken over within TTL + RENEW_EVERY (25 s, inside the 30 s promised),
and at once by a replica on the same host when the holder's pid is gone. A stopping replica
releases its leases (`release_all`): the other takes them at its next renewal.

Why a table rather than PostgreSQL's advisory locks: one mechanism for both engines, visible to
`acrbot doctor` and `/metrics` (who holds what, until when), and no session to keep open.
Expiry compares the holder's clock with the taker's: keep the hosts' clocks in sync (NTP);
a skew of a few seconds only shortens or lengthens a takeover by as much.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.state import liveness
from bot.state.store import Store, from_iso, iso

log = logging.getLogger(__name__)

SWEEP = "sweep"  # expiry, recovery, retention, requeueing orphaned jobs, pruning
ARCHIVE = "archive"  # the audit archive shipper
DELIVERY = "delivery"  # the outbox rows whose order matters (bot/slack/delivery.py)
SINGLETONS = (SWEEP, ARCHIVE, DELIVERY)
PROCESS = "process:"  # + owner: each worker's heartbeat, so another host can tell it died

TTL = timedelta(seconds=20)
RENEW_EVERY = 5.0  # seconds; a lease is renewed 4 times per TTL


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Lease:
    name: str
    owner: str
    expires_at: datetime
    taken_at: datetime


class Leases:
    """The `leases` table. ``owner`` is a callable (a spawned worker is another owner)."""

    def __init__(
        self,
        store: Store,
        *,
        owner: Callable[[], str] = liveness.this_process,
        clock: Callable[[], datetime] = _now,
        ttl: timedelta = TTL,
    ) -> None:
        self._store = store
        self._owner = self.owner = owner
        self._clock = clock
        self.ttl = ttl

    def take(self, name: str) -> bool:
        """Take ``name`` if it is free, expired, held by a dead process on this host, or ours
        already (then this renews it). True if we hold it now."""
        me, now = self._owner(), self._clock()
        until = iso(now + self.ttl)
        with self._store.transaction() as db:
            inserted = db.execute(
                "insert into leases (name, owner, expires_at, taken_at) values (?, ?, ?, ?) "
                "on conflict (name) do nothing",
                [name, me, until, iso(now)],
            ).rowcount
            if inserted == 1:
                return True
            row = db.execute(
                "select owner, expires_at from leases where name = ?", [name]
            ).fetchone()
            if row is None:
                return False  # released between the two statements: next round
            holder, expires = row
            if holder == me:  # ours: renew it
                return (
                    db.execute(
                        "update leases set expires_at = ? where name = ? and owner = ?",
                        [until, name, me],
                    ).rowcount
                    == 1
                )
            if from_iso(expires) > now and (
                not liveness.on_this_host(holder) or liveness.alive(holder)
            ):
                return False
            # Expired, or its holder's pid is gone: take it unless someone did meanwhile.
            taken = db.execute(
                "update leases set owner = ?, expires_at = ?, taken_at = ? "
                "where name = ? and owner = ? and expires_at = ?",
                [me, until, iso(now), name, holder, expires],
            ).rowcount
        if taken == 1:
            log.warning("took over the %s lease from %s", name, holder)
        return taken == 1

    def renew(self, name: str) -> bool:
        """Push our lease's expiry on; False if it is not ours any more."""
        until = iso(self._clock() + self.ttl)
        with self._store.transaction() as db:
            return (
                db.execute(
                    "update leases set expires_at = ? where name = ? and owner = ?",
                    [until, name, self._owner()],
                ).rowcount
                == 1
            )

    def release(self, name: str) -> bool:
        """Give ``name`` up at once (only if ours): the other replica takes it at its next
        renewal instead of waiting for it to expire."""
        with self._store.transaction() as db:
            return (
                db.execute(
                    "delete from leases where name = ? and owner = ?", [name, self._owner()]
                ).rowcount
                == 1
            )

    def holders(self) -> list[Lease]:
        """Every lease row, live or expired (doctor and /metrics say which)."""
        rows = self._store.db.execute(
            "select name, owner, expires_at, taken_at from leases order by name"
        ).fetchall()
        return [Lease(n, o, from_iso(e), from_iso(t)) for n, o, e, t in rows]

    def live(self) -> dict[str, Lease]:
        """The leases held now, by name."""
        now = self._clock()
        return {lease.name: lease for lease in self.holders() if lease.expires_at > now}


def process_lease(owner: str) -> str:
    return PROCESS + owner


def owner_gone(store: Store, owner: str, *, now: datetime) -> bool:
    """Whether the process ``owner`` has certainly stopped: on this host, its pid is gone; on
    another, its heartbeat lease has expired (it renewed it every RENEW_EVERY seconds while it
    ran). False when it cannot be told (an owner without a heartbeat: `acrbot run`, an older
    version): the caller then judges by the age of the work, as before."""
    if liveness.on_this_host(owner):
        return not liveness.alive(owner)
    row = store.db.execute(
        "select expires_at from leases where name = ?", [process_lease(owner)]
    ).fetchone()
    return row is not None and from_iso(row[0]) <= now


def forget_heartbeats(store: Store, *, before: datetime) -> int:
    """Drop the heartbeats of processes gone since before ``before`` (the sweep, daily)."""
    with store.transaction() as db:
        return db.execute(
            "delete from leases where name like ? and expires_at < ?", [PROCESS + "%", iso(before)]
        ).rowcount


class Keeper:
    """Takes and keeps some leases from a thread of its own: every RENEW_EVERY seconds it
    renews those it holds and tries those it does not. ``on_gain(name)`` is called when one
    is taken (e.g. to sweep at once after a takeover). It also keeps this process's
    heartbeat (`process:OWNER`), which it never releases: when the process is gone, the
    heartbeat expires and tells replicas on other hosts so (``owner_gone``).

    ``holds(name)`` is what the singleton asks before each round of work. It turns False as
    soon as a renewal fails, and also when no renewal has succeeded for half the TTL (a
    database that stopped answering): the other replica may take the lease after a whole
    TTL, so this one has stopped well before that.
    """

    def __init__(
        self,
        leases: Leases,
        names: Iterable[str] = SINGLETONS,
        *,
        every: float = RENEW_EVERY,
        on_gain: Callable[[str], None] | None = None,
    ) -> None:
        self.leases = leases
        self.names = tuple(names)
        self._heartbeat = process_lease(leases.owner())
        self._every = every
        self._on_gain = on_gain
        self._held: dict[str, float] = {}  # name → monotonic time of the last good renewal
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holds(self, name: str) -> bool:
        with self._lock:
            renewed = self._held.get(name)
        fresh = self.leases.ttl.total_seconds() / 2
        return renewed is not None and time.monotonic() - renewed < fresh

    def held(self) -> list[str]:
        return [name for name in self.names if self.holds(name)]

    def round(self) -> list[str]:
        """Renew or take each lease once; return those gained in this round."""
        gained = []
        with contextlib.suppress(Exception):  # logged below for the singletons; it just ages
            self.leases.take(self._heartbeat)
        for name in self.names:
            try:
                ok = self.leases.take(name)
            except Exception as exc:  # the database is down: keep the old time, it ages out
                log.warning("could not renew the %s lease: %s", name, type(exc).__name__)
                continue
            with self._lock:
                had = name in self._held
                if ok:
                    self._held[name] = time.monotonic()
                else:
                    self._held.pop(name, None)
            if ok and not had:
                gained.append(name)
                log.info("holding the %s lease", name)
            elif had and not ok:
                log.warning("lost the %s lease", name)
        for name in gained:
            if self._on_gain is not None:
                self._on_gain(name)
        return gained

    def start(self) -> Keeper:
        self.round()

        def loop() -> None:
            while not self._stop.wait(self._every):
                self.round()

        self._thread = threading.Thread(target=loop, name="acr-leases", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, release: Iterable[str] = SINGLETONS) -> None:
        """Stop renewing; release ``release`` at once (the others with ``release_all``, once
        their work has ended: they stay held for at most half the TTL meanwhile)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._every + 5)
        self._release(release)

    def release_all(self) -> None:
        self._release(self.names)

    def _release(self, names: Iterable[str]) -> None:
        with self._lock:
            mine = [name for name in names if self._held.pop(name, None) is not None]
        for name in mine:
            try:
                self.leases.release(name)
                log.info("released the %s lease", name)
            except Exception as exc:  # it expires by itself within TTL
                log.warning("could not release the %s lease: %s", name, type(exc).__name__)
