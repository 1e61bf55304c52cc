"""Slack user groups in grants: who is in them, asked from Slack and cached briefly."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)


def is_usergroup(principal: str) -> bool:
    """Slack user-group ids start with S (users with U or W)."""
    return principal.startswith("S") and principal[1:].isalnum() and principal.isupper()


class SlackGroups:
    """Membership of the user groups named in grants (`usergroups.users.list`, TTL cache).

    A failed lookup counts as "not a member" for that check and is retried next time: a Slack
    outage can only take rights away, never give them.
    """

    def __init__(
        self, client: WebClient, *, ttl: float = 300, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client, self._ttl, self._clock = client, ttl, clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()
        self.candidates: Callable[[], Iterable[str]] = lambda: ()

    def groups_of(self, user: str) -> list[str]:
        return [g for g in self.candidates() if is_usergroup(g) and user in self.members(g)]

    def members(self, group: str) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            cached = self._members.get(group)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            response = self._client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            log.warning("usergroups.users.list %s failed: %s", group, exc.response.get("error"))
            return frozenset()
        members = frozenset(response.get("users") or ())
        with self._lock:
            self._members[group] = (now + self._ttl, members)
        return members
