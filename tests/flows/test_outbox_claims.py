"""Two deliverers on one outbox never send a row twice: the worker draining its last messages
after the service died while the restarted service's worker delivers (seen by the chaos test:
an outcome DMed twice with no SIGKILL near it), or two replicas on one database."""

import os
import threading

import pytest
from slack_sdk import WebClient

from bot.app import build_context
from bot.slack.delivery import DM, SlackDelivery
from bot.state import liveness
from bot.state.outbox import CLAIM_LEASE, Outbox
from bot.state.store import Store
from tests.support.fixtures import make_config

OTHER_HOST = "replica-b:4242:1"


def _dead_owner() -> str:
    """An owner on this host whose process is gone (a pid nobody has)."""
    pid = next(p for p in range(4_000_000, 3_000_000, -1) if not os.path.exists(f"/proc/{p}"))
    return f"{liveness.this_process().rsplit(':', 2)[0]}:{pid}:12345"


@pytest.fixture
def store_options(database):
    return database.options


def _outboxes(tmp_path, clock, options):
    config = make_config(tmp_path, **options)
    first = Outbox(Store(config.database), clock=clock, owner=lambda: OTHER_HOST)
    second = Outbox(Store(config.database), clock=clock)
    return first, second


def test_a_row_claimed_by_a_live_deliverer_is_left_to_it(tmp_path, clock, store_options):
    first, second = _outboxes(tmp_path, clock, store_options)
    first.put("dm:1", DM, {"user": "UA", "text": "hi"})
    [item] = first.due()
    assert first.claim(item)
    assert second.due() == []  # claimed by a deliverer that may be sending it right now
    assert not second.claim(item)  # read before the claim: the compare-and-set refuses
    first.sent(item)
    assert second.due() == [] and second.state_of("dm:1") == "sent"


def test_a_claim_whose_owner_died_or_outlived_its_lease_is_taken_over(
    tmp_path, clock, store_options
):
    first, second = _outboxes(tmp_path, clock, store_options)
    dead = Outbox(first._store, clock=clock, owner=_dead_owner)
    dead.put("dm:dead", DM, {"user": "UA", "text": "a"})
    assert dead.claim(dead.due()[0])
    [taken] = second.due()  # its owner is gone (same host): at once
    assert taken.key == "dm:dead" and second.claim(taken)
    second.retry(taken, after=0, error="test")  # released: anyone may take it

    first.put("dm:foreign", DM, {"user": "UA", "text": "b"})
    item = next(i for i in first.due() if i.key == "dm:foreign")
    assert first.claim(item)
    assert "dm:foreign" not in [i.key for i in second.due()]  # another host: the lease holds
    clock.advance(seconds=CLAIM_LEASE.total_seconds() + 1)
    [late] = [i for i in second.due() if i.key == "dm:foreign"]
    assert second.claim(late)


def test_two_deliverers_racing_over_one_outbox_post_each_message_once(
    tmp_path, fake_slack, store_options
):
    config = make_config(tmp_path, **store_options)
    ctx = build_context(config)
    stores = [Store(config.database) for _ in range(2)]
    owners = [OTHER_HOST, liveness.this_process()]
    deliverers = [
        SlackDelivery(
            ctx,
            WebClient(token="xoxb-test", base_url=fake_slack.api_url),
            Outbox(store, owner=lambda o=owner: o),
        )
        for store, owner in zip(stores, owners, strict=True)
    ]
    for n in range(150):
        ctx.outbox.put(f"dm:{n}", DM, {"user": "UALICE", "text": f"message {n}"})
    start = threading.Barrier(2)

    def drain(delivery):
        start.wait()
        while delivery.deliver_due():
            pass

    threads = [threading.Thread(target=drain, args=(d,)) for d in deliverers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    texts = [c["text"] for c in fake_slack.calls_to("chat.postMessage")]
    assert sorted(texts) == sorted(f"message {n}" for n in range(150))
    assert ctx.outbox.pending() == 0


def test_without_the_delivery_lease_only_unordered_rows_are_delivered(tmp_path, fake_slack):
    """Two replicas: the one not holding the `delivery` lease sends command replies, refusals
    and DMs (each the only message to its destination) at once, and leaves a request's card,
    its thread lines and App Home redraws to the holder, which sends them in order."""
    from bot.slack.delivery import RESPOND
    from bot.state import announce

    config = make_config(tmp_path)
    ctx = build_context(config)
    published: list[str] = []
    delivery = SlackDelivery(
        ctx,
        WebClient(token="xoxb-test", base_url=fake_slack.api_url),
        Outbox(Store(config.database)),
        publish_home=published.append,
    )
    delivery.ordered = lambda: False
    ctx.outbox.put("home:1", announce.HOME, {"user": "UALICE"})
    ctx.outbox.put("dm:1", DM, {"user": "UALICE", "text": "hello"})
    url = fake_slack.response_url("r1")
    ctx.outbox.put("reply:1", RESPOND, {"url": url, "message": {"text": "done"}})
    assert delivery.deliver_due() == 2
    assert [c["text"] for c in fake_slack.calls_to("chat.postMessage")] == ["hello"]
    assert [c["text"] for c in fake_slack.calls_to("response_url:r1")] == ["done"]
    assert published == [] and ctx.outbox.state_of("home:1") == "pending"
    attempts = ctx.store.db.execute("select attempts from outbox where key = 'home:1'").fetchone()
    assert attempts == (0,)  # not even claimed
    delivery.ordered = lambda: True  # the lease was taken over
    assert delivery.deliver_due() == 1
    assert published == ["UALICE"] and ctx.outbox.state_of("home:1") == "sent"


def test_the_archive_shipper_ships_only_while_allowed():
    from bot.ops.archive import Shipper

    class Archive:
        shipped = 0

        def ship(self) -> None:
            Archive.shipped += 1

    allowed = threading.Event()
    shipper = Shipper(Archive(), interval=0.02, allowed=allowed.is_set).start()
    try:
        threading.Event().wait(0.2)
        assert Archive.shipped == 0  # another replica holds the archive lease
        allowed.set()
        deadline = threading.Event()
        for _ in range(100):
            if Archive.shipped:
                break
            deadline.wait(0.02)
        assert Archive.shipped >= 1
    finally:
        shipper.stop()


def test_a_claim_by_a_replica_on_another_host_whose_heartbeat_expired_is_taken_over(
    tmp_path, clock, store_options
):
    """A replica lost with a message on its way: once its heartbeat lease has expired (20 s),
    the other replica takes the row over, without waiting out the claim's 60 s."""
    from bot.state.leases import TTL, Leases, process_lease

    first, second = _outboxes(tmp_path, clock, store_options)
    Leases(first._store, owner=lambda: OTHER_HOST, clock=clock).take(process_lease(OTHER_HOST))
    first.put("dm:lost", DM, {"user": "UA", "text": "c"})
    assert first.claim(first.due()[0])
    assert second.due() == []  # its heartbeat is fresh: it may be sending it now
    clock.advance(seconds=TTL.total_seconds() + 1)
    assert TTL.total_seconds() + 1 < CLAIM_LEASE.total_seconds()
    [taken] = second.due()
    assert taken.key == "dm:lost" and second.claim(taken)
