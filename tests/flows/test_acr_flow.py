"""The bot on Azure Container Registry: approvals, admin user, and rotation that leaks nothing."""

import json
import logging
from types import SimpleNamespace

import pytest

from bot.app import build_dispatcher
from bot.core.config import from_mapping
from bot.core.policy import Grant, Role
from bot.core.render_text import render
from bot.state.facts import MemoryFacts
from handlers.registries import BACKENDS
from tests.support.fixtures import make_config

D1 = "sha256:" + "a" * 64


@pytest.fixture
def bot(tmp_path, clock, acr, fake_acr):
    digest = fake_acr.push_image("team/api", "1.0")  # real bytes: undo keeps a copy
    fake_acr.push("team/api", "stable", digest)
    dispatcher = build_dispatcher(make_config(tmp_path), clock=clock, registries=[acr])
    for user, role in (
        ("alice", Role.CONTRIBUTOR),
        ("bob", Role.OWNER),
        ("dave", Role.ONCALL),
        ("carol", Role.READER),
    ):
        dispatcher.ctx.roles.grant(Grant(user, role), by="test", at=clock())
    return dispatcher


def test_untag_request_approved_on_acr(bot, fake_acr):
    assert bot.handle("delete team/api:1.0 --reason 'old'", user="alice").ok
    assert bot.handle("approve 1", user="bob").text == (
        "Request #1 approved and done: deleted 1.0 from prod/team/api."
    )
    assert sorted(fake_acr.state.repositories["team/api"]) == ["stable"]


def test_full_reference_with_the_acr_login_server(bot, fake_acr):
    reply = bot.handle(f"show {fake_acr.login_server}/team/api:stable", user="carol")
    assert reply.data["tags"] == ["1.0", "stable"]


def test_rotation_secret_reaches_only_the_caller(bot, fake_acr, caplog):
    caplog.set_level(logging.DEBUG)
    reply = bot.handle("rotate password2 --reason 'quarterly rotation'", user="dave")
    secret = fake_acr.state.passwords["password2"]
    assert reply.ok and reply.secret == secret
    assert reply.text == "Regenerated password2 of prod (admin user testreg)."
    public = json.dumps(reply.as_json()) + "".join(reply.notes) + repr(reply)
    assert secret not in public
    assert secret not in caplog.text
    bot.ctx.store.close()
    for path in bot.ctx.store.path.parent.glob("acrbot.db*"):
        assert secret.encode() not in path.read_bytes()
    assert render(reply).count(secret) == 1


def test_rotation_with_admin_disabled(bot, fake_acr):
    assert bot.handle("admin disable", user="bob").text == "Admin user on prod is disabled."
    assert fake_acr.state.admin_enabled is False
    assert bot.handle("rotate password --reason x", user="dave").text == (
        "admin user is disabled on prod; an owner can run `admin enable --registry prod`"
    )


def test_rotation_into_key_vault_returns_only_the_secret_name(tmp_path, clock, fake_acr, make_acr):
    stored = {}

    class Vault:  # the SecretClient surface the backend uses
        def set_secret(self, name, value):
            stored[name] = value
            return SimpleNamespace(name=name, properties=SimpleNamespace(version="v42"))

    acr = make_acr(key_vault=Vault(), key_vault_secret="acr-prod-password")
    dispatcher = build_dispatcher(make_config(tmp_path), clock=clock, registries=[acr])
    dispatcher.ctx.roles.grant(Grant("dave", Role.ONCALL), by="t", at=clock())
    reply = dispatcher.handle("rotate password --reason x", user="dave")
    assert reply.text == (
        "Regenerated password of prod (admin user testreg); the new value is "
        "in Key Vault as acr-prod-password (version v42)."
    )
    assert reply.secret is None
    assert stored["acr-prod-password"] == fake_acr.state.passwords["password"]
    assert stored["acr-prod-password"] not in render(reply)


class FailingVault:
    """The SecretClient surface, failing ``failures`` times the way the SDK does (connection
    errors after its own retries, then a 503 answer)."""

    def __init__(self, failures):
        from azure.core.exceptions import HttpResponseError, ServiceRequestError

        self.errors = [ServiceRequestError("connection refused"), HttpResponseError("503")]
        self.failures, self.calls, self.stored = failures, 0, {}

    def set_secret(self, name, value):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.errors[min(self.calls - 1, 1)]
        self.stored[name] = value
        return SimpleNamespace(name=name, properties=SimpleNamespace(version="v7"))


def vault_bot(tmp_path, clock, make_acr, vault):
    acr = make_acr(key_vault=vault, key_vault_secret="acr-prod-password", vault_backoff=0)
    dispatcher = build_dispatcher(make_config(tmp_path), clock=clock, registries=[acr])
    dispatcher.ctx.roles.grant(Grant("dave", Role.ONCALL), by="t", at=clock())
    return dispatcher


def test_key_vault_failures_after_regeneration_are_retried(tmp_path, clock, fake_acr, make_acr):
    vault = FailingVault(failures=2)
    reply = vault_bot(tmp_path, clock, make_acr, vault).handle(
        "rotate password --reason x", user="dave"
    )
    assert reply.text.endswith("in Key Vault as acr-prod-password (version v7).")
    assert vault.calls == 3 and reply.secret is None
    assert vault.stored["acr-prod-password"] == fake_acr.state.passwords["password"]


def test_key_vault_down_after_regeneration_shows_the_password_once(
    tmp_path, clock, fake_acr, make_acr, caplog
):
    """The password was regenerated (the old one is gone) and Key Vault did not take the new
    one: it used to be lost. The requester gets it, once, as without Key Vault."""
    caplog.set_level(logging.DEBUG)
    vault = FailingVault(failures=99)
    bot = vault_bot(tmp_path, clock, make_acr, vault)
    reply = bot.handle("rotate password --reason x", user="dave")
    secret = fake_acr.state.passwords["password"]
    assert vault.calls == 3 and vault.stored == {}
    assert reply.ok and reply.secret == secret
    assert reply.text.startswith(
        "Regenerated password of prod (admin user testreg), but Key Vault did not store it ("
    )
    assert reply.text.endswith(
        "): here it is, shown once. Put it in Key Vault yourself; it is not kept anywhere else."
    )
    assert render(reply).count(secret) == 1
    public = json.dumps(reply.as_json()) + "".join(reply.notes) + repr(reply)
    assert secret not in public and secret not in caplog.text
    bot.ctx.store.close()
    for path in bot.ctx.store.path.parent.glob("acrbot.db*"):
        assert secret.encode() not in path.read_bytes()


def test_acr_config_builds_the_sdk_clients(tmp_path):
    config = from_mapping(
        {
            "registry": [
                {
                    "name": "prod",
                    "type": "acr",
                    "login_server": "prodreg.azurecr.io",
                    "subscription_id": "00000000-0000-0000-0000-000000000000",
                    "resource_group": "rg",
                    "cloud": "usgov",
                }
            ]
        },
        base=tmp_path,
        environ={},
    )
    registry = BACKENDS["acr"](config.registries[0], MemoryFacts())
    assert (registry.name, registry.kind, registry.login_server) == (
        "prod",
        "acr",
        "prodreg.azurecr.io",
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"login_server": "https://x.azurecr.io"},
            "registry[0].login_server: expected a host name such as myreg.azurecr.io",
        ),
        ({"cloud": "mars"}, "registry[0].cloud: expected one of public, china, usgov"),
        (
            {"key_vault_url": "https://v.vault.azure.net"},
            "registry[0].key_vault_secret: key_vault_url and key_vault_secret go together",
        ),
    ],
)
def test_acr_config_errors(tmp_path, table, message):
    from bot.core.errors import ConfigError

    base = {
        "name": "prod",
        "type": "acr",
        "login_server": "prodreg.azurecr.io",
        "subscription_id": "s",
        "resource_group": "rg",
    }
    with pytest.raises(ConfigError) as exc:
        from_mapping({"registry": [{**base, **table}]}, base=tmp_path, environ={})
    assert str(exc.value).startswith(message)


def test_default_azure_credential_through_a_managed_identity_endpoint(
    tmp_path, clock, fake_acr, monkeypatch
):
    """The production factory, DefaultAzureCredential included, with no network: the managed
    identity (App Service) variables point at a local token endpoint."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.support.fake_acr import ARM_TOKEN

    asked = []

    class TokenEndpoint(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            asked.append((self.path, self.headers.get("X-IDENTITY-HEADER")))
            body = json.dumps(
                {
                    "access_token": ARM_TOKEN,
                    "expires_on": int(time.time()) + 3600,
                    "resource": "https://management.azure.com",
                    "token_type": "Bearer",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    for name in (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "MSI_ENDPOINT",
        "MSI_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/msi")
    monkeypatch.setenv("IDENTITY_HEADER", "local-test-header")
    try:
        fake_acr.push("team/web", "v1", D1)
        config = from_mapping(
            {
                "database": "a.db",
                "registry": [
                    {
                        "name": "prod",
                        "type": "acr",
                        "login_server": fake_acr.login_server,
                        "subscription_id": fake_acr.subscription,
                        "resource_group": fake_acr.resource_group,
                        "resource_name": fake_acr.registry_name,
                        "arm_endpoint": fake_acr.url,
                        "ca_bundle": fake_acr.ca_path,
                    }
                ],
            },
            base=tmp_path,
            environ={},
        )
        dispatcher = build_dispatcher(config, clock=clock, create=True)
        dispatcher.ctx.roles.grant(Grant("bob", Role.OWNER), by="t", at=clock())
        assert dispatcher.handle("tags team/web", user="bob").text == "1 tag in prod/team/web"
        assert dispatcher.handle("admin status", user="bob").text == (
            "Admin user on prod is enabled (user testreg)."
        )
        assert asked and asked[0][1] == "local-test-header"
    finally:
        server.shutdown()
        server.server_close()
