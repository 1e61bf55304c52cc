"""Fixtures that make tests read like a chat: `bot.say("alice", "tags baseimages/fedora")`.

Everything is real: a SQLite file, an OCI image layout on disk seeded like the demo. Loaded for
every test by tests/conftest.py (`pytest_plugins`); the objects the fixtures build (ChatBot,
make_config, the registry fakes) are imported from here by tests that build their own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_dispatcher
from bot.core.config import Config, from_mapping
from bot.core.database import ServerDatabase
from bot.core.errors import ConfigError
from bot.core.policy import Grant, Role
from bot.core.registry import AdminStatus, NewPassword
from bot.core.render_text import render
from bot.core.replies import Reply
from bot.demo import USERS, seed_registry
from bot.kernel.dispatch import Dispatcher
from bot.state.store import Store
from handlers.registries.oci_layout import OciLayoutRegistry


class FakeClock:
    """A clock the test moves by hand, so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class CountingRegistry:
    """The real layout registry, counting destructive calls (a Protocol fake, no patching)."""

    def __init__(self, inner: OciLayoutRegistry, *, can_untag: bool = True) -> None:
        self.inner = inner
        self.name, self.kind, self.login_server = inner.name, inner.kind, inner.login_server
        self.can_untag = can_untag
        self.deletions: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def untag(self, repository: str, tag: str) -> None:
        self.deletions.append((repository, tag))
        self.inner.untag(repository, tag)

    def delete_manifest(self, repository: str, digest: str) -> None:
        self.deletions.append((repository, digest))
        self.inner.delete_manifest(repository, digest)


class AdminRegistry(CountingRegistry):
    """The demo layout plus an admin user with two passwords, as ACR has."""

    def __init__(self, inner: OciLayoutRegistry) -> None:
        super().__init__(inner)
        self.status = AdminStatus(enabled=True, username="demo")
        self.passwords = {"password": "old-1", "password2": "old-2"}

    def admin_status(self):
        return self.status

    def set_admin(self, *, enabled):
        self.status = replace(self.status, enabled=enabled)
        return self.status

    def regenerate_password(self, which):
        self.passwords[which] = "pw-" + secrets.token_urlsafe(24)
        return NewPassword(name=which, username="demo", value=self.passwords[which])


class ChatBot:
    def __init__(self, dispatcher: Dispatcher, registry: OciLayoutRegistry) -> None:
        self.dispatcher = dispatcher
        self.ctx = dispatcher.ctx
        self.registry = registry

    def say(self, user: str, text: str) -> Reply:
        return self.dispatcher.handle(text, user=user)

    def text(self, user: str, text: str) -> str:
        return render(self.say(user, text))

    def grant(self, user: str, role: str, **scope: str) -> None:
        self.ctx.roles.grant(
            Grant(principal=user, role=Role(role), **scope), by="test", at=self.ctx.clock()
        )


def make_config(tmp_path: Path, *, environ: dict[str, str] | None = None, **extra: Any) -> Config:
    data: dict[str, Any] = {
        "database": "acrbot.db",
        "registry": [
            {
                "name": "demo",
                "type": "oci-layout",
                "path": "registry",
                "login_server": "demo.registry.local",
            }
        ],
    }
    data.update(extra)
    config = from_mapping(data, base=tmp_path, environ=environ or {})
    with contextlib.suppress(ConfigError):  # a test of a bad database path sees the error later
        Store(config.database, create=True).close()  # as `acrbot init` would
    return config


# Digests enough for any test: D[0] … D[99].
D = [f"sha256:{i:064x}" for i in range(100)]


def acr_config(tmp_path: Path, fake_acr: Any, **options: Any) -> Config:
    """A config whose one registry is the fake ACR (`prod`), with ``options`` on it."""
    return make_config(
        tmp_path,
        registry=[
            {
                "name": "prod",
                "type": "acr",
                "login_server": fake_acr.login_server,
                "subscription_id": fake_acr.subscription,
                "resource_group": fake_acr.resource_group,
                **options,
            }
        ],
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(tmp_path: Path) -> OciLayoutRegistry:
    return seed_registry(tmp_path / "registry")


@pytest.fixture
def make_bot(
    tmp_path: Path, clock: FakeClock, registry: OciLayoutRegistry, store_options: dict[str, Any]
) -> Callable[..., ChatBot]:
    """Build a bot with the demo's users and roles; keyword arguments go into the config."""

    def make(*, users: dict[str, str] | None = None, backend: Any = None, **config: Any) -> ChatBot:
        dispatcher = build_dispatcher(
            make_config(tmp_path, **{**store_options, **config}),
            clock=clock,
            registries=[backend or registry],
        )
        bot = ChatBot(dispatcher, backend or registry)
        for user, role in (users if users is not None else USERS).items():
            bot.grant(user, role)
        return bot

    return make


@pytest.fixture
def bot(make_bot: Callable[..., ChatBot]) -> ChatBot:
    return make_bot()


@pytest.fixture
def fake_slack():
    from tests.support.fake_slack import FakeSlack

    fake = FakeSlack().start()
    yield fake
    fake.stop()
    # Real Slack would have refused these payloads (invalid_blocks, msg_too_long…): a flow
    # test passes only if everything it made the bot send would have been accepted.
    fake.assert_nothing_rejected()


@pytest.fixture
def make_slack(
    tmp_path: Path, clock: FakeClock, registry: OciLayoutRegistry, fake_slack, store_options
):
    """Start the real Bolt app on uvicorn (127.0.0.1, free port) against the fake Web API,
    with its worker in this process (so tests can share the clock and registry)."""
    from bot.core.config import SlackSettings
    from bot.slack.service import SlackApp
    from bot.slack.worker import SlackWorker
    from tests.support.slack_support import SECRET, SlackHarness

    started = []

    def make(*, users: dict[str, str] | None = None, backend: Any = None, **config: Any):
        settings = SlackSettings(
            bot_token="xoxb-test", signing_secret=SECRET, api_url=fake_slack.api_url
        )
        worker = SlackWorker(
            make_config(tmp_path, **{**store_options, **config}),
            settings,
            workers=8,
            clock=clock,
            registries=[backend or registry],
        )
        harness = SlackHarness(fake_slack, SlackApp(settings, worker), worker).start()
        started.append(harness)
        for user, role in (users if users is not None else SLACK_USERS).items():
            harness.grant(user, role)
        return harness

    yield make
    for harness in started:
        harness.stop()


# Slack user ids for the demo's people.
SLACK_USERS = {
    "UALICE": "contributor",
    "UBOB": "owner",
    "UERIN": "owner",
    "UCAROL": "reader",
    "UDAVE": "oncall",
}


@pytest.fixture
def slack(make_slack):
    return make_slack()


@pytest.fixture(scope="session")
def distribution(tmp_path_factory):
    """A real docker-registry (distribution 2.8), no auth, shared by the session."""
    from tests.support.distribution import Distribution

    server = Distribution(tmp_path_factory.mktemp("distribution"), in_memory=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def distribution_basic(tmp_path_factory):
    """The same registry behind htpasswd Basic auth (user `bot`, password `s3cret-pw`)."""
    from tests.support.distribution import Distribution

    server = Distribution(
        tmp_path_factory.mktemp("distribution-basic"), users={"bot": "s3cret-pw"}, in_memory=True
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    """Azurite Blob on 127.0.0.1 (data on disk, so a stop/start keeps it: an outage)."""
    from tests.support.azurite import Azurite

    server = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield server
    server.stop()


@pytest.fixture
def proxy(distribution):
    """The fault proxy in front of the session's docker-registry (tests/support/fault_proxy.py)."""
    from tests.support.fault_proxy import FaultProxy

    proxy = FaultProxy(distribution.url).start()
    yield proxy
    proxy.stop()


# Who holds which role in a ServedBot, unless a test says otherwise.
SERVED_USERS = {"UALICE": "contributor", "UBOB": "owner", "UERIN": "owner", "UCAROL": "reader"}


@pytest.fixture
def served_bots(tmp_path: Path, fake_slack, proxy):
    """Make real `acrbot serve` processes (ServedBot) on the registry behind ``proxy``; each
    gets its own folder and is closed after the test."""
    from tests.support.served import ServedBot

    bots = []

    def make(**options: Any) -> ServedBot:
        bot = ServedBot(
            tmp_path / f"bot{len(bots)}",
            fake_slack,
            registry_url=proxy.url,
            users=options.pop("users", SERVED_USERS),
            **options,
        )
        bots.append(bot)
        return bot

    yield make
    for bot in bots:
        bot.close()


@pytest.fixture
def fake_acr(tmp_path):
    from tests.support.fake_acr import FakeAcr

    server = FakeAcr().start()
    server.ca_path = server.write_ca(tmp_path / "ca.pem")
    yield server
    server.stop()


@pytest.fixture
def make_acr(fake_acr):
    """Build the real AcrRegistry (azure SDK clients) against the local HTTPS fake."""

    def make(**overrides: Any):
        return fake_acr.client(fake_acr.ca_path, **{"polling_interval": 0, **overrides})

    return make


@pytest.fixture
def acr(make_acr):
    return make_acr()


# -- purge on docker-registry (tests/servers/test_purge.py, tests/unit/test_purge_keep.py) --

_purge_repos = itertools.count(1)


@pytest.fixture
def oci_bot(distribution, tmp_path, clock, store_options):
    """A bot on the real registry (through a counting proxy), alice/bob/erin/carol."""
    from tests.support.fault_proxy import FaultProxy

    proxy = FaultProxy(distribution.url).start()
    config = make_config(
        tmp_path,
        registry=[{"name": "dist", "type": "oci", "url": proxy.url, "purge_concurrency": 4}],
        **store_options,
    )
    bot = build_dispatcher(config, clock=clock)
    for user, role in (("alice", "contributor"), ("bob", "owner"), ("erin", "owner")):
        bot.ctx.roles.grant(Grant(user, Role(role)), by="t", at=clock())
    bot.ctx.roles.grant(Grant("carol", Role.READER), by="t", at=clock())
    bot.proxy, bot.config, bot.registry = proxy, config, distribution
    yield bot
    proxy.stop()


def seed(bot, clock, n=12, *, prefix="b"):
    """n images tagged b0…b(n-1), image i created i days before the test's now."""
    repo = f"purge{next(_purge_repos)}/app"
    images = bot.registry.seed_images(
        repo,
        n,
        created=lambda i: clock.now - timedelta(days=i, minutes=1),
        tag=lambda i: f"{prefix}{i}",
    )
    return repo, {tag: digest for tag, digest, _ in images}


def dry(bot, user, line):
    reply = bot.handle(line + " --dry-run", user=user)
    assert reply.ok, reply.text
    return reply


# -- the database engine: SQLite (a file) or PostgreSQL (tests/support/postgres.py) ----------

PG_PASSWORD_ENV = "ACRBOT_TEST_PG_PASSWORD"
ENGINES = ("sqlite", "postgresql")


@dataclass
class DatabaseUnderTest:
    """One test's database on one engine. ``options`` go into a config (make_config,
    make_bot, make_slack: `database`, `database_password_env` and the `environ` holding the
    password); ``target`` is what `Store(...)` takes; ``environ`` is what a child process
    (`acrbot serve`) needs in its environment."""

    engine: str
    target: Path | ServerDatabase
    options: dict[str, Any]
    environ: dict[str, str]

    def store(self, **kwargs: Any) -> Store:
        return Store(self.target, create=True, **kwargs)


def pg_target(url: str) -> ServerDatabase:
    """The ServerDatabase for a `pg_url` (the test role's password, as the config gives it)."""
    from tests.support.postgres import PASSWORD

    return ServerDatabase(url=url, password=PASSWORD, password_env=PG_PASSWORD_ENV)


def pg_options(url: str) -> dict[str, Any]:
    """Config options for a `pg_url`: make_config(tmp_path, **pg_options(url))."""
    from tests.support.postgres import PASSWORD

    return {
        "database": url,
        "database_password_env": PG_PASSWORD_ENV,
        "environ": {PG_PASSWORD_ENV: PASSWORD},
    }


@pytest.fixture(scope="session")
def pg_cluster():
    """The session's PostgreSQL cluster (started on first use, stopped at the end)."""
    from tests.support.postgres import PostgresCluster

    cluster = PostgresCluster().start()
    yield cluster
    from bot.state import engine_pg

    engine_pg.close_all()
    cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster) -> Any:
    """A fresh, empty database on the session's cluster: its URL (no password in it; the
    password is `tests.support.postgres.PASSWORD`, see pg_target/pg_options). Dropped after
    the test, with every pool the test left open closed first."""
    name = pg_cluster.new_database()
    yield pg_cluster.url(name)
    from bot.state import engine_pg

    engine_pg.close_all()
    with contextlib.suppress(Exception):  # a test that stopped the server
        pg_cluster.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    """Parametrizes a test over both engines ("sqlite", "postgresql")."""
    return request.param


@pytest.fixture
def database(engine: str, tmp_path: Path, request) -> DatabaseUnderTest:
    """The test's database on ``engine``: a file in tmp_path, or a fresh PostgreSQL one."""
    if engine == "sqlite":
        path = tmp_path / "acrbot.db"
        return DatabaseUnderTest("sqlite", path, {"database": "acrbot.db"}, {})
    url = request.getfixturevalue("pg_url")
    options = pg_options(url)
    return DatabaseUnderTest("postgresql", pg_target(url), options, dict(options["environ"]))


@pytest.fixture
def store_options(request) -> dict[str, Any]:
    """Config options make_bot/make_slack/oci_bot add: {} (SQLite), or a fresh PostgreSQL
    database when ACRBOT_TEST_ENGINE=postgresql (every such test on PostgreSQL, for a
    search of the whole suite). A module whose tests always run on both engines overrides it:

        @pytest.fixture
        def store_options(database):
            return database.options
    """
    if os.environ.get("ACRBOT_TEST_ENGINE") == "postgresql":
        return pg_options(request.getfixturevalue("pg_url"))
    return {}


# -- two replicas on one database (tests/servers/test_replicas.py, bench/ha.py) -------------


@pytest.fixture(params=ENGINES)
def replica_database(request, tmp_path: Path, monkeypatch) -> str:
    """The `database = …` value every replica of a multi-replica test shares: one SQLite file
    in WAL mode (two `acrbot serve` on one host), or a fresh PostgreSQL database (ServedBot
    adds the password's variable): every multi-replica test runs on both engines."""
    if request.param == "sqlite":
        return str(tmp_path / "replicas.db")
    from tests.support.postgres import PASSWORD

    monkeypatch.setenv(PG_PASSWORD_ENV, PASSWORD)  # the test's own reads of the config
    return request.getfixturevalue("pg_url")


@pytest.fixture(autouse=True)
def metrics_switch_restored():
    """`acrbot run` called in the test process turns metrics off for the process, and for its
    children through the environment (bot/cli.py, bot/ops/metrics.py): the next test gets the
    switch and those variables as they were (test_metrics.py counted nothing after one).
    (monkeypatch.delenv of an absent variable records nothing to restore: done by hand.)"""
    from bot.ops import metrics

    names = (metrics.SWITCH_ENV, metrics.MULTIPROC_ENV)
    before = {name: os.environ.get(name) for name in names}
    enabled = metrics._enabled
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    metrics._enabled = enabled
