"""Jobs on one database from several processes (replicas): each job is claimed once, a
Slack retry or replay arriving at another replica is recognised; on both engines (SQLite;
PostgreSQL, marked `postgres`: claims there take `FOR UPDATE SKIP LOCKED`)."""

from __future__ import annotations

import threading
from collections import Counter

from bot.state.jobqueue import JobQueue


def test_jobs_claimed_from_several_connections_run_once(database):
    stores = [database.store(), database.store()]
    queues = [JobQueue(store) for store in stores]
    for n in range(200):
        queues[n % 2].enqueue(f"trigger:{n}", "command", {"n": n})
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def claim(queue: JobQueue) -> None:
        start.wait()
        while jobs := queue.claim(limit=7):
            with lock:
                claimed.extend(job.key for job in jobs)

    threads = [threading.Thread(target=claim, args=(q,)) for q in queues for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    twice = [key for key, n in Counter(claimed).items() if n > 1]
    assert twice == []
    assert len(claimed) == 200
    assert queues[0].counts() == {"running": 200}


def test_a_replayed_delivery_at_another_replica_is_a_duplicate(database):
    first, second = JobQueue(database.store()), JobQueue(database.store())
    assert first.enqueue("event:Ev1", "command", {"text": "tags"})
    assert not second.enqueue("event:Ev1", "command", {"text": "tags"})
    [job] = second.claim()
    second.finish(job.key, "ok")
    assert not first.enqueue("event:Ev1", "command", {"text": "tags"})  # after it ran, too
    assert first.claim() == []
