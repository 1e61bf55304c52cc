"""Two real `acrbot serve` replicas on one database (issue 20): approvals raced across them,
the replica running a purge SIGKILLed or stopped, a rolling restart under a stream of
commands, lease takeover, and Socket Mode with one connection per replica.

The database comes from ONE fixture, `replica_database` (tests/support/fixtures.py): a SQLite
file shared in WAL mode today; a PostgreSQL URL there runs every test here on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from bot.state.leases import ARCHIVE, DELIVERY, RENEW_EVERY, SWEEP
from tests.support.fault_proxy import FaultProxy
from tests.support.helpers import wait_until
from tests.support.rolling import RollingLoad
from tests.support.served import ServedBot

USERS = {"UALICE": "contributor", "UBOB": "owner", "UERIN": "owner", "UCAROL": "reader"}
NOTE = ":hourglass_flowing_sand:"
STOP_WITHIN = 25.0  # seconds from SIGTERM to exit (the grace is 30 s)


@pytest.fixture
def proxy(distribution):
    proxy = FaultProxy(distribution.url).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def replicas(tmp_path, fake_slack, proxy, replica_database):
    """``replicas(2)``: that many `acrbot serve` on one database, started; closed at the end."""
    made: list[ServedBot] = []

    def make(count: int = 2, **options) -> list[ServedBot]:
        for _ in range(count):
            bot = ServedBot(
                tmp_path / f"replica-{len(made)}",
                fake_slack,
                registry_url=proxy.url,
                users=USERS if not made else {},  # one database: granted once
                database=replica_database,
                name=f"r{len(made)}",
                **options,
            )
            made.append(bot)
        for bot in made[-count:]:
            bot.start()
        return made[-count:]

    yield make
    for bot in made:
        bot.close()


def deletes(proxy) -> list[str]:
    """The path of every DELETE the registry itself answered."""
    return [p for m, p, s in proxy.upstream_statuses if m == "DELETE"]


def answers(fake, name: str) -> list[str]:
    """What a command's response_url received, "still working" notes aside."""
    return [c.get("text", "") for c in fake.calls_to(f"response_url:{name}") if NOTE not in str(c)]


def holders(bot: ServedBot) -> dict[str, str]:
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    rows = bot.query("select name, owner, expires_at from leases")
    return {name: owner for name, owner, expires in rows if expires[:19] > now}


def holder_of(name: str, bots: list[ServedBot]) -> ServedBot | None:
    owner = holders(bots[0]).get(name)
    return next((bot for bot in bots if bot.owns(owner)), None)


def card_ts(bot: ServedBot, request_id: int) -> str | None:
    rows = bot.query("select ts from cards where request_id = ?", [request_id])
    return rows[0][0] if rows else None


def test_approvals_raced_across_two_replicas_delete_each_image_once(
    replicas, fake_slack, proxy, distribution
):
    """Both owners approve each request at the same moment, on different replicas, by button
    and by command: every request executes once, and the registry sees one DELETE each."""
    a, b = replicas(2)
    digests = {i: distribution.push(f"race{i}/web", "1.0") for i in range(1, 5)}
    for i in digests:
        made = a.command("UALICE", f"delete race{i}/web:1.0 --manifest --reason old")
        assert made.status == 200
    cards = {i: wait_until(lambda i=i: card_ts(a, i), what=f"card {i}") for i in digests}
    sent, commands = [], []

    def click(bot, user, i):
        sent.append(bot.click(user, "acr_approve", str(i), message_ts=cards[i]))

    def command(bot, user, i):
        commands.append(bot.command(user, f"approve {i}"))
        sent.append(commands[-1])

    threads = [
        threading.Thread(target=action, args=(bot, user, i))
        for i in digests
        for action, bot, user in (
            (click, a, "UBOB"),
            (click, b, "UERIN"),
            (command, b, "UBOB"),
            (command, a, "UERIN"),
        )
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [s.status for s in sent] == [200] * len(sent)
    wait_until(
        lambda: set(a.request_states().values()) == {"done"}, timeout=60, what="all requests done"
    )
    assert sorted(deletes(proxy)) == sorted(
        f"/v2/race{i}/web/manifests/{digest}" for i, digest in digests.items()
    )
    # Each approval command is answered once, wherever it ran (a click redraws the card).
    for s in commands:
        wait_until(lambda s=s: answers(fake_slack, s.name), timeout=30, what=f"answer {s.name}")
    time.sleep(1.0)
    said = {s.name: answers(fake_slack, s.name) for s in commands}
    assert {name: texts for name, texts in said.items() if len(texts) != 1} == {}
    verify = a.acrbot("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _purge(bot: ServedBot, distribution, proxy, repo: str, count: int) -> int:
    """Seed ``count`` images, ask for their purge; the request's id."""
    distribution.seed_images(repo, count, tag=lambda i: f"p{i}")
    made = bot.command("UALICE", f"purge --filter '{repo}:.*' --reason cleanup")
    assert made.status == 200
    request = wait_until(
        lambda: bot.query("select id from requests where state = 'pending'"), what="the request"
    )[0][0]
    return request


def _executor(bots: list[ServedBot], request: int) -> ServedBot:
    def find():
        rows = bots[0].query("select exec_owner from requests where id = ?", [request])
        return next((bot for bot in bots if rows and bot.owns(rows[0][0])), None)

    return wait_until(find, what="the replica executing the purge")


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_the_replica_running_a_purge_dies_or_stops_and_the_other_finishes_it(
    how, replicas, fake_slack, proxy, distribution
):
    """SIGKILL (a node lost) or SIGTERM (a deploy) of the replica executing a purge: the other
    replica finishes it, and every manifest receives exactly one DELETE. A SIGTERMed replica
    exits 0 within 25 s, having given the purge back at once."""
    bots = replicas(2)
    count = 40
    repo = f"ha-{how}/app"
    request = _purge(bots[0], distribution, proxy, repo, count)
    proxy.delay_response("DELETE", 0.3)  # each DELETE lands at once and answers late
    assert bots[1].command("UBOB", f"approve {request}").status == 200
    runner = _executor(bots, request)
    other = next(bot for bot in bots if bot is not runner)
    wait_until(lambda: len(deletes(proxy)) >= 5, timeout=30, what="the purge under way")
    began = time.monotonic()
    assert len(deletes(proxy)) < count - 10, "the purge is too fast for this test: slow it"
    stopped: list[tuple[int | None, float]] = []
    if how == "sigkill":
        runner.kill()
    else:  # the runner drains (acks for 5 s more) while the other takes the purge over
        stopping = threading.Thread(
            target=lambda: stopped.append(
                (runner.stop(timeout=STOP_WITHIN + 5), time.monotonic() - began)
            )
        )
        stopping.start()
    proxy.clear()
    wait_until(lambda: other.request_states()[request] == "done", timeout=60, what="purge finished")
    took = time.monotonic() - began
    paths = deletes(proxy)
    assert len(paths) == len(set(paths)) == count  # every manifest deleted exactly once
    finished_by = other.query("select exec_owner from requests where id = ?", [request])[0][0]
    assert finished_by is None or other.owns(finished_by) or not runner.owns(finished_by)
    # SIGKILL on the same host: the pid is gone, found at the sweep holder's next look (2 s)
    # or lease round (5 s). SIGTERM: given back, the same. Either way well inside 30 s,
    # plus the grace of a DELETE that may have been in flight (2 × timeout + 5 s).
    assert took < 30, took
    if how == "sigterm":
        stopping.join(STOP_WITHIN + 10)
        [(code, exited)] = stopped
        assert code == 0 and exited < STOP_WITHIN, (code, exited, runner.log)
        assert "gave back 1 unfinished job(s) and 1 executing request(s)" in runner.log
    verify = other.acrbot("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_rolling_restart_under_a_stream_of_commands_answers_every_acked_command_once(
    replicas, fake_slack, proxy, distribution
):
    """What a Deployment's RollingUpdate does: SIGTERM one replica, start it again, then the
    other, while commands arrive (routed, as a Service does, to a replica whose /readyz says
    200). Every command is acked, and answered exactly once; each replica exits 0 in 25 s."""
    bots = replicas(2)
    distribution.push("roll/web", "1.0")
    load = RollingLoad(
        bots,
        fake_slack,
        rate=10,
        duration=24,
        commands=(
            ("UCAROL", "tags roll/web"),
            ("UCAROL", "tags roll/web"),
            ("UALICE", "delete roll/web:1.0 --manifest --reason roll"),
        ),
    )
    counts = load.run()
    print("\n".join(counts.lines()))
    assert counts.problems() == []
    assert all(code == 0 and took < STOP_WITHIN for code, took in counts.stops), counts.stops
    assert len(counts.stops) == 2 and counts.acked >= 150
    jobs = dict(bots[0].query("select state, count(*) from jobs group by state"))
    assert set(jobs) == {"done"}, jobs


def test_a_lease_is_taken_over_when_its_holder_is_killed_and_handed_over_on_sigterm(replicas):
    """One replica holds each singleton; SIGKILL of the holder: the other takes it at its next
    renewal (same host: the pid is gone), well inside 30 s; SIGTERM: released at once and
    taken at the other's next renewal."""
    bots = replicas(2)
    wait_until(lambda: all(holder_of(n, bots) for n in (SWEEP, ARCHIVE, DELIVERY)))
    holder = holder_of(SWEEP, bots)
    other = next(bot for bot in bots if bot is not holder)
    holder.kill()
    killed = time.monotonic()
    wait_until(lambda: holder_of(SWEEP, [other]), timeout=30, what="the sweep taken over")
    assert time.monotonic() - killed < RENEW_EVERY + 3
    wait_until(lambda: all(holder_of(n, [other]) for n in (ARCHIVE, DELIVERY)), timeout=10)
    holder.start()  # back, holding nothing (the other holds every lease)
    assert all(holder_of(n, bots) is other for n in (SWEEP, ARCHIVE, DELIVERY))
    status, body = other.get("/metrics")
    assert status == 200 and 'acrbot_lease_held{lease="sweep"} 1.0' in body
    assert 'acrbot_lease_held{lease="sweep"} 0.0' in holder.get("/metrics")[1]
    began = time.monotonic()
    assert other.stop(timeout=STOP_WITHIN + 5) == 0
    wait_until(lambda: holder_of(SWEEP, [holder]), timeout=30, what="the sweep handed over")
    assert time.monotonic() - began < STOP_WITHIN + RENEW_EVERY + 3


def slash(fake, name: str) -> dict:
    """A slash command's payload as Socket Mode carries it (`tags sm/web` by a reader)."""
    return {
        "token": "legacy",
        "team_id": "T0001",
        "channel_id": "C0CHAN",
        "user_id": "UCAROL",
        "command": "/acr",
        "text": "tags sm/web",
        "api_app_id": "A0001",
        "response_url": fake.response_url(name),
        "trigger_id": f"trigger-{name}",
    }


def test_socket_mode_two_replicas_each_event_goes_to_one_connection_and_is_answered_once(
    tmp_path, fake_slack, proxy, distribution, replica_database
):
    """Slack delivers each envelope to one of the app's open connections: with two replicas,
    each opens one (two for a moment while it replaces one), and every command is acked
    once and answered once whichever replica got it."""
    from tests.support.fake_socket_mode import FakeSocketMode

    ws = FakeSocketMode(spread=True).start().attach(fake_slack)
    bots = []
    try:
        for n in range(2):
            bots.append(
                ServedBot(
                    tmp_path / f"sm{n}",
                    fake_slack,
                    registry_url=proxy.url,
                    users=USERS if n == 0 else {},
                    database=replica_database,
                    name=f"sm{n}",
                    socket_mode=True,
                ).start()
            )
        ws.wait_connections(2, timeout=30)
        assert ws.connections == 2  # one per replica
        distribution.push("sm/web", "1.0")
        envelopes = {}
        for n in range(20):
            name = f"smcmd{n}"
            envelopes[name] = ws.send("slash_commands", slash(fake_slack, name))
        for envelope in envelopes.values():
            ws.wait_ack(envelope, timeout=10)
        delivered = Counter(ws.delivered_to[e] for e in envelopes.values())
        assert sum(delivered.values()) == 20 and len(delivered) == 2, delivered
        for name in envelopes:
            wait_until(lambda name=name: answers(fake_slack, name), timeout=30, what=name)
        time.sleep(1.0)
        assert {name: len(answers(fake_slack, name)) for name in envelopes} == dict.fromkeys(
            envelopes, 1
        )
        assert ws.connections == 2  # still one per replica (Slack allows 10 per app)
        # A deploy: SIGTERM one replica. It closes its connection and exits 0 within 25 s;
        # from then on Slack delivers to the other, which answers everything.
        began = time.monotonic()
        assert bots[0].stop(timeout=STOP_WITHIN + 5) == 0, bots[0].log
        assert time.monotonic() - began < STOP_WITHIN
        closed = [c for c in ws.history if c.closed_at is not None]
        assert [c.closed_by for c in closed] == ["client"] and len(ws.deliverable()) == 1
        later = {}
        for n in range(5):
            name = f"smlate{n}"
            later[name] = ws.send("slash_commands", slash(fake_slack, name))
        for name, envelope in later.items():
            ws.wait_ack(envelope, timeout=10)
            wait_until(lambda name=name: answers(fake_slack, name), timeout=30, what=name)
    finally:
        for bot in bots:
            bot.close()
        ws.stop()


def test_chaos_with_two_replicas_keeps_every_promise(
    tmp_path, fake_slack, distribution, replica_database
):
    """The chaos run (tests/support/chaos.py) on two replicas: commands, clicks and replays
    spread over both, SIGKILLs of either's worker or whole service, Slack and registry
    faults; every acked command answered once, each approved DELETE sent once, replays on the
    other replica without effect, the audit chain intact."""
    from tests.support.chaos import Chaos, ChaosOptions

    options = ChaosOptions(duration=30, seed=20, replicas=2, database=replica_database)
    counts = Chaos(tmp_path, fake_slack, distribution, options).run()
    print("\n".join(counts.lines()))
    assert counts.problems() == []
    assert counts.worker_kills >= 2 and counts.service_kills >= 1
    assert counts.acked >= 50 and counts.states.get("done", 0) >= 3
    assert counts.replays >= 20 and counts.verify_runs >= 5
