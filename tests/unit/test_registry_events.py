"""Registry event bodies read into typed events: the three senders' shapes, what is ignored,
what is refused; `[events]` and `[[watch]]` configuration."""

import json
from datetime import UTC, datetime

import pytest

from bot.core.config import from_mapping
from bot.core.errors import ConfigError
from bot.core.event_rules import require_secret
from bot.core.registry_events import Action, EventFormatError, Source, parse
from tests.support.registry_payloads import (
    DIGEST,
    acr_webhook,
    cloudevent,
    distribution_event,
    envelope,
    eventgrid,
    validation,
)

SECRET = "s" * 32


def test_parse_distribution_push_reads_every_field():
    parsed = parse(envelope(distribution_event()))
    (event,) = parsed.events
    assert event.id == "distribution:asdf-asdf-asdf-asdf-0"
    assert event.source is Source.DISTRIBUTION
    assert event.action is Action.PUSH
    assert (event.repository, event.tag, event.digest) == ("team/api", "v1", DIGEST)
    assert (event.actor, event.addr, event.host) == ("ci", "10.0.0.7:5000", "registry.example:5000")
    assert event.size == 708
    assert event.at == datetime(2026, 12, 5, 4, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "action"),
    [
        ({"action": "delete", "tag": None}, Action.DELETE),
        ({"action": "delete", "digest": None}, Action.UNTAG),
        ({"action": "delete", "digest": None, "tag": None}, Action.REPO_DELETE),
    ],
)
def test_parse_distribution_deletes(changes, action):
    (event,) = parse(envelope(distribution_event(**changes))).events
    assert event.action is action


def test_parse_ignores_blob_pushes_and_pulls_but_counts_them():
    blob = distribution_event(id="b", tag=None, media="application/octet-stream")
    pull = distribution_event(id="p", action="pull")
    parsed = parse(envelope(blob, pull, distribution_event(id="m")))
    assert [e.id for e in parsed.events] == ["distribution:m"]
    assert parsed.ignored == 2


def test_parse_acr_webhook_push_and_repository_delete():
    (push,) = parse(json.dumps(acr_webhook()).encode()).events
    assert push.source is Source.ACR and push.host == "demo.azurecr.io" and push.actor is None
    body = acr_webhook("delete", tag=None, digest=None)
    (gone,) = parse(json.dumps(body).encode()).events
    assert gone.action is Action.REPO_DELETE


def test_parse_eventgrid_schema_and_cloudevents():
    data = acr_webhook()
    grid = parse(json.dumps([eventgrid("Microsoft.ContainerRegistry.ImagePushed", data)]).encode())
    assert grid.events[0].source is Source.EVENTGRID
    assert grid.events[0].id == f"eventgrid:{data['id']}"
    deleted = acr_webhook("delete", tag=None)
    one = parse(
        json.dumps(cloudevent("Microsoft.ContainerRegistry.ImageDeleted", deleted)).encode()
    )
    assert one.events[0].action is Action.DELETE
    charts = [
        cloudevent("Microsoft.ContainerRegistry.ChartPushed", data, id=str(i)) for i in range(3)
    ]
    assert parse(json.dumps(charts).encode()).ignored == 3


def test_parse_eventgrid_validation_returns_the_code():
    assert parse(validation("abc")).validation_code == "abc"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"hello": 1}', "not a registry event"),
        (b"[1, 2]", "neither Event Grid events nor CloudEvents"),
        (b'{"events": [1]}', "not an object"),
        (b'{"events": [{"action": "push", "target": {}}]}', "without target.repository"),
        (b'{"specversion": "0.3", "type": "x"}', "specversion"),
    ],
)
def test_parse_refuses_what_is_not_an_event(body, message):
    with pytest.raises(EventFormatError, match=message):
        parse(body)


def test_parse_keeps_strings_bounded():
    (event,) = parse(envelope(distribution_event(actor="x" * 100_000))).events
    assert len(event.actor) == 512


def _config(tmp_path, data, environ=None):
    base = {"registry": [{"name": "prod", "type": "oci-layout", "path": str(tmp_path)}]}
    return from_mapping({**base, **data}, base=tmp_path, environ=environ or {})


def test_config_events_and_watch(tmp_path):
    config = _config(
        tmp_path,
        {
            "events": {"secret_env": "EV"},
            "watch": [
                {"repos": ["team/*"], "actions": ["push"], "tags": "^v\\d", "channel": "C1W"}
            ],
        },
        {"EV": SECRET},
    )
    assert config.events.secret == SECRET and SECRET not in repr(config.events)
    (rule,) = config.watches
    (event,) = parse(envelope(distribution_event())).events
    assert rule.matches(event, "prod")
    (other,) = parse(envelope(distribution_event(tag="latest"))).events
    assert not rule.matches(other, "prod")


def test_the_receiver_refuses_to_start_without_its_secret(tmp_path):
    for environ in ({}, {"EV": "short"}):
        config = _config(tmp_path, {"events": {"secret_env": "EV"}}, environ)
        with pytest.raises(ConfigError, match=r"events.secret_env: \$EV must hold a secret"):
            require_secret(config.events)


@pytest.mark.parametrize(
    ("data", "environ", "message"),
    [
        ({"events": {"secret_env": "EV", "x": 1}}, {"EV": SECRET}, "events.x: unknown key"),
        (
            {"events": {"secret_env": "EV", "reconcile_every": "1m"}},
            {},
            "events.reconcile_every: 1m is out of bounds: from 5m to 7d",
        ),
        ({"watch": [{"channel": "#ops"}]}, {}, "watch\\[0\\].channel: expected a Slack channel"),
        (
            {"watch": [{"channel": "C1W", "registry": "x"}]},
            {},
            "watch\\[0\\].registry: no registry",
        ),
        ({"watch": [{"channel": "C1W", "actions": ["pull"]}]}, {}, "watch\\[0\\].actions"),
        (
            {"watch": [{"channel": "C1W", "tags": "(a)\\1"}]},
            {},
            "watch\\[0\\].tags: .*backreference",
        ),
    ],
)
def test_config_refuses(tmp_path, data, environ, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, data, environ)
