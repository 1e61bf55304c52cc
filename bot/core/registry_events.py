"""What registries say happened to them, read from the three shapes they send it in.

- CNCF distribution notifications: an envelope `{"events": [...]}` of
  `application/vnd.docker.distribution.events.v1+json`; each event has `id`, `timestamp`,
  `action` (push, pull, delete, mount), `target` (mediaType, digest, repository, tag, size),
  `request` (addr, host, method, useragent), `actor` (name). Retried until a 2xx, possibly
  duplicated; blob and pull events come too (ignored here, but still answered 2xx).
- ACR webhooks: one such event (no envelope) per POST, actions push, delete, quarantine,
  chart_push, chart_delete; a delete names a manifest (digest) or a whole repository.
- Azure Event Grid: a JSON array in the Event Grid schema (`eventType`, `data` = the ACR
  event) or CloudEvents 1.0 (`specversion`, `type`, `data`), one or a batch; the
  subscription-validation event (Event Grid schema) asks for its `validationCode` back.

Parsing is pure: bytes in, :class:`Parsed` out. An event this bot does not act on (a pull, a
blob push, a chart) is counted as ignored, never as an error: a registry that gets a 4xx for
a blob event stalls its whole queue. A body that is not one of the shapes is an
:class:`EventFormatError`, answered 400.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bot.core.errors import BotError

DISTRIBUTION_MEDIA = "application/vnd.docker.distribution.events.v1+json"
EVENTGRID_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
_EVENTGRID_TYPES = {
    "Microsoft.ContainerRegistry.ImagePushed": "push",
    "Microsoft.ContainerRegistry.ImageDeleted": "delete",
}
# Manifests (images and indexes): a push of anything else is a blob upload.
MANIFEST_MEDIA = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.artifact.manifest.v1+json",
    }
)
MAX_FIELD = 512  # characters kept of any one string field (a repository name is ≤ 256)


class EventFormatError(BotError):
    """The body is not a registry event of a known shape (answered 400)."""


class Source(StrEnum):
    DISTRIBUTION = "distribution"
    ACR = "acr"
    EVENTGRID = "eventgrid"
    RECONCILE = "reconcile"  # found by re-reading the registry: no event told of it


class Action(StrEnum):
    """What happened. ``DELETE`` removed a manifest (and every tag on it); ``UNTAG`` removed
    one tag; ``REPO_DELETE`` a whole repository."""

    PUSH = "push"
    DELETE = "delete"
    UNTAG = "untag"
    REPO_DELETE = "repo_delete"


@dataclass(frozen=True)
class RegistryEvent:
    """One thing that happened in a registry, as its sender told it.

    ``id`` is the sender's own id, prefixed with the source, so a retry of the same event
    (distribution, Event Grid) has the same id and is stored once."""

    id: str
    source: Source
    action: Action
    repository: str
    at: datetime
    host: str | None = None  # the registry's host as the request named it
    tag: str | None = None
    digest: str | None = None
    media_type: str | None = None
    size: int | None = None
    actor: str | None = None  # who (a user name, a token name) where the event says
    addr: str | None = None  # from where (an IP address, host:port)
    user_agent: str | None = None
    since: datetime | None = None  # RECONCILE: it happened between this time and ``at``

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source.value,
            "action": self.action.value,
            "repository": self.repository,
            "at": self.at.isoformat(),
            "host": self.host,
            "tag": self.tag,
            "digest": self.digest,
            "media_type": self.media_type,
            "size": self.size,
            "actor": self.actor,
            "addr": self.addr,
            "user_agent": self.user_agent,
            "since": self.since.isoformat() if self.since else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegistryEvent:
        return cls(
            id=data["id"],
            source=Source(data["source"]),
            action=Action(data["action"]),
            repository=data["repository"],
            at=datetime.fromisoformat(data["at"]),
            host=data.get("host"),
            tag=data.get("tag"),
            digest=data.get("digest"),
            media_type=data.get("media_type"),
            size=data.get("size"),
            actor=data.get("actor"),
            addr=data.get("addr"),
            user_agent=data.get("user_agent"),
            since=datetime.fromisoformat(data["since"]) if data.get("since") else None,
        )

    @property
    def image(self) -> str:
        """`repo:tag`, `repo@digest`, or the repository, for messages."""
        if self.tag:
            return f"{self.repository}:{self.tag}"
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return self.repository


@dataclass(frozen=True)
class Parsed:
    """What one body held: the events to keep, how many were ignored, and for an Event Grid
    subscription handshake the code to answer with."""

    events: tuple[RegistryEvent, ...] = ()
    ignored: int = 0
    validation_code: str | None = None
    notes: tuple[str, ...] = field(default=())


def parse(body: bytes, *, content_type: str = "", now: datetime | None = None) -> Parsed:
    """Read a body of any of the three shapes (told apart by their structure; the content
    type only has to be JSON-ish)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise EventFormatError("the body is not JSON") from None
    now = now or datetime.now(UTC)
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        return _collect((_distribution(e, now) for e in data["events"]), len(data["events"]))
    if isinstance(data, dict) and "specversion" in data:
        return _collect([_cloudevent(data, now)], 1)
    if isinstance(data, list):
        if data and all(isinstance(e, dict) and "specversion" in e for e in data):
            return _collect((_cloudevent(e, now) for e in data), len(data))
        if all(isinstance(e, dict) and "eventType" in e for e in data):
            for event in data:
                if event.get("eventType") == EVENTGRID_VALIDATION:
                    code = (event.get("data") or {}).get("validationCode")
                    if not isinstance(code, str) or not code:
                        raise EventFormatError("a validation event without a validationCode")
                    return Parsed(validation_code=code)
            return _collect((_eventgrid(e, now) for e in data), len(data))
        raise EventFormatError("a JSON array that holds neither Event Grid events nor CloudEvents")
    if isinstance(data, dict) and "action" in data and "target" in data:
        return _collect([_registry_event(data, Source.ACR, now)], 1)
    raise EventFormatError(
        'not a registry event: expected a distribution envelope ({"events": [...]}), an ACR '
        "webhook event, Event Grid events or CloudEvents"
    )


def _collect(events: Any, total: int) -> Parsed:
    kept = tuple(e for e in events if e is not None)
    return Parsed(events=kept, ignored=total - len(kept))


def _eventgrid(event: dict[str, Any], now: datetime) -> RegistryEvent | None:
    action = _EVENTGRID_TYPES.get(str(event.get("eventType")))
    data = event.get("data")
    if action is None or not isinstance(data, dict):
        return None
    return _registry_event(
        data, Source.EVENTGRID, now, outer_id=_text(event.get("id")), action=action
    )


def _cloudevent(event: dict[str, Any], now: datetime) -> RegistryEvent | None:
    if event.get("specversion") != "1.0":
        raise EventFormatError(
            f"CloudEvents specversion {event.get('specversion')!r}: expected 1.0"
        )
    action = _EVENTGRID_TYPES.get(str(event.get("type")))
    data = event.get("data")
    if action is None or not isinstance(data, dict):
        return None
    return _registry_event(
        data, Source.EVENTGRID, now, outer_id=_text(event.get("id")), action=action
    )


def _distribution(event: Any, now: datetime) -> RegistryEvent | None:
    if not isinstance(event, dict):
        raise EventFormatError("an event in the envelope is not an object")
    return _registry_event(event, Source.DISTRIBUTION, now)


def _registry_event(
    event: dict[str, Any],
    source: Source,
    now: datetime,
    *,
    outer_id: str | None = None,
    action: str | None = None,
) -> RegistryEvent | None:
    """The event every sender shares (distribution's, which ACR's and Event Grid's `data`
    copy), or None when it is not about a manifest, a tag or a repository."""
    target = event.get("target")
    if not isinstance(target, dict):
        raise EventFormatError("an event without a target")
    verb = action or str(event.get("action", ""))
    repository = _text(target.get("repository"))
    if not repository:
        raise EventFormatError("an event without target.repository")
    tag, digest = _text(target.get("tag")), _text(target.get("digest"))
    media = _text(target.get("mediaType"))
    if verb == "push":
        if media not in MANIFEST_MEDIA and not tag:
            return None  # a blob upload
        kind = Action.PUSH
    elif verb == "delete":
        if tag and not digest:
            kind = Action.UNTAG
        elif digest:
            kind = Action.DELETE
        else:
            kind = Action.REPO_DELETE
    else:
        return None  # pull, mount, quarantine, charts
    request = event.get("request") if isinstance(event.get("request"), dict) else {}
    actor = event.get("actor") if isinstance(event.get("actor"), dict) else {}
    own_id = _text(event.get("id"))
    ident = own_id or outer_id
    if not ident:  # no id: the content is the id (a retry sends the same bytes)
        ident = hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()[:32]
    size = target.get("size", target.get("length"))
    return RegistryEvent(
        id=f"{source.value}:{ident}",
        source=source,
        action=kind,
        repository=repository,
        at=_time(event.get("timestamp")) or now,
        host=_text(request.get("host")),
        tag=tag,
        digest=digest,
        media_type=media,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        actor=_text(actor.get("name")),
        addr=_text(request.get("addr")),
        user_agent=_text(request.get("useragent")),
    )


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[:MAX_FIELD]


def _time(value: Any) -> datetime | None:
    """RFC 3339 with up to nanoseconds (distribution, Event Grid) → an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:  # Python reads at most 6 fractional digits
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
