"""Log lines as text or JSON: one object a line, the job's id on every line of its trail,
and secrets redacted in both formats."""

import io
import json
import logging
import sys

import pytest

from bot.core import redaction
from bot.ops import logs
from tests.support.fixtures import AdminRegistry


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord(
        {"name": "acrbot.test", "levelno": logging.INFO, "levelname": "INFO", "msg": message}
    )
    made.args = args
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_the_fields_the_extras_and_the_job():
    formatter = logs.JsonFormatter()
    with logs.job_context("trigger:abc"):
        made = record("command %s: %s", "tags", "ok", command="tags", ran=0.25)
        logs.JobFilter().filter(made)
    line = json.loads(formatter.format(made))
    assert {k: line[k] for k in ("level", "logger", "msg", "job", "command", "ran")} == {
        "level": "INFO",
        "logger": "acrbot.test",
        "msg": "command tags: ok",
        "job": "trigger:abc",
        "command": "tags",
        "ran": 0.25,
    }
    assert line["ts"].endswith("+00:00") and isinstance(line["pid"], int)


def test_json_and_text_redact_secrets_in_the_message_extras_and_traceback():
    secret = 'pa"ss\\word-123'  # JSON would escape it: redaction happens before that
    redaction.REDACTOR.add(secret)
    try:
        raise RuntimeError(f"failed with {secret}")
    except RuntimeError:
        made = record("got %s", secret, detail=f"x{secret}x")
        made.exc_info = sys.exc_info()
    json_line = logs.JsonFormatter().format(made)
    text = logs.TextFormatter().format(made)
    for output in (json_line, text):
        assert secret not in output and json.dumps(secret)[1:-1] not in output
    line = json.loads(json_line)
    assert line["msg"] == "got [redacted]" and line["detail"] == "x[redacted]x"
    assert "RuntimeError: failed with [redacted]" in line["exc"]
    assert "got [redacted]" in text and "failed with [redacted]" in text


def test_a_text_line_ends_with_its_job():
    made = record("job started")
    made.job = "event:Ev1"
    assert logs.TextFormatter().format(made).endswith("acrbot.test: job started [job=event:Ev1]")


@pytest.mark.parametrize(
    ("key", "job"),
    [
        ("reply:trigger:12.34", "trigger:12.34"),
        ("reply:trigger:12.34:note2", "trigger:12.34"),
        ("refused:event:Ev9", "event:Ev9"),
        ("home:page:0123abcd", "page:0123abcd"),
        ("sorry:trigger:1", "trigger:1"),
        ("card:7", None),
        ("outcome:7:done:thread", None),
    ],
)
def test_the_job_an_outbox_item_answers(key, job):
    assert logs.job_of_outbox_key(key) == job


@pytest.fixture(params=["json", "text"])
def captured(request, caplog):
    """Every log line of this process, in the format under test, as `acrbot serve` writes
    them (the redaction installed on the handler), at DEBUG: bodies included."""
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    handler = logs.handler(request.param, out)
    logging.getLogger().addHandler(handler)
    redaction.install()
    yield request.param, out
    logging.getLogger().removeHandler(handler)


def test_a_rotation_over_slack_leaves_no_secret_in_the_logs(make_slack, registry, captured):
    fmt, out = captured
    backend = AdminRegistry(registry)
    slack = make_slack(backend=backend)
    reply = slack.say("UDAVE", "rotate password2 --reason 'quarterly rotation'")
    secret = backend.passwords["password2"]
    assert secret in json.dumps(reply["blocks"])  # it was delivered, to the caller
    slack.fake.wait_for("chat.postMessage")
    slack.stop()
    written = out.getvalue()
    assert secret not in written
    assert "[redacted]" in written  # slack_sdk logged the body: the redaction took it out
    if fmt == "json":
        lines = [json.loads(line) for line in written.splitlines()]
        done = next(line for line in lines if line["msg"] == "command rotate by UDAVE: ok")
        trail = [line["msg"] for line in lines if line.get("job") == done["job"]]
        assert {"acked command: queued", "command rotate by UDAVE: ok"} <= set(trail)
    else:
        assert "command rotate by UDAVE: ok [job=trigger:" in written


def test_the_secrets_the_bot_holds_from_the_start_are_redacted_from_every_line(tmp_path, captured):
    """Only handed-out passwords used to be registered: a library logging a registry's
    password, the audit key, the Blob key or a Slack token wrote it out."""
    import secrets as random

    from bot.app import build_context, register_secrets
    from bot.core.config import SlackSettings, from_mapping

    _, out = captured
    values = {name: f"{name}-{random.token_hex(8)}" for name in ("REG_PW", "AUDIT")}
    values["BLOBKEY"] = random.token_urlsafe(24) + "=="  # an account key ends so
    connection = (
        "DefaultEndpointsProtocol=https;AccountName=acct;"
        f"AccountKey={values['BLOBKEY']};EndpointSuffix=core.windows.net"
    )
    config = from_mapping(
        {
            "database": "acrbot.db",
            "registry": [
                {
                    "name": "h",
                    "type": "oci",
                    "url": "https://harbor.example.com",
                    "username": "robot",
                    "password_env": "REG_PW",
                }
            ],
            "audit": {"key_env": "AUDIT", "blob": {"connection_string_env": "BLOB"}},
        },
        base=tmp_path,
        environ={**values, "BLOB": connection},
    )
    build_context(config, create=True).store.close()
    slack = SlackSettings(
        bot_token=f"xoxb-{random.token_hex(8)}",
        signing_secret=random.token_hex(8),
        app_token=f"xapp-{random.token_hex(8)}",
    )
    register_secrets(settings=slack)
    held = [*values.values(), connection, slack.bot_token, slack.signing_secret, slack.app_token]
    log = logging.getLogger("slack_sdk.web.base_client")  # a library that logs bodies
    for secret in held:
        log.warning("sending %s", secret)
        try:
            raise RuntimeError(f"failed with {secret}")
        except RuntimeError:
            logging.getLogger("azure.core").exception("boom")
    written = out.getvalue()
    assert written.count("[redacted]") >= len(held)  # one line per secret at least
    assert [s for s in held if s in written] == []
