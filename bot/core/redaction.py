"""Keep secrets out of log lines, including the ones libraries write, and out of URLs.

slack_sdk logs whole request bodies at DEBUG level (its web and webhook clients), so a
password delivered to a user would reach the log of anyone who turns DEBUG on. Every secret the
bot hands out is registered here first (forgotten after an hour); the secrets it holds from the
start (Slack tokens, registry passwords, the Blob credentials, the audit key) are registered
for the life of the process (`add_static`). The filter rewrites any record that contains one,
and the user name and password of any URL (`https://robot:pw@host` → `https://[redacted]@host`),
which `redact_urls` also strips from text shown to users (replies, the audit, doctor).
Hand-written because the logging module has no redaction of its own.
"""

from __future__ import annotations

import logging
import re
import threading
import time

REDACTED = "[redacted]"
# `scheme://userinfo@`: everything of the authority (up to "/", "?", "#" or a space) before
# its last "@", as urllib and httpx split it (a raw "@" in a password included); a quote or
# angle bracket ends it too, so a URL inside JSON or HTML does not swallow what follows.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s\"<>]*@")
MIN_STATIC = 6  # shorter "secrets" would redact common words from every line


def redact_urls(text: str) -> str:
    """`https://robot:pw@host/x` → `https://[redacted]@host/x`, in any text."""
    return _USERINFO.sub(rf"\1{REDACTED}@", text) if "@" in text else text


def has_userinfo(url: str) -> bool:
    """Does ``url`` carry a user name or password (`https://robot:pw@host`)?"""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "@" in url
    return "@" in parts.netloc


# Loggers known to log request or response bodies.
BODY_LOGGERS = (
    "slack_sdk.web.base_client",
    "slack_sdk.webhook.client",
    "slack_sdk.socket_mode.builtin.client",
    "bot.slack.socket_mode",  # Bolt's Socket Mode send_response logs failed bodies through it
    "slack_bolt.App",
)


class SecretRedactor(logging.Filter):
    """Replace registered secrets in a record's message; secrets are forgotten after ``ttl``."""

    def __init__(self, *, ttl: float = 3600) -> None:
        super().__init__()
        self._ttl = ttl
        self._secrets: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        if secret:
            with self._lock:
                self._secrets[secret] = time.monotonic() + self._ttl

    def add_static(self, secret: str | None) -> None:
        """Register a secret the bot holds for its lifetime (never forgotten). One shorter
        than MIN_STATIC characters is not registered: it would blank out ordinary words."""
        if secret and len(secret) >= MIN_STATIC:
            with self._lock:
                self._secrets[secret] = float("inf")

    def redact(self, text: str) -> str:
        now = time.monotonic()
        with self._lock:
            # Longest first: a secret that contains another is replaced whole.
            for secret, until in sorted(self._secrets.items(), key=lambda s: -len(s[0])):
                if until < now:
                    del self._secrets[secret]
                elif secret in text:
                    text = text.replace(secret, REDACTED)
        return redact_urls(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


REDACTOR = SecretRedactor()


def install(names: tuple[str, ...] = BODY_LOGGERS) -> SecretRedactor:
    """Attach the process-wide redactor to the body-logging loggers and the root handlers."""
    for name in names:
        logger = logging.getLogger(name)
        if REDACTOR not in logger.filters:
            logger.addFilter(REDACTOR)
    for handler in logging.getLogger().handlers:
        if REDACTOR not in handler.filters:
            handler.addFilter(REDACTOR)
    return REDACTOR
