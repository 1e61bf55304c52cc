"""What people read about registry events: watch lines, fold summaries, drift alerts.

Plain text with Slack's mrkdwn markers (`*bold*`, backticks); the door escapes `&`, `<`, `>`
on the way out, so a hostile tag or actor name cannot mention a channel.
"""

from __future__ import annotations

from bot.core import formatting as fmt
from bot.core.registry_events import Action, RegistryEvent, Source

VERBS = {
    Action.PUSH: "pushed",
    Action.DELETE: "deleted",
    Action.UNTAG: "untagged",
    Action.REPO_DELETE: "deleted the repository",
}


def who(event: RegistryEvent) -> str:
    """`by alice from 10.0.0.7`, as far as the event says."""
    if event.source is Source.RECONCILE:
        return "(found when the bot re-read the registry: no event told of it)"
    parts = [f"by {event.actor}" if event.actor else "by an unnamed client"]
    if event.addr:
        parts.append(f"from {event.addr}")
    return " ".join(parts)


def watch_line(registry: str, event: RegistryEvent) -> str:
    """One event for a watch channel: who did what to which image, digest and size."""
    what = f"`{registry}/{event.image}`"
    if event.action is Action.PUSH:
        line = f"*{registry}*: {what} pushed"
        if event.digest and event.tag:
            line += f" → `{fmt.short_digest(event.digest)}`"
        if event.size is not None:
            line += f" ({fmt.size(event.size)} manifest)"
    elif event.action is Action.REPO_DELETE:
        line = f"*{registry}*: repository `{event.repository}` deleted"
    else:
        line = f"*{registry}*: {what} {VERBS[event.action]}"
    return f"{line} {who(event)}, {fmt.when(event.at)}"


def short_line(event: RegistryEvent) -> str:
    """An event inside a summary: the verb and the reference."""
    ref = event.tag or (fmt.short_digest(event.digest) if event.digest else "")
    if event.action is Action.PUSH and event.tag and event.digest:
        ref = f"{event.tag} → {fmt.short_digest(event.digest)}"
    return f"{event.action.value} {ref}".strip()


def summary(registry: str, repository: str, count: int, lines: tuple[str, ...]) -> str:
    shown = ", ".join(lines)
    more = count - len(lines)
    tail = f" and {more:,} more" if more > 0 else ""
    noun = "event" if count == 1 else "events"
    return f"*{registry}*: `{repository}`: {count:,} more {noun} in the last minute: {shown}{tail}"


def drift_alert(registry: str, event: RegistryEvent, *, kind: str, old: str | None) -> str:
    """A security-channel alert: what changed outside the bot, by whom, from where."""
    head = f":rotating_light: *Registry drift in {registry}*"
    where = who(event)
    if kind == "delete":
        body = f"`{event.image}` was deleted outside the bot {where}."
    elif kind == "untag":
        body = f"tag `{event.repository}:{event.tag}` disappeared outside the bot {where}."
    elif kind == "repo_delete":
        body = f"repository `{event.repository}` was deleted outside the bot {where}."
    elif kind == "moved":
        body = (
            f"protected tag `{event.repository}:{event.tag}` was moved "
            f"from `{old}` to `{event.digest}` {where}."
        )
    elif kind == "overwrite":
        body = (
            f"write-once tag `{event.repository}:{event.tag}` was overwritten: "
            f"old `{old}`, new `{event.digest}` {where}."
        )
    else:  # lock_failed
        body = (
            f"write-once tag `{event.repository}:{event.tag}` could not be locked "
            f"against overwrite: {old}."
        )
    if event.source is Source.RECONCILE:
        return f"{head}: {body} ({fmt.when(event.since)} – {fmt.when(event.at)})"
    return f"{head}: {body} ({event.source.value} event, {fmt.when(event.at)})"
