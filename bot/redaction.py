"""Keep secrets out of log lines, including the ones libraries write.

slack_sdk logs whole request bodies at DEBUG level (its web and webhook clients), so a
password delivered to a user would reach the log of anyone who turns DEBUG on. Every secret the
bot hands out is registered here first; the filter rewrites any record that contains one.
Hand-written because the logging module has no redaction of its own.
"""

from __future__ import annotations

import logging
import threading
import time

REDACTED = "[redacted]"
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

    def redact(self, text: str) -> str:
        now = time.monotonic()
        with self._lock:
            for secret, until in list(self._secrets.items()):
                if until < now:
                    del self._secrets[secret]
                elif secret in text:
                    text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
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
