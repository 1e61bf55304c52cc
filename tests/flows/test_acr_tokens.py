"""ACR at its real limits: tokens reused until they near expiry, each operation reading what it
needs once. Counted at the fake by kind (token exchange, token, challenge 401, data plane)."""

import time

import pytest

from bot.app import build_dispatcher
from bot.core.policy import Grant, Role
from bot.core.registry import Order
from tests.support.fixtures import D, acr_config


@pytest.fixture
def session(tmp_path, clock, fake_acr, make_acr):
    def make(**options):
        for i in range(41):  # real manifests: each deletion keeps their bytes for undo
            fake_acr.push_image("ci/app", f"pr-{i}", offset=i)
        fake_acr.push("ci/app", "main", D[99], offset=100)
        fake_acr.push_image("team/api", "1.0")
        fake_acr.push("team/api", "stable", D[51])
        bot = build_dispatcher(
            acr_config(tmp_path, fake_acr, **options), clock=clock, registries=[make_acr()]
        )
        for user, role in (("alice", Role.CONTRIBUTOR), ("bob", Role.OWNER)):
            bot.ctx.roles.grant(Grant(user, role), by="t", at=clock())
        return bot

    return make


@pytest.mark.slow  # a whole session at the fake ACR
def test_a_session_spends_a_handful_of_token_calls_not_three_per_call(session, fake_acr):
    bot = session()
    fake_acr.reset_counts()
    for command in ("repos", "tags team/api", "tags ci/app", "show team/api:stable"):
        assert bot.handle(command, user="alice").ok
    assert bot.handle("delete team/api:1.0 --reason old", user="alice").ok
    assert bot.handle("approve 1", user="bob").ok
    assert bot.handle("purge --filter 'ci/app:^pr-' --reason merged", user="alice").ok
    assert bot.handle("approve 2", user="bob").text.endswith("41 deleted, 0 skipped, 0 failed.")
    assert bot.handle("lock team/api:stable --delete", user="bob").ok

    kinds = fake_acr.kinds()
    assert kinds["data"] >= 100
    assert (kinds["exchange"] + kinds["token"]) / kinds["data"] <= 0.1, kinds
    assert kinds["challenge"] / kinds["data"] <= 0.1, kinds
    assert kinds["exchange"] == 1, kinds  # one refresh token for the whole session


def test_an_approved_untag_reads_the_tag_once_keeps_its_manifest_then_deletes(session, fake_acr):
    bot = session()
    digest = fake_acr.state.repositories["team/api"]["1.0"].digest
    assert bot.handle("delete team/api:1.0 --reason old", user="alice").ok
    fake_acr.reset_counts()
    assert bot.handle("approve 1", user="bob").text == (
        "Request #1 approved and done: deleted 1.0 from prod/team/api."
    )
    data = [(r.method, r.path) for r in fake_acr.requests if r.kind == "data"]
    assert data == [
        ("GET", "/acr/v1/team/api/_tags/1.0"),
        ("GET", f"/v2/team/api/manifests/{digest}"),  # the snapshot `undo` restores from
        ("DELETE", "/acr/v1/team/api/_tags/1.0"),
    ]


@pytest.mark.slow  # a purge at the fake ACR
def test_a_purge_costs_three_requests_a_deleted_tag(session, fake_acr):
    bot = session()
    assert bot.handle("purge --filter 'ci/app:^pr-' --reason merged", user="alice").ok
    fake_acr.reset_counts()
    assert bot.handle("approve 1", user="bob").text.endswith("41 deleted, 0 skipped, 0 failed.")
    kinds = fake_acr.kinds()
    assert kinds["data"] <= 3 * 41, kinds  # a GET of the tag and of its manifest, the DELETE
    assert fake_acr.count("GET", "/acr/v1/ci/app/_tags/") == 41
    assert fake_acr.count("GET", "/v2/ci/app/manifests/") == 41  # the undo snapshots
    assert fake_acr.count("DELETE") == 41
    assert kinds["exchange"] + kinds["token"] + kinds["challenge"] <= 4, kinds


@pytest.mark.slow  # waits for tokens to expire (~3 s)
def test_a_purge_outliving_its_tokens_never_fails(session, fake_acr, make_acr):
    """Tokens that expire within a second, a purge paced to last about three: expired tokens
    are renewed (refreshed ahead of `exp` or after ACR's 401), never a failed item."""
    fake_acr.token_ttl(refresh=1.2, access=0.8)
    bot = session(write_rate=15)
    bot.ctx.registries.get("prod").tokens.renew_before = 0.3
    assert bot.handle("purge --filter 'ci/app:^pr-' --reason merged", user="alice").ok
    fake_acr.reset_counts()
    began = time.monotonic()
    assert bot.handle("approve 1", user="bob").text.endswith("41 deleted, 0 skipped, 0 failed.")
    assert time.monotonic() - began > 2.5
    kinds = fake_acr.kinds()
    assert kinds["exchange"] >= 2 and kinds["token"] >= 3, kinds  # renewed as they expired
    assert sorted(fake_acr.state.repositories["ci/app"]) == ["main"]


def test_tokens_are_renewed_a_minute_before_exp_without_a_challenge(fake_acr, make_acr):
    fake_acr.push("team/api", "1.0", D[1])
    acr = make_acr()
    now = [time.time()]
    acr.tokens.clock = lambda: now[0]
    acr.resolve("team/api", "1.0")
    fake_acr.reset_counts()
    acr.resolve("team/api", "1.0")
    assert fake_acr.kinds() == {"exchange": 0, "token": 0, "challenge": 0, "data": 1, "arm": 0}
    now[0] += 4500 - 59  # the access token has less than a minute left: renewed first
    acr.resolve("team/api", "1.0")
    assert fake_acr.kinds() == {"exchange": 0, "token": 1, "challenge": 0, "data": 2, "arm": 0}
    now[0] += 11700  # and the refresh token too
    acr.resolve("team/api", "1.0")
    assert fake_acr.kinds() == {"exchange": 1, "token": 2, "challenge": 0, "data": 3, "arm": 0}


def test_a_revoked_token_is_replaced_after_the_401(fake_acr, make_acr):
    fake_acr.push("team/api", "1.0", D[1])
    acr = make_acr()
    acr.resolve("team/api", "1.0")
    fake_acr.state.access_tokens.clear()  # revoked at the registry
    fake_acr.state.refresh_tokens.clear()
    fake_acr.reset_counts()
    assert acr.resolve("team/api", "1.0") == D[1]
    assert fake_acr.kinds() == {"exchange": 1, "token": 1, "challenge": 1, "data": 1, "arm": 0}
    challenge = next(r for r in fake_acr.requests if r.kind == "challenge")
    assert challenge.status == 401


def test_each_scope_gets_its_own_token(fake_acr, make_acr):
    """A token for one repository's reads does not serve another's, nor a DELETE: the fake
    refuses it as ACR does, and the cache asks once per scope."""
    for repo in ("a", "b"):
        fake_acr.push(repo, "1", D[1])
        fake_acr.push(repo, "2", D[2])
    acr = make_acr()
    fake_acr.reset_counts()
    for repo in ("a", "b", "a", "b"):
        acr.list_tags(repo, order=Order.NAME, page_size=10)
    acr.untag("a", "1")
    acr.untag("a", "2")
    kinds = fake_acr.kinds()
    assert kinds["token"] == 3, kinds  # a:metadata_read, b:metadata_read, a:delete
    assert kinds["exchange"] == 1, kinds


def test_refused_azure_credentials_fail_in_one_line_without_looping(fake_acr, make_acr):
    from azure.core.credentials import AccessToken

    from bot.core.errors import RegistryError

    class Refused:  # an identity ACR does not accept
        def get_token(self, *scopes, **kwargs):
            return AccessToken("aad-token-acr-refuses", int(time.time()) + 3600)

    fake_acr.push("team/api", "1.0", D[1])
    acr = make_acr(credential=Refused())
    fake_acr.reset_counts()
    with pytest.raises(RegistryError) as caught:
        acr.resolve("team/api", "1.0")
    assert str(caught.value).startswith(
        "prod rejected the bot's Azure credentials (401) for team/api:1.0"
    )
    assert "aad-token-acr-refuses" not in str(caught.value)
    assert len(fake_acr.requests) <= 4  # a challenge, the exchange and one more try


def test_no_token_reaches_a_log_or_a_reply(session, fake_acr, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    bot = session()
    replies = [
        bot.handle("tags team/api", user="alice"),
        bot.handle("delete team/api:1.0 --reason old", user="alice"),
        bot.handle("approve 1", user="bob"),
    ]
    tokens = [*fake_acr.state.refresh_tokens, *fake_acr.state.access_tokens]
    assert tokens
    seen = caplog.text + "".join(repr(r) for r in replies)
    assert not [t for t in tokens if t in seen or t.split(".")[1] in seen]
