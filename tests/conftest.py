"""Every test's fixtures (tests/support/fixtures.py) and the markers each folder implies.

tests/unit/     one module or function at a time, in this process
tests/flows/    conversations through the whole bot, in this process (fake Slack, fake ACR)
tests/servers/  real server processes: docker-registry, Azurite, `acrbot serve`   -> `server`
tests/fakes/    the fakes' own tests: each refuses what the real service refuses
tests/support/  the fakes, the fixtures and one helpers module (no tests)

A test anywhere that uses a real server's fixture (`distribution`, `azurite`, …) is marked
`server` too, so `make test-fast` (`-m "not server and not slow"`) never starts one. A test
on PostgreSQL (`pg_url`, or the `database`/`engine` fixture's "postgresql" case) is marked
`postgres` and `server`: `make test-fast` runs its SQLite case only; `make test` runs both
(`pytest -m postgres` runs just those).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.support.fixtures"]

SERVERS = Path(__file__).parent / "servers"
# Fixtures that start a server process (session- or module-scoped: one start is seconds).
SERVER_FIXTURES = frozenset({"distribution", "distribution_basic", "azurite"})
POSTGRES_FIXTURES = frozenset({"pg_cluster", "pg_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(SERVERS) or SERVER_FIXTURES & set(
            getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.server)
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and "postgresql" in (
            callspec.params.get("engine"),
            callspec.params.get("replica_database"),
        )
        if on_postgres or POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)
            item.add_marker(pytest.mark.server)
