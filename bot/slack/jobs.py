"""Jobs: what a listener hands over once it has acked.

A job is plain data (no clients, no callbacks), so it can cross into the worker process; the
worker rebuilds what it needs (a `Respond` from the response_url, the user from the ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

COMMAND = "command"  # /acr …; data: the command payload
DECIDE = "decide"  # approve/deny as a user; data: user, channel, command
OPEN_DENY = "open_deny"  # open the deny modal; data: trigger_id, request, channel
PAGE = "page"  # Previous/Next on a listing; data: user, value, response_url
MORE = "more"  # the "More" button of an earlier release; data: response_url
THREAD_REPLY = "thread_reply"  # a message in a thread; data: the message event
HOME = "home"  # publish the App Home tab; data: user
KINDS = frozenset({COMMAND, DECIDE, OPEN_DENY, PAGE, MORE, THREAD_REPLY, HOME})


@dataclass(frozen=True)
class Job:
    """One unit of work, and the delivery ids that tell a Slack retry from a new request.

    ``event_id`` (Events API) is remembered in the database, since a retry may reach a
    restarted bot; ``trigger_id`` (commands, clicks) in the worker's memory.
    """

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    event_id: str | None = None
    trigger_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown job kind {self.kind!r}")


class JobSink(Protocol):
    """Where listeners put jobs: a thread pool here, or a worker process."""

    def submit(self, job: Job) -> None: ...
