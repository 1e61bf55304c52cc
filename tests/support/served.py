"""A real `acrbot serve` for fault injection: its own config and database, signed commands, and
SIGKILL of its worker or of the whole service, then a restart on the same database.

    bot = ServedBot(tmp_path, fake_slack, registry_url=proxy.url, users={"UBOB": "owner"})
    bot.start()
    sent = bot.command("UBOB", "grant UCAROL contributor")   # a signed body, kept for replay
    bot.kill_worker()                                         # `acrbot serve` starts another
    bot.replay(sent)                                          # the same bytes, signature and all
    bot.kill()                                                # the service and its worker
    bot.start()

Two replicas on one database (tests/servers/test_replicas.py, bench/ha.py) are two ServedBots
given the same ``database`` (the `database = …` config value: a SQLite path today, a
PostgreSQL URL too) and a ``name`` each (their response_url names and trigger ids differ):

    a = ServedBot(tmp_path / "a", fake, registry_url=url, users=USERS, database=db, name="a")
    b = ServedBot(tmp_path / "b", fake, registry_url=url, users={}, database=db, name="b")

Used by tests/servers/test_reliability.py, tests/servers/test_chaos.py and bench/chaos.py. The
service runs in a session of its own, so `kill()` takes its worker down with it (a pod killed,
an OOM kill), and its output goes to ``serve.log`` in the root (read it when a test fails).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from tests.support.fake_slack import FakeSlack
from tests.support.helpers import REPO_ROOT, free_port

SECRET = "served-secret"
TEAM = "T0001"
CHANNEL = "C0CHAN"


@dataclass(frozen=True)
class Sent:
    """A signed request as it went out: replaying it sends exactly these bytes again."""

    name: str  # the response_url's name in the fake Slack
    trigger: str  # its trigger_id: the job's key is `trigger:<this>`
    body: str
    timestamp: str
    signature: str
    status: int | None  # None: the service was not there to answer
    answer: str = ""  # the body of the HTTP answer (an ack's text)
    took: float = 0.0  # seconds from sending to the answer


class ServedBot:
    def __init__(
        self,
        root: Path,
        fake: FakeSlack,
        *,
        registry_url: str,
        users: dict[str, str],
        timeout: float = 2.0,
        channel: str = CHANNEL,
        database: str | Path | None = None,
        name: str = "",
        socket_mode: bool = False,
        extra_config: str = "",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """``extra_config`` is appended to the file after `[slack]`'s own line: its lines
        before any table header are `[slack]` keys. ``extra_env`` joins the service's env."""
        self.root, self.fake, self.channel, self.name = root, fake, channel, name
        self.socket_mode = socket_mode  # Slack reaches it through the fake's Socket Mode
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = root / "acrbot.toml"
        # The config value: a file path (SQLite), or a postgresql:// URL once the store has
        # that engine (issue 20); a path stays a Path, as before.
        self.database = database if _is_url(database) else Path(database or root / "acrbot.db")
        self.extra_env = extra_env or {}
        on_server = ""
        if _is_url(self.database):  # the test cluster's role logs in with a password
            from tests.support.fixtures import PG_PASSWORD_ENV
            from tests.support.postgres import PASSWORD

            on_server = f'database_password_env = "{PG_PASSWORD_ENV}"\n'
            self.extra_env = {PG_PASSWORD_ENV: PASSWORD, **self.extra_env}
        self.config.write_text(
            f'database = "{self.database}"\n' + on_server + "[[registry]]\n"
            'name = "dist"\n'
            'type = "oci"\n'
            f'url = "{registry_url}"\n'
            f"timeout = {timeout}\n"
            "[slack]\n"
            f'requests_channel = "{channel}"\n' + extra_config
        )
        from bot.state.store import Store

        Store(self._target(), create=True).close()  # `acrbot init`, as a deployment runs it
        self.port = free_port()
        self.metrics_port = free_port()  # /metrics is never on the port Slack reaches
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._ids = itertools.count(1)
        self._log = open(root / "serve.log", "ab")  # noqa: SIM115 (closed in close())
        for user, role in users.items():
            self.grant(user, role)

    # -- the service -----------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": self.fake.api_url,
            "ACRBOT_CONFIG": str(self.config),
            **self.extra_env,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        env.pop("SLACK_APP_TOKEN", None)
        if self.socket_mode:  # the fake Slack must have a FakeSocketMode attached
            env.update({"SLACK_APP_TOKEN": "xapp-test", "HTTPS_PROXY": ""})
            env.pop("SLACK_SIGNING_SECRET")
        return env

    def start(self, timeout: float = 30.0) -> ServedBot:
        """Start `acrbot serve` (HTTP) and wait until it answers /healthz with 200."""
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "bot", "serve", "--port", str(self.port)),
                *("--metrics-port", str(self.metrics_port), "--metrics-host", "127.0.0.1"),
            ],
            env=self.env,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self.starts += 1
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until /healthz answers 200 (in Socket Mode, which has no HTTP listener: until
        /metrics does, which is served once the worker is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"acrbot serve exited with {self.proc.returncode}: {self.log}")
            if self.socket_mode and self.get("/metrics")[0] == 200:
                return
            if self.health() == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"acrbot serve not healthy after {timeout}s: {self.log}")

    def health(self) -> int | None:
        return self.get("/healthz")[0]

    def get(self, path: str, timeout: float = 2.0) -> tuple[int | None, str]:
        """GET ``path`` (`/healthz`, `/readyz`, `/metrics`): (status, body); None when the
        service did not answer within ``timeout``. `/metrics` is asked of the metrics port."""
        port = self.metrics_port if path == "/metrics" else self.port
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        except OSError:
            return None, ""

    @property
    def log(self) -> str:
        self._log.flush()
        return (self.root / "serve.log").read_text(errors="replace")[-4000:]

    def worker_pid(self, timeout: float = 30.0) -> int:
        """The worker process `acrbot serve` runs (not multiprocessing's resource tracker)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in _children(self.proc.pid):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"spawn_main" in cmdline and _state(pid) not in ("Z", "X", None):
                    return pid
            time.sleep(0.05)
        raise AssertionError(f"no worker under acrbot serve {self.proc.pid}")

    def owns(self, owner: str | None) -> bool:
        """Whether ``owner`` (a `host:pid:start` from the database) is this bot's worker."""
        if owner is None or self.proc is None or self.proc.poll() is not None:
            return False
        try:
            return owner.rsplit(":", 2)[1] == str(self.worker_pid(timeout=1))
        except AssertionError:
            return False

    def kill_worker(self) -> int:
        """SIGKILL the worker; `acrbot serve` starts another. Returns the killed pid."""
        pid = self.worker_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_new_worker(self, old: int, timeout: float = 30.0) -> int:
        """Until a worker other than ``old`` runs and the service is healthy again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.worker_pid(timeout=deadline - time.monotonic())
            if pid != old and self.health() == 200:
                return pid
            time.sleep(0.05)
        raise AssertionError(f"the worker {old} was not replaced: {self.log}")

    def kill(self) -> None:
        """SIGKILL the service and its worker at once (its whole session)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pids = [self.proc.pid, *_children(self.proc.pid)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for pid in pids:
            _wait_gone(pid)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM: the service finishes the requests in flight, the worker its jobs."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        pids = [self.proc.pid, *_children(self.proc.pid)]
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        for pid in pids:
            _wait_gone(pid)
        return code

    def close(self) -> None:
        self.kill()
        self._log.close()

    def ready(self) -> bool:
        """What a load balancer asks before sending traffic here (readiness)."""
        return self.get("/readyz", timeout=1)[0] == 200

    # -- the database, read as an operator would ---------------------------------------------

    def _target(self) -> Any:
        """What `Store(...)` takes for this bot's database."""
        if _is_url(self.database):
            from tests.support.fixtures import pg_target

            return pg_target(str(self.database))
        return self.database

    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        """Read the bot's database from a connection of our own (WAL: never blocks it).
        ``?`` placeholders on either engine."""
        if _is_url(self.database):
            import psycopg

            from tests.support.postgres import PASSWORD

            with psycopg.connect(str(self.database), password=PASSWORD, autocommit=True) as conn:
                return conn.execute(sql.replace("?", "%s"), list(params)).fetchall()
        conn = sqlite3.connect(self.database, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def request_states(self) -> dict[int, str]:
        return dict(self.query("select id, state from requests order by id"))

    def grant(self, user: str, role: str) -> None:
        """Bootstrap a role as the operator does (`acrbot roles grant`), without Slack."""
        from bot.app import build_context
        from bot.core.config import load
        from bot.core.policy import Grant, Role

        ctx = build_context(load(self.config))
        try:
            ctx.roles.grant(Grant(user, Role(role)), by="test", at=ctx.clock())
        finally:
            ctx.store.close()

    def acrbot(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run the `acrbot` command line on this bot's config (e.g. `audit verify`)."""
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # -- what Slack sends --------------------------------------------------------------------

    def command(self, user: str, text: str, *, channel: str | None = None) -> Sent:
        """Send a signed `/acr text` with a response_url of its own."""
        n = next(self._ids)
        name = f"{self.name}s{self.starts}c{n}"
        body = urlencode(
            {
                "token": "legacy",
                "team_id": TEAM,
                "team_domain": "acme",
                "channel_id": channel or self.channel,
                "channel_name": "platform",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/acr",
                "text": text,
                "api_app_id": "A0001",
                "response_url": self.fake.response_url(name),
                "trigger_id": f"trig.{os.getpid()}.{self.port}.{n}",
            }
        )
        return self._send(name, f"trig.{os.getpid()}.{self.port}.{n}", body)

    def click(self, user: str, action_id: str, value: str, *, message_ts: str) -> Sent:
        """A button on a message in the requests channel (Approve on a card)."""
        n = next(self._ids)
        name = f"{self.name}s{self.starts}k{n}"
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
            "api_app_id": "A0001",
            "token": "legacy",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": self.channel,
                "is_ephemeral": False,
            },
            "trigger_id": f"click.{os.getpid()}.{self.port}.{n}",
            "team": {"id": TEAM, "domain": "acme"},
            "channel": {"id": self.channel, "name": "platform"},
            "message": {"type": "message", "ts": message_ts, "bot_id": "BBOT", "text": "card"},
            "response_url": self.fake.response_url(name),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "b1",
                    "value": value,
                    "type": "button",
                    "text": {"type": "plain_text", "text": action_id},
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return self._send(name, payload["trigger_id"], body)

    def _send(self, name: str, trigger: str, body: str) -> Sent:
        ts = str(int(time.time()))
        signature = SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)
        sent = Sent(name, trigger, body, ts, signature, None)
        started = time.monotonic()
        status, answer = self._exchange(sent)
        took = time.monotonic() - started
        return Sent(name, trigger, body, ts, signature, status, answer, took)

    def replay(self, sent: Sent) -> int | None:
        """The same signed bytes again (a retry, or an attacker who captured them)."""
        return self._post(sent)

    def _post(self, sent: Sent) -> int | None:
        return self._exchange(sent)[0]

    def _exchange(self, sent: Sent) -> tuple[int | None, str]:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request(
                "POST",
                "/slack/events",
                body=sent.body.encode(),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Slack-Request-Timestamp": sent.timestamp,
                    "X-Slack-Signature": sent.signature,
                },
            )
            response = conn.getresponse()
            answer = response.read().decode(errors="replace")
            conn.close()
            return response.status, answer
        except OSError:
            return None, ""


def _is_url(database: object) -> bool:
    return isinstance(database, str) and "://" in database


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in status:
            found.append(int(entry.name))
    return found


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Until ``pid`` has exited (a zombie counts: its files are closed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _state(pid) in (None, "Z", "X"):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still alive")
