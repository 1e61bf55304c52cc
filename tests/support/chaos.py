"""Chaos against a real `acrbot serve`: a burst of signed commands while its worker and the whole
service are SIGKILLed at random moments, the fake Slack answers 429/500, and the registry
behind the fault proxy is slow or fails; then it counts what the issue promises.

Used by tests/servers/test_chaos.py (about a minute) and bench/chaos.py (as long as you like):

    counts = Chaos(root, fake, distribution, ChaosOptions(duration=30, seed=7)).run()
    counts.problems()  # [] when every promise held

What is counted, after the faults stop and the bot has settled:
- every command Slack got an ack for is answered exactly once on its response_url (a
  "still working" note aside); a command that got no ack (the service was down) was told by
  Slack that it failed, and is counted apart (it may still have been answered: the job was
  recorded before the ack);
- every approved deletion reached the registry exactly once (the DELETEs the registry itself
  answered, per digest) and its recorded state matches the registry: `done` ↔ the image is
  gone, every other state ↔ it is still there; its outcome went to its thread once and to its
  requester once;
- replayed signed bodies (the same bytes, signature and all, after restarts) changed nothing:
  no second answer, no job, no role given back after its revoke;
- `acrbot audit verify` run every few seconds while the faults go on, and at the end, is clean.

With ``replicas=2`` (issue 20) two `acrbot serve` share one database: each command, click and
replay goes to a random replica that is up, each kill to a random replica, and the same counts
must hold across them (a replay on the other replica included).

Two longer faults can be added (issue 18): the database locked by another process for 5 s
(`BEGIN IMMEDIATE`, as an operator's sqlite3 or a VACUUM would), and Slack refusing the bot
token for 30 s (`token_revoked` on every Web API method). Then also:
- every ack arrives within Slack's 3 s; a command acked with "busy"/"cannot record" (or
  Bolt's refusal while its auth.test fails) was not recorded, and is never answered later;
- nothing is lost while the token is refused: no outbox row fails for it, and every card,
  thread line and DM goes out once after the token works again. (The service is not killed
  while the token is refused: `acrbot serve` refuses to start with a refused token.)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.slack import listeners
from tests.support.distribution import Distribution
from tests.support.fake_slack import ApiCall, FakeSlack
from tests.support.fault_proxy import FaultProxy
from tests.support.helpers import wait_until
from tests.support.served import Sent, ServedBot

USERS = {
    "UALICE": "contributor",
    "UDAN": "contributor",
    "UBOB": "owner",
    "UERIN": "owner",
    "UCAROL": "reader",
}
REQUESTERS = ("UALICE", "UDAN")
APPROVERS = ("UBOB", "UERIN")
NOTE = ":hourglass_flowing_sand:"
IN_FLIGHT = 1.0  # seconds: a request sent before a SIGKILL may reach the fake this much later


@dataclass
class ChaosOptions:
    duration: float = 30.0  # seconds of commands and faults
    seed: int = 1
    images: int = 30
    pace: tuple[float, float] = (0.05, 0.25)  # seconds between two commands
    worker_kill_every: tuple[float, float] = (4.0, 8.0)
    service_kill_every: tuple[float, float] = (10.0, 16.0)
    fault_every: tuple[float, float] = (1.0, 3.0)  # a Slack or registry fault
    verify_every: float = 4.0  # `acrbot audit verify` while it runs
    timeout: float = 2.0  # the registry client's timeout
    # Faults inside the DELETE itself (held before the registry, answer held back) make the
    # kills land in the window where the outcome is unknown; their grace period is 45 s.
    delete_faults: bool = False
    settle: float = 40.0  # how long the bot may take to finish once the faults stop
    # Issue 18's longer faults: the database locked by another process for lock_seconds,
    # every lock_every seconds; the bot token refused for revoke_seconds, once.
    lock_database: bool = False
    lock_seconds: float = 5.0
    lock_every: tuple[float, float] = (12.0, 20.0)
    revoke_token: bool = False
    revoke_seconds: float = 30.0
    # Issue 20: that many `acrbot serve` replicas on one database (``database``: its config
    # value; default a SQLite file in WAL). Commands, clicks and replays go to a random replica
    # that is up; the kills pick a random replica. With 1, the run is as before.
    replicas: int = 1
    database: str | None = None


@dataclass
class Command:
    kind: str  # lookup, create, approve, click, cancel, deny, grant, revoke
    user: str
    text: str
    sent: Sent
    at: float
    request: int | None = None  # the request it acts on (approve, cancel, deny, click)
    guest: str | None = None  # grant/revoke: whose role
    ack: int | None = None

    @property
    def refused(self) -> bool:
        """Acked with a line saying it was not recorded (busy, database locked or full,
        Slack refusing the token): there is nothing to answer later."""
        refusals = (listeners.BUSY, listeners.LOCKED, listeners.FULL, listeners.AUTH_FAILING)
        return self.ack == 200 and any(r in self.sent.answer for r in refusals)


@dataclass
class Counts:
    duration: float = 0.0
    commands: int = 0
    acked: int = 0
    not_acked: int = 0  # the service was down: Slack told the user it failed
    not_acked_answered: int = 0  # …and yet answered: recorded before the crash
    answered_once: int = 0
    unanswered: list[str] = field(default_factory=list)
    answered_twice: list[str] = field(default_factory=list)
    # Messages Slack got twice because a SIGKILL fell between Slack's answer and the bot's
    # record of it (at-least-once: no API call can be recorded atomically with its effect).
    resent_after_kill: list[str] = field(default_factory=list)
    # each copy sent twice with no SIGKILL to explain it: when the copies came, and the kills
    unexplained: list[str] = field(default_factory=list)
    clicks: int = 0
    clicks_lost: list[str] = field(default_factory=list)
    worker_kills: int = 0
    service_kills: int = 0
    slack_faults: int = 0
    slack_failed_calls: int = 0  # calls the fake answered with an injected 429/5xx
    registry_faults: int = 0
    registry_faulted_calls: int = 0
    requests: int = 0
    approved: int = 0
    states: dict[str, int] = field(default_factory=dict)
    deletes_reaching_registry: int = 0
    deletes_by_status: dict[int, int] = field(default_factory=dict)
    executed_twice: list[str] = field(default_factory=list)
    untruthful: list[str] = field(default_factory=list)
    still_executing: list[int] = field(default_factory=list)
    outcome_problems: list[str] = field(default_factory=list)
    replays: int = 0
    replays_effective: list[str] = field(default_factory=list)
    revoked_came_back: list[str] = field(default_factory=list)
    verify_runs: int = 0
    verify_broken: list[str] = field(default_factory=list)
    jobs: dict[str, int] = field(default_factory=dict)
    jobs_rerun: int = 0  # jobs a killed worker held, run again by the next one
    recovered: int = 0  # requests a crash left `executing`, finished by a sweep
    unknown: int = 0  # DELETEs that went unanswered (the registry read again after the grace)
    outbox: dict[str, int] = field(default_factory=dict)
    # issue 18's faults
    db_locks: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # acked "not recorded", by reason
    refused_answered: list[str] = field(default_factory=list)
    slowest_ack: float = 0.0
    slow_acks: list[str] = field(default_factory=list)  # acked after Slack's 3 s
    token_revocations: int = 0
    auth_refused_calls: int = 0  # Web API calls answered token_revoked
    auth_checks: int = 0  # auth.test calls the bot made
    failed_for_auth: list[str] = field(default_factory=list)
    held: int = 0  # cards, thread lines, DMs recorded while the token was refused…
    held_sent: int = 0  # …and sent once it worked again

    def problems(self) -> list[str]:
        """Every broken promise, one line each (empty when all held)."""
        found = []
        for name in (
            "unanswered",
            "answered_twice",
            "clicks_lost",
            "executed_twice",
            "untruthful",
            "still_executing",
            "outcome_problems",
            "replays_effective",
            "revoked_came_back",
            "verify_broken",
            "refused_answered",
            "slow_acks",
            "failed_for_auth",
        ):
            value = getattr(self, name)
            if value:
                found.append(f"{name}: {value[:10]}{' …' if len(value) > 10 else ''}")
        if self.jobs.get("queued") or self.jobs.get("running"):
            found.append(f"jobs not finished: {self.jobs}")
        if self.outbox.get("pending"):
            found.append(f"messages not delivered: {self.outbox}")
        return found

    def lines(self) -> list[str]:
        states = ", ".join(f"{n} {s}" for s, n in sorted(self.states.items()))
        statuses = ", ".join(f"{n}×{s}" for s, n in sorted(self.deletes_by_status.items()))
        return [
            f"chaos: {self.duration:.0f} s, {self.worker_kills} worker SIGKILLs, "
            f"{self.service_kills} service SIGKILLs (restarted), {self.slack_faults} Slack "
            f"faults ({self.slack_failed_calls} calls answered 429/5xx), {self.registry_faults} "
            f"registry faults ({self.registry_faulted_calls} calls delayed or failed)",
            f"commands: {self.commands} sent, {self.acked} acked, {self.not_acked} not acked "
            f"while the service was down (Slack says it failed; {self.not_acked_answered} of "
            f"them answered anyway)",
            f"answers: {self.answered_once} of {self.acked} acked commands answered exactly "
            f"once, {len(self.unanswered)} never, {len(self.answered_twice)} twice or more; "
            f"messages Slack got twice because a SIGKILL cut their delivery short: "
            f"{len(self.resent_after_kill)}",
            f"clicks: {self.clicks} approve clicks, {len(self.clicks_lost)} lost",
            f"requests: {self.requests} created, {self.approved} approved; final: {states}",
            f"deletes: {self.deletes_reaching_registry} reached the registry ({statuses}) for "
            f"{self.states.get('done', 0)} done; {len(self.executed_twice)} executed twice, "
            f"{len(self.untruthful)} recorded untruthfully, {len(self.still_executing)} still "
            f"executing; outcome announcements wrong: {len(self.outcome_problems)}",
            f"replays: {self.replays} signed bodies replayed after restarts, "
            f"{len(self.replays_effective)} had an effect; revoked roles back: "
            f"{len(self.revoked_came_back)}",
            f"audit verify: {self.verify_runs} runs during and after, "
            f"{len(self.verify_broken)} said BROKEN",
            *(
                [f"  re-sent after a kill: {'; '.join(self.resent_after_kill[:5])}"]
                if self.resent_after_kill
                else []
            ),
            *(f"  sent twice, no kill between: {u}" for u in self.unexplained[:5]),
            *(
                [
                    f"database locked 5 s: {self.db_locks} times; token refused 30 s: "
                    f"{self.token_revocations} times ({self.auth_refused_calls} Web API calls "
                    f"answered token_revoked, {self.auth_checks} auth.test); acked as not "
                    f"recorded: {self.refused or 0}, answered later anyway: "
                    f"{len(self.refused_answered)}; slowest ack {self.slowest_ack:.2f} s, "
                    f"{len(self.slow_acks)} over 3 s; messages for the Web API recorded while "
                    f"the token was refused: {self.held}, sent after: {self.held_sent}; outbox "
                    f"rows failed for the token: {len(self.failed_for_auth)}"
                ]
                if self.db_locks or self.token_revocations
                else []
            ),
            f"jobs: {self.jobs}, {self.jobs_rerun} run again after a kill; requests "
            f"recovered after a crash: {self.recovered}, DELETEs unanswered: {self.unknown}; "
            f"outbox: {self.outbox}",
        ]


class Chaos:
    def __init__(
        self, root: Path, fake: FakeSlack, distribution: Distribution, options: ChaosOptions
    ) -> None:
        self.root, self.fake, self.distribution, self.options = root, fake, distribution, options
        self.random = random.Random(options.seed)
        self.proxy = FaultProxy(distribution.url).start()
        self.bots = [
            ServedBot(
                root / ("bot" if n == 0 else f"bot{n}"),
                fake,
                registry_url=self.proxy.url,
                users=USERS if n == 0 else {},  # one database: granted once
                timeout=options.timeout,
                database=options.database or (root / "bot" / "acrbot.db"),
                name="" if n == 0 else f"r{n}",
            )
            for n in range(options.replicas)
        ]
        self.bot = self.bots[0]  # reads the shared database, runs `audit verify`
        self._down: set[int] = set()  # replicas being restarted
        self.counts = Counts()
        self.commands: list[Command] = []
        self.replayed: list[tuple[Command, float]] = []
        self.digests: dict[str, str] = {}  # repository -> digest
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._service = threading.Lock()  # held while the service is down for a restart
        self._guests = 0
        self.kills: list[float] = []  # perf_counter() just after each SIGKILL
        self._began = time.perf_counter()
        self._token_refused = threading.Event()  # no service kill meanwhile
        self._refused_window: tuple[str, str] | None = None  # UTC, as the outbox writes it

    # -- running -----------------------------------------------------------------------------

    def run(self) -> Counts:
        try:
            self._seed()
            for bot in self.bots:
                bot.start()
            started = time.monotonic()
            threads = [
                threading.Thread(target=target, name=name, daemon=True)
                for target, name in (
                    (self._drive, "chaos-drive"),
                    (self._kill_workers, "chaos-worker-kills"),
                    (self._kill_service, "chaos-service-kills"),
                    (self._faults, "chaos-faults"),
                    (self._verify, "chaos-verify"),
                    (self._lock_database, "chaos-db-lock"),
                    (self._revoke_token, "chaos-token"),
                )
            ]
            for thread in threads:
                thread.start()
            self._stop.wait(self.options.duration)
            self._stop.set()
            for thread in threads:
                thread.join(60)
            self.counts.duration = time.monotonic() - started
            self._heal()
            self._settle()
            self._replay_all()
            self._count()
            return self.counts
        finally:
            for bot in self.bots:
                bot.close()
            self.proxy.stop()

    def _seed(self) -> None:
        for i in range(self.options.images):
            repository = f"chaos/r{i}"
            self.digests[repository] = self.distribution.push(repository, "1.0")

    def _pause(self, bounds: tuple[float, float]) -> bool:
        """Wait a random time within ``bounds``; False once the run is over."""
        return not self._stop.wait(self.random.uniform(*bounds))

    # -- the users ---------------------------------------------------------------------------

    def _pick(self) -> ServedBot:
        """Where Slack's next request goes: the one replica, or a random one that is up (as
        a load balancer routes; during a restart, to the other)."""
        if len(self.bots) == 1:
            return self.bot
        with self._lock:
            up = [bot for n, bot in enumerate(self.bots) if n not in self._down]
        return self.random.choice(up or self.bots)

    def _victim(self) -> tuple[int, ServedBot]:
        n = 0 if len(self.bots) == 1 else self.random.randrange(len(self.bots))
        return n, self.bots[n]

    def _send(self, kind: str, user: str, text: str, **extra: Any) -> Command:
        sent = self._pick().command(user, text)
        if sent.status is None:  # the service is down: Slack told them; they wait a moment
            self._stop.wait(0.5)
        command = Command(kind, user, text, sent, time.monotonic(), ack=sent.status, **extra)
        with self._lock:
            self.commands.append(command)
        return command

    def _drive(self) -> None:
        choices = (
            ("lookup", 6),
            ("create", 4),
            ("approve", 5),
            ("click", 2),
            ("cancel", 1),
            ("deny", 1),
            ("grant", 2),
            ("revoke", 2),
            ("replay", 2),
            ("burst", 1),
        )
        kinds = [k for k, w in choices for _ in range(w)]
        while self._pause(self.options.pace):
            try:
                getattr(self, f"_{self.random.choice(kinds)}")()
            except Exception as exc:  # a driver bug must not end the run silently
                self.counts.outcome_problems.append(f"driver: {exc!r}")

    def _burst(self) -> None:
        """Ten commands at once, as when a team starts its day."""
        actions = [self._lookup] * 6 + [self._create] * 2 + [self._approve] * 2
        threads = [threading.Thread(target=action) for action in actions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _lookup(self) -> None:
        repository = self.random.choice(sorted(self.digests))
        self._send("lookup", "UCAROL", f"tags {repository}")

    def _create(self) -> None:
        repository = self.random.choice(sorted(self.digests))
        user = self.random.choice(REQUESTERS)
        self._send("create", user, f"delete {repository}:1.0 --manifest --reason chaos")

    def _pending(self) -> list[tuple[int, str]]:
        return self.bot.query("select id, requester from requests where state = 'pending'")

    def _approve(self) -> None:
        pending = self._pending()
        if pending:
            request, _ = self.random.choice(pending)
            approver = self.random.choice(APPROVERS)
            self._send("approve", approver, f"approve {request}", request=request)

    def _click(self) -> None:
        cards = self.bot.query(
            "select c.request_id, c.ts from cards c join requests r on r.id = c.request_id "
            "where r.state = 'pending'"
        )
        if not cards:
            return
        request, ts = self.random.choice(cards)
        sent = self._pick().click(
            self.random.choice(APPROVERS), "acr_approve", str(request), message_ts=ts
        )
        with self._lock:
            self.commands.append(
                Command("click", "", "", sent, time.monotonic(), request=request, ack=sent.status)
            )

    def _cancel(self) -> None:
        pending = self._pending()
        if pending:
            request, requester = self.random.choice(pending)
            self._send("cancel", requester, f"cancel {request}", request=request)

    def _deny(self) -> None:
        pending = self._pending()
        if pending:
            request, _ = self.random.choice(pending)
            self._send("deny", "UERIN", f"deny {request} --reason chaos", request=request)

    def _grant(self) -> None:
        self._guests += 1
        guest = f"UGUEST{self._guests}"
        self._send("grant", "UBOB", f"grant {guest} reader --repo 'chaos/*'", guest=guest)

    def _revoke(self) -> None:
        """Revoke a role whose grant was answered (so the revoke comes after it)."""
        granted = [
            c.guest
            for c in self._snapshot()
            if c.kind == "grant" and self._answers(c) and c.guest not in self._revoked()
        ]
        if granted:
            guest = self.random.choice(granted)
            self._send("revoke", "UBOB", f"revoke {guest} reader --repo 'chaos/*'", guest=guest)

    def _revoked(self) -> set[str | None]:
        return {c.guest for c in self._snapshot() if c.kind == "revoke"}

    def _replay(self) -> None:
        """Replay a signed body Slack already delivered (an attacker, or a confused proxy)."""
        # (One acked as not recorded is left out: its replay would be its first delivery.)
        done = [
            c for c in self._snapshot() if c.ack == 200 and c.kind != "lookup" and not c.refused
        ]
        if done:
            command = self.random.choice(done)
            if self._pick().replay(command.sent) == 200:
                with self._lock:
                    self.replayed.append((command, time.monotonic()))

    def _snapshot(self) -> list[Command]:
        with self._lock:
            return list(self.commands)

    # -- the faults --------------------------------------------------------------------------

    def _kill_workers(self) -> None:
        while self._pause(self.options.worker_kill_every):
            with self._service, contextlib.suppress(AssertionError):
                self._victim()[1].kill_worker()
                self.kills.append(time.perf_counter())
                self.counts.worker_kills += 1

    def _kill_service(self) -> None:
        while self._pause(self.options.service_kill_every):
            if self._token_refused.is_set():
                continue  # it would not start again until the token works
            with self._service:
                n, bot = self._victim()
                with self._lock:
                    self._down.add(n)
                bot.kill()
                self.kills.append(time.perf_counter())
                self.counts.service_kills += 1
                self._stop.wait(self.random.uniform(0.2, 1.5))  # down for a moment
                bot.start()
                with self._lock:
                    self._down.discard(n)

    def _faults(self) -> None:
        slack = (
            lambda: self.fake.fail("chat.postMessage", status=429, retry_after=1, times=2),
            lambda: self.fake.fail("chat.postMessage", status=500, times=1),
            lambda: self.fake.fail("chat.update", status=429, retry_after=1, times=1),
            lambda: self.fake.fail("chat.postEphemeral", status=503, times=1),
            lambda: self.fake.fail(
                "chat.postMessage", status=500, times=2, channel=self.random.choice(REQUESTERS)
            ),
            lambda: self.fake.fail_response_url(status=500, times=2),
            lambda: self.fake.fail_response_url(status=429, retry_after=1, times=2),
        )
        registry = [
            lambda: self.proxy.delay("GET", self.random.uniform(0.3, 1.5), times=3),
            lambda: self.proxy.delay("HEAD", self.random.uniform(0.3, 1.0), times=5),
            lambda: self.proxy.respond("GET", 503, times=2),
            lambda: self.proxy.respond("HEAD", 429, retry_after=1, times=1),
            lambda: self.proxy.respond("DELETE", 503, times=1),  # answered: never executed
            lambda: self.proxy.respond("DELETE", 429, retry_after=1, times=1),
            lambda: self.proxy.delay("GET", self.options.timeout + 0.5, times=1),  # read timeout
        ]
        if self.options.delete_faults:
            registry += [
                lambda: self.proxy.delay("DELETE", self.random.uniform(0.5, 1.5), times=1),
                lambda: self.proxy.delay_response("DELETE", self.random.uniform(0.5, 1.5), times=1),
                lambda: self.proxy.delay("DELETE", self.options.timeout + 1, times=1),
            ]
        while self._pause(self.options.fault_every):
            if self.random.random() < 0.5:
                self.random.choice(slack)()
                self.counts.slack_faults += 1
            else:
                self.random.choice(registry)()
                self.counts.registry_faults += 1

    def _lock_database(self) -> None:
        """Another process takes the database's write lock and keeps it for lock_seconds."""
        if not self.options.lock_database:
            return
        while self._pause(self.options.lock_every):
            holder = sqlite3.connect(self.bot.database, isolation_level=None, timeout=30)
            try:
                holder.execute("BEGIN IMMEDIATE")
                self.counts.db_locks += 1
                self._stop.wait(self.options.lock_seconds)
                holder.execute("ROLLBACK")
            finally:
                holder.close()

    def _revoke_token(self) -> None:
        """Slack refuses the bot token for revoke_seconds, once, a little into the run."""
        if not self.options.revoke_token or not self._pause((3.0, 6.0)):
            return
        self._token_refused.set()
        with self._service:  # not in the middle of a restart
            self.fake.revoke("token_revoked")
        began = datetime.now(UTC).isoformat()
        self.counts.token_revocations += 1
        self._stop.wait(self.options.revoke_seconds)
        self.fake.restore()
        self._refused_window = (began, datetime.now(UTC).isoformat())
        self._token_refused.clear()

    def _verify(self) -> None:
        while not self._stop.wait(self.options.verify_every):
            self._verify_once()

    def _verify_once(self) -> None:
        result = self.bot.acrbot("audit", "verify")
        self.counts.verify_runs += 1
        if result.returncode != 0 or not result.stdout.startswith("audit chain intact"):
            self.counts.verify_broken.append((result.stdout + result.stderr).strip()[:300])

    def _heal(self) -> None:
        """Stop injecting faults (the ones still queued included) and make sure it runs."""
        self.proxy.clear()
        self.fake.clear_faults()
        self.fake.restore()
        for bot in self.bots:
            if bot.proc is None or bot.proc.poll() is not None:
                bot.start()

    def _settle(self) -> None:
        """Until every job ran, every message went out and no request is executing."""

        def settled() -> bool:
            jobs = self.bot.query("select count(*) from jobs where state != 'done'")[0][0]
            pending = self.bot.query("select count(*) from outbox where state = 'pending'")[0][0]
            executing = self.bot.query("select count(*) from requests where state = 'executing'")[
                0
            ][0]
            return jobs == 0 and pending == 0 and executing == 0

        with contextlib.suppress(AssertionError):
            wait_until(settled, timeout=self.options.settle, what="the bot to settle")
        time.sleep(1.0)  # a retry that was on its way

    def _replay_all(self) -> None:
        """After the last restart, replay every delivered body that changed something."""
        for bot in self.bots:
            bot.kill()
        self.kills.append(time.perf_counter())
        for bot in self.bots:
            bot.start()
        for command in self._snapshot():
            if command.ack != 200 or command.kind == "lookup" or command.refused:
                continue
            if self._pick().replay(command.sent) == 200:
                self.replayed.append((command, time.monotonic()))
        wait_until(
            lambda: self.bot.query("select count(*) from jobs where state != 'done'")[0][0] == 0,
            timeout=20,
            what="the jobs after the replays",
        )
        time.sleep(1.5)  # what a replay that did run would have needed to answer
        self._verify_once()

    # -- counting ----------------------------------------------------------------------------

    def _accepted(self, method: str, **where: Any) -> list[ApiCall]:
        """The calls to ``method`` Slack accepted whose params match ``where``, in order."""
        return [
            call
            for call in list(self.fake.calls)
            if call.method == method
            and call.ok
            and all(call.params.get(k) == v for k, v in where.items())
        ]

    def _answers(self, command: Command) -> list[ApiCall]:
        posts = self._accepted(f"response_url:{command.sent.name}")
        return [p for p in posts if not str(p.params.get("text", "")).startswith(NOTE)]

    def _once(self, calls: list[ApiCall], what: str) -> bool:
        """Whether ``calls`` is one message, or copies each explained by a SIGKILL that fell
        right after Slack took the previous copy (and before the bot could record it).

        A copy already on its way when the kill fell reaches the fake a moment *after* it
        (its handler thread stamps it once it has read and parsed it: seen in the same 10 ms
        as the kill, and 0.3 s after it with two replicas on a loaded machine), so a kill up
        to IN_FLIGHT before the first copy explains it too. A dead process sends nothing, so
        such a copy left before the kill."""
        for first, second in itertools.pairwise(calls):
            if not any(
                first.at - IN_FLIGHT <= k <= second.at and k - first.at <= 2.0 for k in self.kills
            ):
                if what:
                    t0 = self._began
                    self.counts.unexplained.append(
                        f"{what}: copies at {first.at - t0:.2f} s and {second.at - t0:.2f} s; "
                        f"kills at {', '.join(f'{k - t0:.2f}' for k in self.kills)} s"
                    )
                return False
        if len(calls) > 1 and what:
            self.counts.resent_after_kill.append(what)
        return True

    def _count(self) -> None:
        c = self.counts
        commands = self._snapshot()
        c.commands = sum(1 for x in commands if x.kind != "click")
        for command in commands:
            if command.kind == "click":
                c.clicks += 1
                continue
            answers = self._answers(command)
            what = f"{command.text} ({command.sent.name})"
            once = self._once(answers, f"the answer to {what}")
            if command.ack != 200:
                c.not_acked += 1
                c.not_acked_answered += bool(answers)
                if not once:
                    c.answered_twice.append(what)
                continue
            c.slowest_ack = max(c.slowest_ack, command.sent.took)
            if command.sent.took > 3.0:
                c.slow_acks.append(f"{what}: {command.sent.took:.2f} s")
            if command.refused:
                reason = command.sent.answer[:40]
                c.refused[reason] = c.refused.get(reason, 0) + 1
                if answers:
                    c.refused_answered.append(what)
                continue
            c.acked += 1
            if not answers:
                c.unanswered.append(what)
            elif once:
                c.answered_once += 1
            else:
                c.answered_twice.append(f"{what}: {[a.params['text'][:60] for a in answers]}")
        self._count_clicks(commands)
        self._count_requests()
        self._count_replays()
        c.jobs = dict(Counter(s for (s,) in self.bot.query("select state from jobs")))
        c.jobs_rerun = self.bot.query("select count(*) from jobs where attempts > 1")[0][0]
        audit = Counter(a for (a,) in self.bot.query("select action from audit"))
        c.recovered, c.unknown = audit["request.recover"], audit["request.unknown"]
        c.outbox = dict(Counter(s for (s,) in self.bot.query("select state from outbox")))
        c.slack_failed_calls = sum(1 for call in self.fake.calls if call.injected)
        c.auth_refused_calls = sum(1 for call in self.fake.calls if call.error == "token_revoked")
        c.auth_checks = self.fake.attempts("auth.test")
        if self._refused_window is not None:
            ((c.held, c.held_sent),) = self.bot.query(
                "select count(*), coalesce(sum(state = 'sent'), 0) from outbox "
                "where kind != 'respond' and created_at between ? and ?",
                list(self._refused_window),
            )
        c.failed_for_auth = [
            f"{key}: {error}"
            for key, error in self.bot.query(
                "select key, error from outbox where state = 'failed' and error in "
                "('token_revoked', 'invalid_auth', 'account_inactive', 'not_authed')"
            )
        ]
        c.registry_faulted_calls = sum(1 for e in self.proxy.exchanges if e.fault)

    def _count_clicks(self, commands: list[Command]) -> None:
        """A click that was acked must have run: its job is done."""
        keys = dict(self.bot.query("select key, state from jobs"))
        for command in commands:
            if command.kind == "click" and command.ack == 200 and not command.refused:
                key = f"trigger:{command.sent.trigger}"
                if keys.get(key) != "done":
                    self.counts.clicks_lost.append(f"click on #{command.request}: {key}")

    def _count_requests(self) -> None:
        c = self.counts
        rows = self.bot.query(
            "select id, repository, digest, state, requester, "
            "(select count(*) from approvals a where a.request_id = r.id) from requests r"
        )
        c.requests = len(rows)
        c.states = dict(Counter(row[3] for row in rows))
        c.approved = sum(1 for row in rows if row[5] > 0 and row[3] in ("done", "failed"))
        deletes = [(p, s) for m, p, s in self.proxy.upstream_statuses if m == "DELETE"]
        c.deletes_reaching_registry = len(deletes)
        c.deletes_by_status = dict(Counter(s for _, s in deletes))
        per_path = Counter(p for p, _ in deletes)
        for path, n in per_path.items():
            if n > 1:
                c.executed_twice.append(f"{path}: {n} DELETEs")
        cards = dict(self.bot.query("select request_id, ts from cards"))
        by_image: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for request, repository, digest, state, requester, _ in rows:
            by_image.setdefault((repository, digest), []).append((request, state))
            if state == "executing":
                c.still_executing.append(request)
            if state in ("done", "failed", "denied", "cancelled", "expired"):
                self._check_outcome(request, state, requester, cards.get(request))
        # Truthful: an image is gone exactly when a request for it says `done`, and it went
        # by one DELETE. (Two requests may both say done: one made while the other was
        # executing finds the image gone, and says so in its note.)
        for (repository, digest), requests in sorted(by_image.items()):
            present = self._present(repository, digest)
            path = f"/v2/{repository}/manifests/{digest}"
            reached = [s for p, s in deletes if p == path]
            done = [r for r, state in requests if state == "done"]
            told = ", ".join(f"#{r} {state}" for r, state in requests)
            if (done and (present or reached.count(202) != 1)) or (not done and not present):
                c.untruthful.append(
                    f"{repository}: {told}; image {'present' if present else 'gone'}, "
                    f"DELETEs answered {reached}"
                )

    def _check_outcome(self, request: int, state: str, requester: str, ts: str | None) -> None:
        """Once in the thread, once to the requester, and the card drawn final."""
        c = self.counts
        if ts is None:
            c.outcome_problems.append(f"#{request} has no card")
            return
        thread = [
            p
            for p in self._accepted("chat.postMessage", thread_ts=ts)
            if not str(p.params.get("text", "")).startswith(":+1:")
        ]
        dms = [
            p
            for p in self._accepted("chat.postMessage", channel=requester)
            if str(p.params.get("text", "")).startswith(f"Your deletion request #{request} ")
        ]
        cards = [
            p
            for p in self._accepted("chat.postMessage", channel=self.bot.channel)
            if "thread_ts" not in p.params
            and f'"Deletion request #{request}"' in json.dumps(p.params.get("blocks"))
        ]
        if not self._once(cards, f"#{request}'s card"):
            c.outcome_problems.append(f"#{request}: {len(cards)} cards posted")
        thread_once = self._once(thread, f"#{request}'s outcome in its thread")
        dm_once = self._once(dms, f"#{request}'s outcome to {requester}")
        if not (thread and dms and thread_once and dm_once):
            c.outcome_problems.append(
                f"#{request} {state}: {len(thread)} in thread, {len(dms)} DMs"
            )
        message = self.fake.message(self.bot.channel, ts)
        drawn = str(message.get("blocks") if message else "")
        if f"*{state}*" not in drawn or "acr_approve" in drawn:
            c.outcome_problems.append(f"#{request} {state}: the card does not show it")

    def _present(self, repository: str, digest: str) -> bool:
        import httpx

        from tests.support.distribution import MANIFEST_ACCEPT

        response = httpx.head(
            f"{self.distribution.url}/v2/{repository}/manifests/{digest}",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        return response.status_code == 200

    def _count_replays(self) -> None:
        c = self.counts
        c.replays = len(self.replayed)
        for command, _at in self.replayed:
            if not self._once(self._answers(command), what=""):
                c.replays_effective.append(f"{command.kind} {command.text!r} answered again")
        revoked = {
            c_.guest
            for c_ in self._snapshot()
            if c_.kind == "revoke" and any("Revoked" in a.params["text"] for a in self._answers(c_))
        }
        for guest in sorted(g for g in revoked if g):
            if self.bot.query("select 1 from grants where principal = ?", [guest]):
                c.revoked_came_back.append(guest)
