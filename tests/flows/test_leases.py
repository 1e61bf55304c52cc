"""Leases (bot/state/leases.py): one holder at a time, renewed by its holder, taken over when
it expires or (same host) at once when its process is gone, released on stop; the worker's
handover gives back exactly its own unfinished work."""

import os
import threading
from datetime import timedelta

from bot.state import handover, leases, liveness
from bot.state.leases import Keeper, Leases
from bot.state.store import Store
from tests.support.fixtures import make_config

OTHER_HOST = "replica-b:4242:1"


def _dead_owner() -> str:
    """An owner on this host whose process is gone (a pid nobody has)."""
    pid = next(p for p in range(4_000_000, 3_000_000, -1) if not os.path.exists(f"/proc/{p}"))
    return f"{liveness.this_process().rsplit(':', 2)[0]}:{pid}:12345"


def _store(tmp_path):
    return Store(make_config(tmp_path).database)


def test_leases_one_holder_renews_and_the_other_waits(tmp_path, clock):
    store = _store(tmp_path)
    a = Leases(store, owner=lambda: OTHER_HOST, clock=clock)
    b = Leases(store, clock=clock)
    assert a.take(leases.SWEEP)
    assert not b.take(leases.SWEEP)  # live, on another host
    clock.advance(seconds=15)
    assert a.take(leases.SWEEP)  # renewal by its holder
    clock.advance(seconds=15)
    assert not b.take(leases.SWEEP)  # renewed 15 s ago: 5 s left
    assert a.live()[leases.SWEEP].owner == OTHER_HOST


def test_leases_expired_holder_is_taken_over_after_the_ttl(tmp_path, clock):
    store = _store(tmp_path)
    a = Leases(store, owner=lambda: OTHER_HOST, clock=clock)
    b = Leases(store, clock=clock)
    assert a.take(leases.ARCHIVE)
    clock.advance(seconds=leases.TTL.total_seconds() + 0.5)
    assert b.take(leases.ARCHIVE)
    assert not a.renew(leases.ARCHIVE)  # the old holder learns it lost it
    assert not a.take(leases.ARCHIVE)
    assert b.live()[leases.ARCHIVE].owner == liveness.this_process()


def test_leases_dead_holder_on_this_host_is_taken_over_at_once(tmp_path, clock):
    store = _store(tmp_path)
    dead = Leases(store, owner=_dead_owner, clock=clock)
    assert dead.take(leases.DELIVERY)
    assert Leases(store, clock=clock).take(leases.DELIVERY)  # no wait: its pid is gone


def test_leases_release_frees_at_once_and_only_the_holders(tmp_path, clock):
    store = _store(tmp_path)
    a = Leases(store, owner=lambda: OTHER_HOST, clock=clock)
    b = Leases(store, clock=clock)
    assert a.take(leases.SWEEP)
    assert not b.release(leases.SWEEP)  # not b's to release
    assert a.release(leases.SWEEP)
    assert b.take(leases.SWEEP)


def test_leases_racing_takers_get_one_holder(tmp_path):
    """Eight threads, each its own owner and connection, race for a lease that expired (and
    for a free one): one wins, every round (the compare-and-set on owner and expiry)."""
    database = make_config(tmp_path).database
    setup = Store(database)
    for round_ in range(6):
        if round_ % 2:  # held by a replica that stopped renewing: expired
            Leases(setup, owner=lambda: OTHER_HOST, ttl=timedelta(seconds=-1)).take("race")
        else:
            setup.db.execute("delete from leases")
            setup.db.commit()
        barrier = threading.Barrier(8)
        won: list[str] = []

        def race(
            n: int, round_: int = round_, barrier: threading.Barrier = barrier, won: list = won
        ) -> None:
            store = Store(database)
            me = f"host-{n}:{n}:{round_}"
            barrier.wait()
            if Leases(store, owner=lambda: me).take("race"):
                won.append(me)
            store.close()

        threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1, won
        setup.db.execute("update leases set expires_at = '2000-01-01T00:00:00+00:00'")
        setup.db.commit()


def test_keeper_holds_gains_and_releases(tmp_path):
    store = _store(tmp_path)
    gained: list[str] = []
    other = Leases(store, owner=lambda: OTHER_HOST)
    assert other.take(leases.ARCHIVE)
    keeper = Keeper(Leases(store), on_gain=gained.append, every=0.05).start()
    try:
        assert keeper.held() == [leases.SWEEP, leases.DELIVERY]
        assert gained == [leases.SWEEP, leases.DELIVERY]
        assert other.release(leases.ARCHIVE)
        keeper.round()
        assert keeper.holds(leases.ARCHIVE) and gained[-1] == leases.ARCHIVE
        heartbeat = leases.process_lease(liveness.this_process())
        assert heartbeat in Leases(store).live()
    finally:
        keeper.stop()
    live = Leases(store).live()
    assert not set(leases.SINGLETONS) & set(live)  # released at once
    assert heartbeat in live  # a heartbeat is left to expire: it tells others we are gone
    assert not keeper.holds(leases.SWEEP)


def test_keeper_stops_believing_when_the_database_stops_answering(tmp_path, monkeypatch):
    store = _store(tmp_path)
    keeper = Keeper(Leases(store, ttl=timedelta(seconds=0.4)), every=10)
    keeper.round()
    assert keeper.holds(leases.SWEEP)

    def down(name: str) -> bool:
        raise OSError("database unreachable")

    monkeypatch.setattr(keeper.leases, "take", down)
    keeper.round()  # failed: the old renewal still counts, for half the TTL
    assert keeper.holds(leases.SWEEP)
    threading.Event().wait(0.25)
    assert not keeper.holds(leases.SWEEP)  # well before another replica may take it


def test_owner_gone_by_pid_or_expired_heartbeat(tmp_path, clock):
    store = _store(tmp_path)
    assert leases.owner_gone(store, _dead_owner(), now=clock())
    assert not leases.owner_gone(store, liveness.this_process(), now=clock())
    assert not leases.owner_gone(store, OTHER_HOST, now=clock())  # no heartbeat: unknown
    beat = Leases(store, owner=lambda: OTHER_HOST, clock=clock)
    assert beat.take(leases.process_lease(OTHER_HOST))
    assert not leases.owner_gone(store, OTHER_HOST, now=clock())
    clock.advance(seconds=leases.TTL.total_seconds() + 1)
    assert leases.owner_gone(store, OTHER_HOST, now=clock())
    assert leases.forget_heartbeats(store, before=clock()) == 1


def test_give_back_requeues_only_this_owners_jobs_and_requests(tmp_path, clock):
    store = _store(tmp_path)
    me = liveness.this_process()
    with store.transaction() as db:
        for key, owner in (("mine", me), ("theirs", OTHER_HOST)):
            db.execute(
                "insert into jobs (key, kind, payload, state, created_at, owner) "
                "values (?, 'command', '{}', 'running', ?, ?)",
                [key, clock().isoformat(), owner],
            )
    given = handover.give_back(store, owner=me)
    assert (given.jobs, given.requests) == (1, 0)
    states = dict(store.db.execute("select key, state from jobs").fetchall())
    assert states == {"mine": "queued", "theirs": "running"}
    assert not handover.give_back(store, owner=me)


def test_a_job_held_by_a_replica_on_another_host_is_requeued_once_its_heartbeat_expires(
    tmp_path, clock
):
    from bot.state.jobqueue import FOREIGN_LEASE, JobQueue

    store = _store(tmp_path)
    queue = JobQueue(store, clock=clock)
    assert Leases(store, owner=lambda: OTHER_HOST, clock=clock).take(
        leases.process_lease(OTHER_HOST)
    )
    with store.transaction() as db:
        db.execute(
            "insert into jobs (key, kind, payload, state, created_at, started_at, owner) "
            "values ('far', 'command', '{}', 'running', ?, ?, ?)",
            [clock().isoformat(), clock().isoformat(), OTHER_HOST],
        )
    assert queue.requeue_orphans() == 0  # alive: its heartbeat is fresh
    assert not handover.waiting(store, now=clock())
    clock.advance(seconds=leases.TTL.total_seconds() + 1)
    assert leases.TTL.total_seconds() + 1 < FOREIGN_LEASE.total_seconds()
    assert handover.waiting(store, now=clock())  # the sweep's holder sweeps now
    assert queue.requeue_orphans() == 1  # gone: not after FOREIGN_LEASE (10 min), now
    assert not handover.waiting(store, now=clock())  # nothing left for a taker
