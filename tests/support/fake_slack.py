"""A local fake of Slack's Web API that records every call, for the real WebClient to talk to.

It answers the methods acr-chatops uses with Slack's response shapes, plus `response_url`
posts (`/response/<id>`). Bound to 127.0.0.1 on a free port; a threading server with a
128-deep listen queue so bursts from the bench do not stall in the kernel.

It refuses what Slack refuses, so tests catch what production would:

- Block Kit limits (`validate_blocks`, `validate_view`): a message refused with
  `invalid_blocks` and the JSON pointers of what broke the rules in ``errors``; a view
  (views.open/push/update/publish) refused with `invalid_arguments`, which is what Slack
  answers there, the same messages in ``response_metadata.messages`` (and ``errors``).
  Message `text` over 40,000 characters is `msg_too_long`; nothing to show is `no_text`.
- `chat.update` of a message never posted: `message_not_found`. Posting to a channel the bot
  has left (`leave`, `only_member_of`): `not_in_channel`. Member of everything by default.
- Every Web API answer carries the token's scopes in `x-oauth-scopes`, as Slack's do:
  ``scopes`` (the app manifest's by default). `conversations.info` answers `missing_scope`
  without channels:read (groups:read for a private channel), `channel_not_found` for
  channels in ``missing_channels``, and `is_member` from the membership above.
- `response_url`: HTTP 400 with a text body (`invalid_blocks`, `no_text`, `msg_too_long`)
  as Slack's webhooks answer, and HTTP 404 `used_url` after 5 posts or `expired_url` 30
  minutes after the URL was issued (`advance` moves the fake's clock).

What it refused of its own accord is in `rejected()`; a test's teardown can call
`assert_nothing_rejected()`. Failures a test asks for (`fail`, `fail_response_url`, the
`errors` dict) are answered and recorded (`attempts`, `calls`) but are not rejections.
`calls_to` and `wait_for` see only what Slack accepted, as a channel would.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

# -- Slack's limits ------------------------------------------------------------------------

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
MESSAGE_TEXT = 40_000
TEXT_OBJECT = 3000  # any text object, unless a tighter limit applies
SECTION_TEXT = 3000
SECTION_FIELDS = 10
SECTION_FIELD = 2000
HEADER_TEXT = 150
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
URL = 3000
ACTION_ID = 255
BLOCK_ID = 255
CALLBACK_ID = 255
PRIVATE_METADATA = 3000
VIEW_TITLE = 24  # modal title, submit and close
CONFIRM_TITLE = 100
CONFIRM_TEXT = 300
CONFIRM_BUTTON = 30  # confirm and deny
INPUT_LABEL = 2000
INPUT_HINT = 2000
PLACEHOLDER = 150
OPTIONS = 100
OPTION_TEXT = 75
OPTION_VALUE = 150
IMAGE_ALT = 2000

MANIFEST = Path(__file__).parents[2] / "deploy" / "slack-app-manifest.json"
RESPONSE_URL_POSTS = 5  # "up to 5 times within 30 minutes"
RESPONSE_URL_TTL = 30 * 60

MESSAGE_METHODS = ("chat.postMessage", "chat.postEphemeral", "chat.update")
VIEW_METHODS = ("views.open", "views.push", "views.update", "views.publish")
_SELECTS = (
    "static_select",
    "multi_static_select",
    "external_select",
    "multi_external_select",
    "users_select",
    "multi_users_select",
    "conversations_select",
    "multi_conversations_select",
    "channels_select",
    "multi_channels_select",
    "overflow",
    "radio_buttons",
    "checkboxes",
)


class _Checker:
    """Collects Slack-style messages: `must be less than 76 characters [json-pointer:/x]`."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def length(self, value: Any, limit: int, pointer: str) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.add(f"must be less than {limit + 1} characters", pointer)

    def count(self, items: Any, limit: int, pointer: str) -> None:
        if isinstance(items, list) and len(items) > limit:
            self.add(f"no more than {limit} items allowed", pointer)

    def text(
        self, obj: Any, pointer: str, *, limit: int = TEXT_OBJECT, plain: bool = False
    ) -> None:
        """A text object: a known type (plain_text where Slack requires it), 1..limit chars."""
        if not isinstance(obj, dict):
            self.add("must be a text object", pointer)
            return
        kind = obj.get("type")
        if kind not in ("plain_text", "mrkdwn"):
            self.add(f"unknown text type {kind!r}", f"{pointer}/type")
        elif plain and kind != "plain_text":
            self.add(f"must be plain_text, not {kind}", f"{pointer}/type")
        text = obj.get("text")
        if not isinstance(text, str) or not text:
            self.add("must be more than 0 characters", f"{pointer}/text")
        else:
            self.length(text, limit, f"{pointer}/text")

    def confirm(self, obj: Any, pointer: str) -> None:
        if not isinstance(obj, dict):
            self.add("must be a confirmation dialog object", pointer)
            return
        for key, limit, plain in (
            ("title", CONFIRM_TITLE, True),
            ("text", CONFIRM_TEXT, False),
            ("confirm", CONFIRM_BUTTON, True),
            ("deny", CONFIRM_BUTTON, True),
        ):
            self.text(obj.get(key), f"{pointer}/{key}", limit=limit, plain=plain)

    def element(self, el: Any, pointer: str) -> None:
        """An interactive element (or an image) in actions, section accessory or input."""
        if not isinstance(el, dict):
            self.add("must be an element object", pointer)
            return
        self.length(el.get("action_id"), ACTION_ID, f"{pointer}/action_id")
        if "confirm" in el:
            self.confirm(el["confirm"], f"{pointer}/confirm")
        kind = el.get("type")
        if kind == "button":
            self.text(el.get("text"), f"{pointer}/text", limit=BUTTON_TEXT, plain=True)
            self.length(el.get("value"), BUTTON_VALUE, f"{pointer}/value")
            self.length(el.get("url"), URL, f"{pointer}/url")
            self.length(
                el.get("accessibility_label"), BUTTON_TEXT, f"{pointer}/accessibility_label"
            )
            if "style" in el and el["style"] not in ("primary", "danger"):
                self.add("must be primary or danger", f"{pointer}/style")
        elif kind == "image":
            self.length(el.get("alt_text"), IMAGE_ALT, f"{pointer}/alt_text")
        elif kind == "plain_text_input":
            for key in ("min_length", "max_length"):
                value = el.get(key)
                if isinstance(value, int) and not 0 <= value <= TEXT_OBJECT:
                    self.add(f"must be between 0 and {TEXT_OBJECT}", f"{pointer}/{key}")
        if "placeholder" in el:
            self.text(el["placeholder"], f"{pointer}/placeholder", limit=PLACEHOLDER, plain=True)
        if kind in _SELECTS and isinstance(el.get("options"), list):
            self.count(el["options"], OPTIONS, f"{pointer}/options")
            for i, option in enumerate(el["options"]):
                here = f"{pointer}/options/{i}"
                if isinstance(option, dict):
                    self.text(option.get("text"), f"{here}/text", limit=OPTION_TEXT)
                    self.length(option.get("value"), OPTION_VALUE, f"{here}/value")

    def block(self, block: Any, pointer: str) -> None:
        if not isinstance(block, dict):
            self.add("must be a block object", pointer)
            return
        self.length(block.get("block_id"), BLOCK_ID, f"{pointer}/block_id")
        kind = block.get("type")
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.add("must provide either text or fields", pointer)
            if "text" in block:
                self.text(block["text"], f"{pointer}/text", limit=SECTION_TEXT)
            if "fields" in block:
                fields = block["fields"]
                self.count(fields, SECTION_FIELDS, f"{pointer}/fields")
                for i, item in enumerate(fields if isinstance(fields, list) else []):
                    self.text(item, f"{pointer}/fields/{i}", limit=SECTION_FIELD)
            if "accessory" in block:
                self.element(block["accessory"], f"{pointer}/accessory")
        elif kind == "header":
            self.text(block.get("text"), f"{pointer}/text", limit=HEADER_TEXT, plain=True)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self.add("must have at least 1 element", f"{pointer}/elements")
                return
            self.count(elements, CONTEXT_ELEMENTS, f"{pointer}/elements")
            for i, el in enumerate(elements):
                here = f"{pointer}/elements/{i}"
                if isinstance(el, dict) and el.get("type") == "image":
                    self.element(el, here)
                else:
                    self.text(el, here)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self.add("must have at least 1 element", f"{pointer}/elements")
                return
            self.count(elements, ACTIONS_ELEMENTS, f"{pointer}/elements")
            for i, el in enumerate(elements):
                self.element(el, f"{pointer}/elements/{i}")
        elif kind == "input":
            self.text(block.get("label"), f"{pointer}/label", limit=INPUT_LABEL, plain=True)
            if "hint" in block:
                self.text(block["hint"], f"{pointer}/hint", limit=INPUT_HINT, plain=True)
            self.element(block.get("element"), f"{pointer}/element")
        elif kind == "image":
            self.length(block.get("alt_text"), IMAGE_ALT, f"{pointer}/alt_text")
            self.length(block.get("image_url"), URL, f"{pointer}/image_url")
            if "title" in block:
                self.text(block["title"], f"{pointer}/title", limit=IMAGE_ALT, plain=True)

    def blocks(self, blocks: Any, pointer: str, *, limit: int) -> None:
        if not isinstance(blocks, list):
            self.add("must be an array of blocks", pointer)
            return
        self.count(blocks, limit, pointer)
        seen: set[str] = set()
        for i, block in enumerate(blocks):
            self.block(block, f"{pointer}/{i}")
            block_id = block.get("block_id") if isinstance(block, dict) else None
            if block_id is not None:
                if block_id in seen:
                    self.add(f"duplicate block_id {block_id!r}", f"{pointer}/{i}/block_id")
                seen.add(block_id)


def validate_blocks(
    blocks: Any, *, limit: int = MESSAGE_BLOCKS, pointer: str = "/blocks"
) -> list[str]:
    """Slack's messages for ``blocks`` (empty when Slack would take them)."""
    check = _Checker()
    check.blocks(blocks, pointer, limit=limit)
    return check.errors


def validate_view(view: Any, pointer: str = "/view") -> list[str]:
    """Slack's messages for a modal or Home tab view (empty when Slack would take it)."""
    check = _Checker()
    if not isinstance(view, dict):
        check.add("must be a view object", pointer)
        return check.errors
    kind = view.get("type")
    if kind not in ("modal", "home"):
        check.add(f"unknown view type {kind!r}", f"{pointer}/type")
    check.blocks(view.get("blocks"), f"{pointer}/blocks", limit=VIEW_BLOCKS)
    check.length(view.get("callback_id"), CALLBACK_ID, f"{pointer}/callback_id")
    check.length(view.get("external_id"), CALLBACK_ID, f"{pointer}/external_id")
    check.length(view.get("private_metadata"), PRIVATE_METADATA, f"{pointer}/private_metadata")
    if kind == "modal":
        check.text(view.get("title"), f"{pointer}/title", limit=VIEW_TITLE, plain=True)
        for key in ("submit", "close"):
            if key in view:
                check.text(view[key], f"{pointer}/{key}", limit=VIEW_TITLE, plain=True)
        has_input = any(
            isinstance(b, dict) and b.get("type") == "input" for b in view.get("blocks") or []
        )
        if has_input and "submit" not in view:
            check.add("submit is required when blocks contain an input block", pointer)
    return check.errors


# -- recording -----------------------------------------------------------------------------


@dataclass
class ApiCall:
    """One request as received, and how the fake answered it."""

    method: str  # `chat.postMessage`, or `response_url:<name>`
    params: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    error: str | None = None  # the Slack error code answered; None when accepted
    errors: list[str] = field(default_factory=list)  # what broke Slack's rules, if that's why
    injected: bool = False  # the test asked for this failure (fail(), errors dict)
    at: float = field(default_factory=time.perf_counter)  # when it arrived (benches time it)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class _Fault:
    status: int
    retry_after: int | None
    error: str
    body: str | None
    remaining: int
    channel: str | None = None  # only calls to this channel (a DM: the user id)


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    injected: bool = False

    @classmethod
    def json(cls, data: dict[str, Any], *, injected: bool = False) -> _Answer:
        error = None if data.get("ok") else str(data.get("error"))
        return cls(
            200,
            json.dumps(data).encode(),
            error=error,
            errors=list(data.get("errors") or []),
            injected=injected,
        )

    @classmethod
    def webhook_error(cls, status: int, error: str, errors: list[str] | None = None) -> _Answer:
        """How Slack's webhooks (and response_url) refuse: a status and the code as text."""
        return cls(
            status, error.encode(), "text/html; charset=utf-8", error=error, errors=errors or []
        )


@dataclass
class _ResponseUrl:
    issued: float
    posts: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


def _html(status: int) -> str:
    reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
    title = f"{status} {reason.get(status, 'Error')}"
    return f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-connection (a SIGKILLed worker) is not the fake's error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


MAX_FILE_BYTES = 1024**3  # Slack's limit for one file


@dataclass
class _File:
    filename: str
    length: int
    alt_txt: str | None = None
    data: bytes | None = None  # what the upload POST brought (None: nothing, or short)
    completed: bool = False
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    comment: str | None = None


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[ApiCall] = []
        self.files: dict[str, _File] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.errors: dict[str, str] = {}  # method -> Slack error code to answer with
        # The bot token's scopes (x-oauth-scopes): what installing the app's manifest grants.
        self.scopes: set[str] = set(
            json.loads(MANIFEST.read_text())["oauth_config"]["scopes"]["bot"]
        )
        self.missing_channels: set[str] = set()  # conversations.info: channel_not_found
        # apps.connections.open answers this URL, or calls it for a fresh one each time
        # (FakeSocketMode.attach: its tickets work once, as Slack's do).
        self.socket_url: str | Callable[[], str] | None = None
        self.revoked: str | None = None  # revoke(): the token's refusal, for every method
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._faults: dict[str, list[_Fault]] = {}
        self._attempts: Counter[str] = Counter()
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._membership: dict[str, bool] = {}
        self._member_by_default = True
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._clock_offset = 0.0
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str, *, original: dict[str, Any] | None = None) -> str:
        """A response_url, issued now (its 30 minutes start here). ``original``: the message
        the interaction came from, which `replace_original` / `delete_original` act on."""
        with self._lock:
            state = self._response_urls.setdefault(name, _ResponseUrl(self._now()))
            if original is not None:
                state.messages = [dict(original)]
        return f"http://127.0.0.1:{self.port}/response/{name}"

    # -- test controls ---------------------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        times: int = 1,
        error: str = "ratelimited",
        body: str | None = None,
        channel: str | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with a failure, then normally again.

        429: `Retry-After: retry_after` and `{"ok":false,"error":"ratelimited"}`. 5xx: an
        HTML error page as Slack's edge sends (``body=""`` for an empty one). 200: the Slack
        error ``error``. ``channel``: only calls to that channel (a user id: the DM to them)
        fail, the others go through. Calls may already be in flight; safe from any thread.
        """
        self._add_fault(method, status, retry_after, times, error, body, channel)

    def fail_response_url(
        self,
        name: str | None = None,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        times: int = 1,
        error: str = "rate_limited",
        body: str | None = None,
    ) -> None:
        """`fail` for posts to response_url ``name`` (any response_url when None); the body
        is ``error`` as text, as Slack's webhooks answer."""
        self._add_fault(f"response_url:{name or '*'}", status, retry_after, times, error, body)

    def _add_fault(
        self,
        key: str,
        status: int,
        retry_after: int | None,
        times: int,
        error: str,
        body: str | None,
        channel: str | None = None,
    ) -> None:
        if times < 1:
            return
        fault = _Fault(status, retry_after, error, body, times, channel)
        with self._lock:
            self._faults.setdefault(key, []).append(fault)

    def revoke(self, error: str = "token_revoked") -> None:
        """Slack refuses the bot token from now on: every Web API method (auth.test too)
        answers HTTP 200 `{"ok": false, "error": error}`, as Slack does for a revoked
        (`token_revoked`), unknown (`invalid_auth`) or uninstalled (`account_inactive`)
        token. response_url posts carry no token and still work. ``restore()`` ends it."""
        with self._lock:
            self.revoked = error

    def restore(self) -> None:
        with self._lock:
            self.revoked = None

    def clear_faults(self) -> None:
        """Forget the failures asked for and not yet answered: Slack is healthy again."""
        with self._lock:
            self._faults.clear()

    def leave(self, *channels: str) -> None:
        """The bot is not a member of these channels: posts there get `not_in_channel`."""
        with self._lock:
            self._membership.update(dict.fromkeys(channels, False))

    def join(self, *channels: str) -> None:
        with self._lock:
            self._membership.update(dict.fromkeys(channels, True))

    def only_member_of(self, *channels: str) -> None:
        """The bot is a member of these channels and of no other (DMs always work)."""
        with self._lock:
            self._member_by_default = False
            self._membership = dict.fromkeys(channels, True)

    def advance(self, seconds: float) -> None:
        """Move the fake's clock (response_url expiry) forward."""
        with self._lock:
            self._clock_offset += seconds

    def _now(self) -> float:
        return time.monotonic() + self._clock_offset

    # -- reading what was called -----------------------------------------------------------

    def calls_to(self, method: str, *, refused: bool = False) -> list[dict[str, Any]]:
        """The params of the calls to ``method`` that Slack accepted (with ``refused=True``,
        of every call received, refused or not)."""
        with self._lock:
            return [c.params for c in self.calls if c.method == method and (refused or c.ok)]

    def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Block until ``method`` has been accepted ``count`` times; return those calls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.calls_to(method)
            if len(found) >= count:
                return found
            time.sleep(0.01)
        refused = [f"{c.method}: {c.error} {c.errors}" for c in self._refused(method)]
        raise AssertionError(
            f"{method} accepted {len(self.calls_to(method))} times, "
            f"expected {count}; calls: {[c.method for c in self.calls]}"
            + (f"; refused: {refused}" if refused else "")
        )

    def _refused(self, method: str) -> list[ApiCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method and not c.ok]

    def attempts(self, method: str | None = None) -> int | dict[str, int]:
        """How many times ``method`` (or `response_url:<name>`) was called, failures
        included; without a method, every count."""
        with self._lock:
            return self._attempts[method] if method else dict(self._attempts)

    def rejected(self) -> list[ApiCall]:
        """The calls the fake refused by Slack's rules (not the failures a test asked for)."""
        with self._lock:
            return [c for c in self.calls if not c.ok and not c.injected]

    def assert_nothing_rejected(self) -> None:
        rejected = self.rejected()
        if rejected:
            lines = [f"{c.method}: {c.error} {c.errors}" for c in rejected]
            raise AssertionError("Slack refused:\n" + "\n".join(lines))

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The message as it stands now (after chat.update), or None."""
        with self._lock:
            found = self._messages.get((channel, ts))
            return dict(found) if found is not None else None

    def response_posts(self, name: str) -> list[dict[str, Any]]:
        """Every post response_url ``name`` accepted, in order."""
        with self._lock:
            state = self._response_urls.get(name)
            return list(state.posts) if state else []

    def response_messages(self, name: str) -> list[dict[str, Any]]:
        """The messages response_url ``name`` shows now: replace_original replaced the last
        one, delete_original removed it."""
        with self._lock:
            state = self._response_urls.get(name)
            return list(state.messages) if state else []

    def all_text(self) -> str:
        """Every body received, as text: for scanning for secrets."""
        with self._lock:
            return "\n".join(json.dumps(c.params, default=str) for c in self.calls)

    def clear(self) -> None:
        """Forget the calls (and so the rejections) and the attempt counts."""
        with self._lock:
            self.calls.clear()
            self._attempts.clear()

    # -- answering -------------------------------------------------------------------------

    def _fault(self, key: str, *, webhook: bool, channel: Any = None) -> _Answer | None:
        """The next injected failure for ``key`` (and ``channel``), if any; the caller holds
        the lock."""
        faults = [f for f in self._faults.get(key, []) if f.channel in (None, channel)]
        if not faults:
            return None
        fault = faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            self._faults[key] = [f for f in self._faults[key] if f is not fault]
        headers = {}
        if fault.status == 429 and fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.status >= 500:
            body = _html(fault.status) if fault.body is None else fault.body
            return _Answer(
                fault.status,
                body.encode(),
                "text/html; charset=utf-8",
                headers,
                error=f"http_{fault.status}",
                injected=True,
            )
        if webhook:
            answer = _Answer.webhook_error(fault.status, fault.error)
            body = fault.error if fault.body is None else fault.body
            answer.body, answer.headers, answer.injected = body.encode(), headers, True
            return answer
        if fault.body is not None:
            data = fault.body.encode()
        else:
            data = json.dumps({"ok": False, "error": fault.error}).encode()
        return _Answer(fault.status, data, headers=headers, error=fault.error, injected=True)

    def _member(self, channel: Any) -> bool:
        if not isinstance(channel, str) or channel[:1] in ("U", "W", "D"):
            return True  # a user id opens a DM
        return self._membership.get(channel, self._member_by_default)

    @staticmethod
    def _message_refusal(method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        text, blocks = params.get("text"), params.get("blocks")
        if method in MESSAGE_METHODS and blocks is not None:
            errors = validate_blocks(blocks)
            if errors:
                return {
                    "ok": False,
                    "error": "invalid_blocks",
                    "errors": errors,
                    "response_metadata": {"messages": [f"[ERROR] {e}" for e in errors]},
                }
        if method in VIEW_METHODS:
            errors = validate_view(params.get("view"))
            if errors:
                return {
                    "ok": False,
                    "error": "invalid_arguments",
                    "errors": errors,
                    "response_metadata": {"messages": [f"[ERROR] {e}" for e in errors]},
                }
        if method in MESSAGE_METHODS:
            if isinstance(text, str) and len(text) > MESSAGE_TEXT:
                return {"ok": False, "error": "msg_too_long"}
            if not text and not blocks and not params.get("attachments"):
                return {"ok": False, "error": "no_text"}
        return None

    def _answer(self, method: str, params: dict[str, Any]) -> _Answer:
        """The answer to a Web API call; the caller holds the lock."""
        if self.revoked is not None:
            return _Answer.json({"ok": False, "error": self.revoked}, injected=True)
        fault = self._fault(method, webhook=False, channel=params.get("channel"))
        if fault is not None:
            return fault
        if method in self.errors:
            return _Answer.json({"ok": False, "error": self.errors[method]}, injected=True)
        if method == "conversations.info":  # a scope the test took away: asked for, too
            needed = (
                "groups:read" if str(params.get("channel")).startswith("G") else "channels:read"
            )
            if needed not in self.scopes:
                data = {"ok": False, "error": "missing_scope", "needed": needed}
                return _Answer.json(data, injected=True)
        refusal = self._message_refusal(method, params)
        if refusal is not None:
            return _Answer.json(refusal)
        return _Answer.json(self._result(method, params))

    def _result(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        ts = f"1700000000.{next(self._ts):06d}"
        channel = params.get("channel")
        if method in ("chat.postMessage", "chat.postEphemeral") and not self._member(channel):
            return {"ok": False, "error": "not_in_channel"}
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://example.slack.com/",
                "team": "T",
                "user": "acrbot",
                "team_id": "T0001",
                "user_id": "UBOT",
                "bot_id": "BBOT",
            }
        if method == "chat.postMessage":
            message = {"type": "message", "text": params.get("text"), "ts": ts, "bot_id": "BBOT"}
            for key in ("blocks", "thread_ts"):
                if params.get(key) is not None:
                    message[key] = params[key]
            self._messages[(str(channel), ts)] = message
            return {"ok": True, "channel": channel, "ts": ts, "message": dict(message)}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": ts}
        if method == "chat.update":
            key = (str(channel), str(params.get("ts")))
            if key not in self._messages:
                return {"ok": False, "error": "message_not_found"}
            message = self._messages[key]
            message["text"] = params.get("text")
            if "blocks" in params:
                message["blocks"] = params["blocks"]
            return {
                "ok": True,
                "channel": channel,
                "ts": params.get("ts"),
                "text": params.get("text"),
                "message": dict(message),
            }
        if method in VIEW_METHODS:
            return {"ok": True, "view": {"id": "V0001", **(params.get("view") or {})}}
        if method == "usergroups.users.list":
            group = params.get("usergroup")
            if group not in self.usergroups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": self.usergroups[group]}
        if method == "conversations.replies":
            thread = params.get("ts")
            messages = [
                c.params
                for c in self.calls
                if c.method == "chat.postMessage" and c.ok and c.params.get("thread_ts") == thread
            ]
            return {"ok": True, "messages": messages, "has_more": False}
        if method == "files.upload":
            return {"ok": False, "error": "method_deprecated"}  # retired: files_upload_v2
        if method.startswith("files.") and "files:write" not in self.scopes:
            return {"ok": False, "error": "missing_scope", "needed": "files:write"}
        if method == "files.getUploadURLExternal":
            return self._upload_url(params)
        if method == "files.completeUploadExternal":
            return self._complete_upload(params)
        if method == "apps.connections.open":
            url = self.socket_url() if callable(self.socket_url) else self.socket_url
            return {"ok": True, "url": url}
        if method == "conversations.info":
            if channel in self.missing_channels:
                return {"ok": False, "error": "channel_not_found"}
            return {
                "ok": True,
                "channel": {"id": channel, "name": "platform", "is_member": self._member(channel)},
            }
        return {"ok": False, "error": "unknown_method"}

    # -- files (files.getUploadURLExternal, the upload POST, files.completeUploadExternal) --

    def _upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        """Step 1: `filename` and `length` (bytes, an integer) are required."""
        filename, length = params.get("filename"), str(params.get("length", ""))
        if not filename or not length.isdigit() or int(length) < 1:
            return {"ok": False, "error": "invalid_arguments"}
        if int(length) > MAX_FILE_BYTES:
            return {"ok": False, "error": "file_too_large"}
        file_id = f"F{next(self._ts):08d}"
        self.files[file_id] = _File(filename, int(length), params.get("alt_txt"))
        url = f"http://127.0.0.1:{self.port}/upload/v1/{file_id}"
        return {"ok": True, "upload_url": url, "file_id": file_id}

    def _receive(self, file_id: str, data: bytes) -> tuple[int, bytes]:
        """Step 2; the caller holds the lock. Slack answers 200 `OK - <length>`."""
        self._attempts["upload"] += 1
        known = self.files.get(file_id)
        if known is None or known.completed:
            return 404, b"file not found"
        if len(data) != known.length:  # Slack keeps what it got; completing it then fails
            known.data = None
            return 200, f"OK - {len(data)}".encode()
        known.data = data
        return 200, f"OK - {len(data)}".encode()

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        """Step 3: every file uploaded in full, then shared in `channel_id` (a thread with
        `thread_ts`), with `initial_comment`."""
        try:
            files = json.loads(params.get("files") or "")
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(files, list) or not files:
            return {"ok": False, "error": "invalid_arguments"}
        channel = params.get("channel_id")
        if channel is not None and not self._member(channel):
            return {"ok": False, "error": "not_in_channel"}
        done = []
        for entry in files:
            known = self.files.get(entry.get("id")) if isinstance(entry, dict) else None
            if known is None or known.data is None or known.completed:
                return {
                    "ok": False,
                    "error": "file_upload_not_found" if known else "file_not_found",
                }
            done.append((entry["id"], known, entry.get("title")))
        for _, known, title in done:
            known.completed = True
            known.title = title or known.filename
            known.channel, known.thread_ts = channel, params.get("thread_ts")
            known.comment = params.get("initial_comment")
        return {
            "ok": True,
            "files": [{"id": file_id, "title": known.title} for file_id, known, _ in done],
        }

    def shared_files(self) -> list[_File]:
        """Files uploaded in full and completed (shared where their `channel` says)."""
        return [f for f in self.files.values() if f.completed]

    def _respond(self, name: str, params: dict[str, Any]) -> _Answer:
        """A post to response_url ``name``; the caller holds the lock."""
        fault = self._fault(f"response_url:{name}", webhook=True) or self._fault(
            "response_url:*", webhook=True
        )
        if fault is not None:
            return fault
        now = self._now()
        state = self._response_urls.setdefault(name, _ResponseUrl(now))
        if now - state.issued > RESPONSE_URL_TTL:
            return _Answer.webhook_error(404, "expired_url")
        if len(state.posts) >= RESPONSE_URL_POSTS:
            return _Answer.webhook_error(404, "used_url")
        deleting = bool(params.get("delete_original"))
        if "blocks" in params:
            errors = validate_blocks(params["blocks"])
            if errors:
                return _Answer.webhook_error(400, "invalid_blocks", errors)
        text = params.get("text")
        if isinstance(text, str) and len(text) > MESSAGE_TEXT:
            return _Answer.webhook_error(400, "msg_too_long")
        if not deleting and not text and not params.get("blocks"):
            return _Answer.webhook_error(400, "no_text")
        state.posts.append(params)
        message = {k: v for k, v in params.items() if k in ("text", "blocks", "response_type")}
        if deleting:
            if state.messages:
                state.messages.pop()
        elif params.get("replace_original") and state.messages:
            # The message stays where it is: replacing one in the channel shows the new
            # content to everyone, whatever response_type says (and an ephemeral one stays
            # the clicker's).
            shown = state.messages[-1].get("response_type")
            if shown is not None:
                message["response_type"] = shown
            state.messages[-1] = message
        else:
            state.messages.append(message)
        return _Answer.json({"ok": True})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                if self.path.startswith("/upload/v1/"):
                    return self._upload()
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    params = json.loads(raw or "{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw).items()}
                    for key in ("blocks", "view", "users", "attachments"):
                        if isinstance(params.get(key), str) and params[key][:1] in "[{":
                            params[key] = json.loads(params[key])
                if "?" in self.path:  # slack_sdk sends some methods' params in the query
                    params.update(
                        {k: v[0] for k, v in parse_qs(self.path.split("?", 1)[1]).items()}
                    )
                with fake._lock:
                    if self.path.startswith("/api/"):
                        method = self.path[len("/api/") :].split("?")[0]
                        fake._attempts[method] += 1
                        answer = fake._answer(method, params)
                    else:
                        name = self.path.rsplit("/", 1)[-1]
                        method = f"response_url:{name}"
                        fake._attempts[method] += 1
                        answer = fake._respond(name, params)
                    fake.calls.append(
                        ApiCall(
                            method,
                            params,
                            dict(self.headers),
                            status=answer.status,
                            error=answer.error,
                            errors=answer.errors,
                            injected=answer.injected,
                        )
                    )
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                if self.path.startswith("/api/"):
                    self.send_header("x-oauth-scopes", ",".join(sorted(fake.scopes)))
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def _upload(self) -> None:
                """Step 2 of an upload: the file's bytes POSTed to the URL step 1 gave."""
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                file_id = self.path.rsplit("/", 1)[-1]
                with fake._lock:
                    status, body = fake._receive(file_id, data)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
