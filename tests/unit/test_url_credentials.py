"""Credentials in URLs (issue 27, finding 3): refused in the configuration, and a URL's user
name and password never reach a reply, the audit, `doctor`, a log line or an exception.

The scanning tests read every file the bot wrote (the database, its WAL) and every line it
logged, and look for the password itself.
"""

import contextlib
import io
import logging
from pathlib import Path

import pytest

from bot import cli, doctor
from bot.core import redaction
from bot.core.config import from_mapping, slack_settings
from bot.core.errors import ConfigError, RegistryError
from bot.core.redaction import redact_urls
from bot.ops import logs
from handlers.registries.oci import OciRegistry
from tests.support.fixtures import CountingRegistry
from tests.support.helpers import closed_port

PASSWORD = "hunter2-Pw0rd"
LEAKY = f"https://robot:{PASSWORD}@registry.example.com/v2/"


def scan(root: Path) -> list[str]:
    """Every file below ``root`` that holds the password (the database, its WAL, …)."""
    return [str(p) for p in root.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"name": "h", "type": "oci", "url": f"https://robot:{PASSWORD}@h.example.com"}, "url"),
        ({"name": "h", "type": "oci", "url": f"http://robot:{PASSWORD}@127.0.0.1:5000"}, "url"),
        ({"name": "h", "type": "oci", "url": f"https://{PASSWORD}@h.example.com"}, "url"),
        (
            {
                "name": "h",
                "type": "oci",
                "url": "https://h.example.com",
                "token_realms": [f"https://u:{PASSWORD}@auth.example.com"],
            },
            "token_realms[0]",
        ),
        (
            {
                "name": "p",
                "type": "acr",
                "login_server": "p.azurecr.io",
                "subscription_id": "s",
                "resource_group": "g",
                "key_vault_url": f"https://u:{PASSWORD}@kv.vault.azure.net",
                "key_vault_secret": "x",
            },
            "key_vault_url",
        ),
        (
            {
                "name": "p",
                "type": "acr",
                "login_server": "p.azurecr.io",
                "subscription_id": "s",
                "resource_group": "g",
                "arm_endpoint": f"https://u:{PASSWORD}@management.example.com",
            },
            "arm_endpoint",
        ),
    ],
)
def test_config_refuses_a_url_with_credentials_and_gives_the_env_advice(tmp_path, table, key):
    """`url = "https://robot:pw@host"` used to pass the "no secrets in the file" rule."""
    with pytest.raises(ConfigError) as exc:
        from_mapping({"registry": [table]}, base=tmp_path, environ={})
    message = str(exc.value)
    assert message.startswith(f"registry[0].{key}: http"), message
    assert "://[redacted]@" in message
    assert message.endswith(
        "has a user name or password in it; secrets are never written in the file: give the "
        'URL without them, username = "…" and password_env = "VARIABLE" (or token_env) naming '
        "the environment variable"
    )
    assert PASSWORD not in message


def test_config_refuses_credentials_or_a_sas_in_the_archive_url(tmp_path):
    reg = {"name": "r", "type": "oci-layout", "path": "reg"}
    for url, start in [
        (f"https://acct:{PASSWORD}@acct.blob.core.windows.net", "audit.blob.account_url: https://"),
        (
            f"https://acct.blob.core.windows.net/?sv=2022&sig={PASSWORD}",
            "audit.blob.account_url: has a SAS token",
        ),
    ]:
        data = {"registry": [reg], "audit": {"blob": {"account_url": url}}}
        with pytest.raises(ConfigError) as exc:
            from_mapping(data, base=tmp_path, environ={})
        assert str(exc.value).startswith(start), str(exc.value)
        assert PASSWORD not in str(exc.value)


def test_oci_registry_refuses_a_url_with_credentials():
    """Built by hand (a notebook, a script): httpx would send them to every host as Basic."""
    with pytest.raises(ValueError) as exc:
        OciRegistry("h", LEAKY)
    assert str(exc.value) == (
        "h: https://[redacted]@registry.example.com/v2/ has a user name or password in it; "
        "pass username= and password= (or token=) instead"
    )


def test_doctor_and_run_with_credentials_in_the_url_show_no_password(tmp_path, monkeypatch):
    """Reproduced: with the registry unreachable, the password was in the reply, the audit's
    error column and `doctor --json`. Now the file is refused, and the refusal hides it."""
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    path = tmp_path / "acrbot.toml"
    port = closed_port()
    path.write_text(
        'database = "acrbot.db"\n[[registry]]\nname = "h"\ntype = "oci"\n'
        f'url = "http://robot:{PASSWORD}@127.0.0.1:{port}"\n'
    )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli.main(["doctor", "--json", "--config", str(path)]) == 1
        assert cli.main(["run", "--config", str(path), "--user", "alice", "repos"]) != 0
    shown = out.getvalue() + err.getvalue()
    assert "has a user name or password in it" in shown
    assert PASSWORD not in shown
    assert scan(tmp_path) == [str(path)]  # only the file the operator wrote


class LeakyRegistry(CountingRegistry):
    """A backend whose errors quote a URL with its credentials (an SDK's message, a backend
    built by hand): whatever raised, the password must not get further."""

    def list_tags(self, *args, **kwargs):
        raise RegistryError(f"demo ({LEAKY}) is unreachable (connection refused)")

    def repositories(self, *args, **kwargs):
        raise RuntimeError(f"bug while calling {LEAKY}")  # an unexpected error: logged


def test_a_url_with_credentials_never_reaches_a_reply_the_audit_or_a_log(
    make_bot, registry, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    handler = logs.handler("json", out)
    logging.getLogger().addHandler(handler)
    redaction.install()
    try:
        bot = make_bot(backend=LeakyRegistry(registry))
        tags = bot.text("carol", "tags baseimages/fedora")
        repos = bot.text("carol", "repos")
    finally:
        logging.getLogger().removeHandler(handler)
    assert tags == (
        "error: demo (https://[redacted]@registry.example.com/v2/) is unreachable "
        "(connection refused)"
    )
    assert "something went wrong on our side" in repos
    errors = [e.as_dict()["error"] for e in bot.ctx.audit.entries()]
    assert "demo (https://[redacted]@registry.example.com/v2/) is unreachable" in str(errors)
    bot.ctx.store.close()
    assert scan(tmp_path) == []  # the database and its WAL: the audit's error column
    written = out.getvalue()
    assert "https://[redacted]@registry.example.com" in written  # the traceback, redacted
    assert PASSWORD not in written


def test_doctor_output_hides_a_urls_credentials():
    checks = [doctor.failed("registry h", f"h ({LEAKY}) is unreachable", f"check {LEAKY}")]
    for text in (doctor.as_json(checks), doctor.render(checks)):
        assert PASSWORD not in text
        assert "https://[redacted]@registry.example.com/v2/" in text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://u:p@h/x", "https://[redacted]@h/x"),
        ("(http://u:p@ss@h:5000)", "(http://[redacted]@h:5000)"),  # a raw @ in the password
        ('{"u":"https://u:p@h","x":"y@z"}', '{"u":"https://[redacted]@h","x":"y@z"}'),
        ("https://h/path@x and mail@example.com", "https://h/path@x and mail@example.com"),
        ("no url here", "no url here"),
    ],
)
def test_redact_urls(text, shown):
    assert redact_urls(text) == shown


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://slack.example.com/api/", "SLACK_API_URL: http://slack.example.com/api/ is plain"),
        ("ftp://slack.example.com/api/", "SLACK_API_URL: expected an https:// URL"),
        (f"https://u:{PASSWORD}@slack.com/api/", "SLACK_API_URL: https://[redacted]@slack.com"),
    ],
)
def test_slack_api_url_over_http_only_to_loopback(url, message):
    """The bot token goes with every Web API call: never in clear to another host."""
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SLACK_API_URL": url}
    with pytest.raises(ConfigError) as exc:
        slack_settings(env)
    assert str(exc.value).startswith(message), str(exc.value)
    assert PASSWORD not in str(exc.value)
    for ok in ("http://127.0.0.1:9/api/", "http://localhost:9/api/", "https://slack.com/api/"):
        assert slack_settings({**env, "SLACK_API_URL": ok}).api_url == ok
