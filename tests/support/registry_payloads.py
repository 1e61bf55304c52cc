"""Registry event bodies as their senders send them (the shapes from distribution's
notifications docs, ACR's webhook reference and Event Grid's Container Registry schema)."""

from __future__ import annotations

import json
from typing import Any

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def distribution_event(
    *,
    id: str = "asdf-asdf-asdf-asdf-0",
    action: str = "push",
    repository: str = "team/api",
    tag: str | None = "v1",
    digest: str | None = DIGEST,
    media: str = MANIFEST,
    actor: str = "ci",
    addr: str = "10.0.0.7:5000",
    host: str = "registry.example:5000",
) -> dict[str, Any]:
    target: dict[str, Any] = {
        "mediaType": media,
        "size": 708,
        "length": 708,
        "repository": repository,
    }
    if digest:
        target["digest"] = digest
    if tag:
        target["tag"] = tag
    return {
        "id": id,
        "timestamp": "2026-12-05T04:00:00.123456789Z",
        "action": action,
        "target": target,
        "request": {
            "id": "req-1",
            "addr": addr,
            "host": host,
            "method": "PUT",
            "useragent": "docker/27",
        },
        "actor": {"name": actor},
        "source": {"addr": "registry:5000", "instanceID": "i-1"},
    }


def envelope(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def acr_webhook(action: str = "push", **kw: Any) -> dict[str, Any]:
    """ACR's webhook body: the distribution event, without actor and addr."""
    event = distribution_event(action=action, host="demo.azurecr.io", **kw)
    event.pop("actor")
    event.pop("source")
    event["request"].pop("addr")
    return event


def eventgrid(event_type: str, data: dict[str, Any], *, id: str = "eg-1") -> dict[str, Any]:
    return {
        "id": id,
        "topic": "/subscriptions/s/resourceGroups/rg/providers/"
        "Microsoft.ContainerRegistry/registries/demo",
        "subject": "team/api:v1",
        "eventType": event_type,
        "eventTime": "2026-12-05T04:00:00.6549614Z",
        "data": data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


def cloudevent(event_type: str, data: dict[str, Any], *, id: str = "ce-1") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": event_type,
        "source": "/subscriptions/s/resourceGroups/rg/providers/"
        "Microsoft.ContainerRegistry/registries/demo",
        "id": id,
        "time": "2026-12-05T04:00:00.6549614Z",
        "subject": "team/api:v1",
        "data": data,
    }


def validation(code: str = "512d38b6-c7b8-40c8-89fe-f46f9e9622b6") -> bytes:
    return json.dumps(
        [
            {
                "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
                "topic": "/subscriptions/s",
                "subject": "",
                "data": {"validationCode": code, "validationUrl": "https://example/validate"},
                "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "eventTime": "2026-12-05T04:00:00Z",
                "metadataVersion": "1",
                "dataVersion": "2",
            }
        ]
    ).encode()
