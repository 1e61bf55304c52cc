"""`database_auth = "azure"`: an Entra ID token is the password, asked of the credential
(DefaultAzureCredential in production; injected here, never patched) for each new connection
and fetched again before it expires; the token is never logged or stored."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from bot.core.database import AZURE_SCOPE, ServerDatabase
from bot.core.errors import ConfigError
from bot.state.engine_pg import REFRESH_BEFORE, TokenPassword
from bot.state.store import Store


@dataclass
class AccessToken:  # azure.core.credentials.AccessToken's shape
    token: str
    expires_on: int


class Credential:
    def __init__(self, tokens: list[str], *, lifetime: int = 3600) -> None:
        self.tokens, self.lifetime, self.scopes = tokens, lifetime, []
        self.now = 1_000_000

    def get_token(self, *scopes: str) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.tokens.pop(0), self.now + self.lifetime)


def test_token_is_fetched_again_before_it_expires():
    credential = Credential(["tok-1", "tok-2"])
    password = TokenPassword(credential, clock=lambda: credential.now)
    assert password() == "tok-1"
    credential.now += 3600 - REFRESH_BEFORE - 1
    assert password() == "tok-1"  # still more than five minutes left
    credential.now += 2
    assert password() == "tok-2"
    assert credential.scopes == [(AZURE_SCOPE,), (AZURE_SCOPE,)]


def test_store_connects_with_the_token_as_password(pg_cluster, pg_url, caplog):
    caplog.set_level(logging.DEBUG)
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOi-fake-entra-token"
    pg_cluster.sql(f"ALTER ROLE acrbot PASSWORD '{token}'")
    try:
        credential = Credential([token, token])
        target = ServerDatabase(url=pg_url, auth="azure")
        store = Store(target, create=True, credential=credential)
        assert store.db.execute("select current_user").fetchone() == ("acrbot",)
        assert credential.scopes and set(credential.scopes) == {(AZURE_SCOPE,)}
        store.close()
        refused = Credential(["not-the-token"])
        with pytest.raises(ConfigError) as raised:
            Store(ServerDatabase(url=pg_url, auth="azure"), credential=refused)
        assert "the Entra ID token was refused" in str(raised.value)
        assert "not-the-token" not in str(raised.value)
        assert token not in caplog.text and "not-the-token" not in caplog.text
    finally:
        from tests.support.postgres import PASSWORD

        pg_cluster.sql(f"ALTER ROLE acrbot PASSWORD '{PASSWORD}'")
