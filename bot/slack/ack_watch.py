"""The acking process, observed: ack latency, jobs handed over, and the line that starts a
job's trail in the logs (bot/ops/logs.py).

Both transports (uvicorn's ASGI adapter and the Socket Mode handler) answer a request by
calling ``App.dispatch``; with process_before_response our listeners have acked and handed
the job over when it returns, so timing it is timing the ack, signature check included.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse

from bot.ops import metrics
from bot.slack.handoff import Job, JobSink

log = logging.getLogger("acrbot.jobs")


def request_kind(body: Any) -> str:
    """`command`, `block_actions`, `view_submission`, `event_callback`, … (a bounded set:
    anything unexpected is `other`)."""
    if not isinstance(body, dict):
        return "other"
    if "command" in body:
        return "command"
    kind = body.get("type")
    return kind if kind in _KINDS else "other"


_KINDS = frozenset(
    {"block_actions", "view_submission", "view_closed", "event_callback", "url_verification"}
)


class ObservedApp(App):
    """Bolt's App, timing each request from dispatch to ack (acrbot_ack_seconds)."""

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        if not metrics.enabled():
            return super().dispatch(req)
        started = time.perf_counter()
        try:
            return super().dispatch(req)
        finally:
            metrics.ack(request_kind(req.body), time.perf_counter() - started)


class ObservedSink:
    """A JobSink that counts what it was given (acrbot_jobs_submitted_total) and logs the
    job's id at the ack: the first line of its trail."""

    def __init__(self, inner: JobSink) -> None:
        self.inner = inner

    def submit(self, job: Job) -> str:
        status = self.inner.submit(job)
        metrics.submitted(job.kind, status)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "acked %s: %s",
                job.kind,
                status,
                extra={"job": job.key, "kind": job.kind, "status": status},
            )
        return status
