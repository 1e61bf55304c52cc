"""The fake refuses what Slack refuses: each limit through the real slack_sdk clients, over the
limit refused and at the limit accepted; faults and rate limits as slack_sdk's retry handlers
see them; the realism the bot depends on (unknown ts, membership, threads, response_url)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from slack_bolt import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient

from tests.support.fake_slack import FakeSlack


@pytest.fixture
def fake():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def client(fake):
    return WebClient(token="xoxb-test", base_url=fake.api_url)


def text(n: int, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": kind, "text": "x" * n}


def plain(n: int) -> dict[str, Any]:
    return text(n, "plain_text")


def section(n: int = 1) -> dict[str, Any]:
    return {"type": "section", "text": text(n)}


def button(*, label: int = 5, action_id: int = 5, value: int = 5, **extra: Any) -> dict[str, Any]:
    return {
        "type": "button",
        "text": plain(label),
        "action_id": "a" * action_id,
        "value": "v" * value,
        **extra,
    }


def actions(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "actions", "elements": list(elements)}


def confirm(title: int = 5, body: int = 5, yes: int = 5, no: int = 5) -> dict[str, Any]:
    return {"title": plain(title), "text": text(body), "confirm": plain(yes), "deny": plain(no)}


# (rule, limit, blocks for a size n, the JSON pointer Slack names when n is over the limit)
MESSAGE_RULES: list[tuple[str, int, Callable[[int], list[dict[str, Any]]], str]] = [
    ("blocks per message", 50, lambda n: [section() for _ in range(n)], "/blocks"),
    ("section text", 3000, lambda n: [section(n)], "/blocks/0/text/text"),
    (
        "fields per section",
        10,
        lambda n: [{"type": "section", "fields": [text(1) for _ in range(n)]}],
        "/blocks/0/fields",
    ),
    (
        "section field",
        2000,
        lambda n: [{"type": "section", "fields": [text(1), text(n)]}],
        "/blocks/0/fields/1/text",
    ),
    ("header text", 150, lambda n: [{"type": "header", "text": plain(n)}], "/blocks/0/text/text"),
    (
        "context elements",
        10,
        lambda n: [{"type": "context", "elements": [text(1) for _ in range(n)]}],
        "/blocks/0/elements",
    ),
    ("button text", 75, lambda n: [actions(button(label=n))], "/blocks/0/elements/0/text/text"),
    ("action_id", 255, lambda n: [actions(button(action_id=n))], "/blocks/0/elements/0/action_id"),
    ("button value", 2000, lambda n: [actions(button(value=n))], "/blocks/0/elements/0/value"),
    (
        "elements per actions block",
        25,
        lambda n: [actions(*(button(action_id=3, value=i) for i in range(n)))],
        "/blocks/0/elements",
    ),
    ("block_id", 255, lambda n: [{**section(), "block_id": "b" * n}], "/blocks/0/block_id"),
    (
        "confirm title",
        100,
        lambda n: [actions(button(confirm=confirm(title=n)))],
        "/blocks/0/elements/0/confirm/title/text",
    ),
    (
        "confirm text",
        300,
        lambda n: [actions(button(confirm=confirm(body=n)))],
        "/blocks/0/elements/0/confirm/text/text",
    ),
    (
        "confirm button",
        30,
        lambda n: [actions(button(confirm=confirm(yes=n)))],
        "/blocks/0/elements/0/confirm/confirm/text",
    ),
    (
        "deny button",
        30,
        lambda n: [actions(button(confirm=confirm(no=n)))],
        "/blocks/0/elements/0/confirm/deny/text",
    ),
    (
        "section accessory button",
        75,
        lambda n: [{**section(), "accessory": button(label=n)}],
        "/blocks/0/accessory/text/text",
    ),
]


@pytest.mark.parametrize(
    ("limit", "blocks", "pointer"),
    [rule[1:] for rule in MESSAGE_RULES],
    ids=[rule[0] for rule in MESSAGE_RULES],
)
def test_message_block_limits(fake, client, limit, blocks, pointer):
    ok = client.chat_postMessage(channel="C1", text="at the limit", blocks=blocks(limit))
    assert ok["ok"]
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C1", text="over the limit", blocks=blocks(limit + 1))
    answer = refused.value.response
    assert answer["error"] == "invalid_blocks"
    assert any(f"[json-pointer:{pointer}]" in e for e in answer["errors"]), answer["errors"]
    assert [c.error for c in fake.rejected()] == ["invalid_blocks"]
    assert len(fake.calls_to("chat.postMessage")) == 1  # what Slack took, not what it refused


@pytest.mark.parametrize(
    ("blocks", "pointer"),
    [
        ([{"type": "header", "text": text(5)}], "/blocks/0/text/type"),
        ([actions(button(text=text(5)))], "/blocks/0/elements/0/text/type"),
        ([actions(button(confirm={**confirm(), "title": text(5)}))], "/confirm/title/type"),
        ([section(0)], "/blocks/0/text/text"),  # a text object is never empty
        ([{"type": "section"}], "/blocks/0"),  # text or fields
        ([{**section(), "block_id": "b"}, {**section(), "block_id": "b"}], "/blocks/1/block_id"),
    ],
    ids=["header", "button", "confirm title", "empty text", "empty section", "duplicate id"],
)
def test_message_shape_rules(client, blocks, pointer):
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C1", text="t", blocks=blocks)
    assert refused.value.response["error"] == "invalid_blocks"
    assert any(pointer in e for e in refused.value.response["errors"])


def test_plain_text_where_slack_requires_it_is_accepted(client):
    blocks = [
        {"type": "header", "text": plain(5)},
        actions(button(confirm=confirm())),
        {"type": "context", "elements": [text(3), plain(3)]},
    ]
    assert client.chat_postMessage(channel="C1", text="t", blocks=blocks)["ok"]


def test_message_text_limit(fake, client):
    assert client.chat_postMessage(channel="C1", text="x" * 40_000)["ok"]
    with pytest.raises(SlackApiError, match="msg_too_long"):
        client.chat_postMessage(channel="C1", text="x" * 40_001)
    with pytest.raises(SlackApiError, match="no_text"), pytest.warns(UserWarning, match="text"):
        client.chat_postMessage(channel="C1", text="")
    assert [c.error for c in fake.rejected()] == ["msg_too_long", "no_text"]


def test_every_message_method_validates_blocks(fake, client):
    posted = client.chat_postMessage(channel="C1", text="t", blocks=[section()])
    too_long = [section(3001)]
    calls = {
        "chat.postMessage": lambda: client.chat_postMessage(
            channel="C1", text="t", blocks=too_long
        ),
        "chat.postEphemeral": lambda: client.chat_postEphemeral(
            channel="C1", user="U1", text="t", blocks=too_long
        ),
        "chat.update": lambda: client.chat_update(
            channel="C1", ts=posted["ts"], text="t", blocks=too_long
        ),
    }
    for method, call in calls.items():
        with pytest.raises(SlackApiError) as refused:
            call()
        assert refused.value.response["error"] == "invalid_blocks", method
    assert [c.method for c in fake.rejected()] == list(calls)
    assert fake.message("C1", posted["ts"])["blocks"] == [section()]  # the refused update


# -- views ---------------------------------------------------------------------------------


def modal(**overrides: Any) -> dict[str, Any]:
    view = {
        "type": "modal",
        "callback_id": "cb",
        "title": plain(5),
        "submit": plain(5),
        "close": plain(5),
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": plain(5),
                "element": {"type": "plain_text_input", "action_id": "reason"},
            }
        ],
    }
    return {**view, **overrides}


def label(n: int) -> dict[str, Any]:
    return modal(blocks=[{**modal()["blocks"][0], "label": plain(n)}])


VIEW_RULES: list[tuple[str, int, Callable[[int], dict[str, Any]], str]] = [
    ("modal title", 24, lambda n: modal(title=plain(n)), "/view/title/text"),
    ("modal submit", 24, lambda n: modal(submit=plain(n)), "/view/submit/text"),
    ("modal close", 24, lambda n: modal(close=plain(n)), "/view/close/text"),
    ("input label", 2000, label, "/view/blocks/0/label/text"),
    (
        "blocks per view",
        100,
        lambda n: modal(blocks=[section() for _ in range(n)]),
        "/view/blocks",
    ),
]


@pytest.mark.parametrize(
    ("limit", "view", "pointer"),
    [rule[1:] for rule in VIEW_RULES],
    ids=[rule[0] for rule in VIEW_RULES],
)
def test_view_limits(fake, client, limit, view, pointer):
    assert client.views_open(trigger_id="t1", view=view(limit))["ok"]
    with pytest.raises(SlackApiError) as refused:
        client.views_open(trigger_id="t2", view=view(limit + 1))
    answer = refused.value.response
    assert answer["error"] == "invalid_arguments"  # what Slack answers for a bad view
    assert any(f"[json-pointer:{pointer}]" in m for m in answer["response_metadata"]["messages"])
    assert [c.method for c in fake.rejected()] == ["views.open"]


def test_modal_title_must_be_plain_text(client):
    with pytest.raises(SlackApiError) as refused:
        client.views_open(trigger_id="t", view=modal(title=text(5)))
    assert any("/view/title/type" in e for e in refused.value.response["errors"])


def test_every_view_method_validates(fake, client):
    home = {"type": "home", "blocks": [section() for _ in range(100)]}
    assert client.views_publish(user_id="U1", view=home)["ok"]
    too_many = {**home, "blocks": [section() for _ in range(101)]}
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        client.views_publish(user_id="U1", view=too_many)
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        client.views_update(view_id="V0001", view=modal(title=plain(25)))
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        client.views_push(trigger_id="t", view=modal(title=plain(25)))
    assert [c.method for c in fake.rejected()] == ["views.publish", "views.update", "views.push"]


# -- response_url --------------------------------------------------------------------------


def test_response_url_limits(fake):
    hook = WebhookClient(fake.response_url("r1"))
    assert hook.send(text="at", blocks=[section(3000)]).status_code == 200
    refused = hook.send(text="over", blocks=[section(3001)])
    assert (refused.status_code, refused.body) == (400, "invalid_blocks")
    too_many = hook.send(text="over", blocks=[section() for _ in range(51)])
    assert (too_many.status_code, too_many.body) == (400, "invalid_blocks")
    assert hook.send(text="x" * 40_001).body == "msg_too_long"
    assert [(c.method, c.error) for c in fake.rejected()] == [
        ("response_url:r1", "invalid_blocks"),
        ("response_url:r1", "invalid_blocks"),
        ("response_url:r1", "msg_too_long"),
    ]
    assert "/blocks/0/text/text" in fake.rejected()[0].errors[0]
    assert len(fake.response_posts("r1")) == 1


def test_bolt_respond_sees_the_refusal(fake):
    respond = Respond(response_url=fake.response_url("r1"))
    answer = respond(text="t", blocks=[{"type": "header", "text": text(5)}])
    assert (answer.status_code, answer.body) == (400, "invalid_blocks")


def test_response_url_takes_five_posts_in_thirty_minutes(fake):
    hook = WebhookClient(fake.response_url("five"))
    assert [hook.send(text=str(i)).status_code for i in range(5)] == [200] * 5
    used = hook.send(text="sixth")
    assert (used.status_code, used.body) == (404, "used_url")
    fresh = WebhookClient(fake.response_url("late"))
    fake.advance(30 * 60 + 1)
    expired = fresh.send(text="too late")
    assert (expired.status_code, expired.body) == (404, "expired_url")


def test_response_url_replace_and_delete_original(fake):
    original = {"text": "card", "blocks": [section()]}
    hook = WebhookClient(fake.response_url("click", original=original))
    hook.send(text="new", response_type="ephemeral")
    hook.send(text="replaced", replace_original=True)
    assert [m["text"] for m in fake.response_messages("click")] == ["card", "replaced"]
    hook.send(delete_original=True)
    assert [m["text"] for m in fake.response_messages("click")] == ["card"]
    hook.send(text="instead of the card", replace_original=True)
    assert [m["text"] for m in fake.response_messages("click")] == ["instead of the card"]
    assert len(fake.response_posts("click")) == 4


def test_response_url_replacing_a_channel_message_keeps_it_in_the_channel(fake):
    """What Slack does: `replace_original` edits the message where it is, so an ephemeral
    answer replacing a message in the channel is seen by everyone."""
    hook = WebhookClient(
        fake.response_url("shared", original={"text": "card", "response_type": "in_channel"})
    )
    hook.send(text="mine only?", response_type="ephemeral", replace_original=True)
    assert fake.response_messages("shared") == [
        {"text": "mine only?", "response_type": "in_channel"}
    ]


@pytest.mark.slow  # waits out Retry-After
def test_response_url_rate_limit_is_retried_by_slack_sdk(fake):
    fake.fail_response_url("busy", status=429, retry_after=1)
    hook = WebhookClient(
        fake.response_url("busy"), retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)]
    )
    started = time.monotonic()
    assert hook.send(text="hello").status_code == 200
    assert time.monotonic() - started >= 1
    assert fake.attempts("response_url:busy") == 2
    assert [m["text"] for m in fake.response_messages("busy")] == ["hello"]
    assert fake.rejected() == []  # the test asked for that 429


def test_response_url_server_errors(fake):
    fake.fail_response_url(status=503, times=2)
    hook = WebhookClient(fake.response_url("r"))
    down = hook.send(text="a")
    assert down.status_code == 503 and "<html>" in down.body
    assert hook.send(text="b").status_code == 503
    assert hook.send(text="c").status_code == 200
    assert fake.attempts("response_url:r") == 3


# -- faults and rate limits ----------------------------------------------------------------


@pytest.mark.slow  # waits out Retry-After
def test_rate_limit_is_retried_by_slack_sdk(fake):
    fake.fail("chat.postMessage", status=429, retry_after=1)
    client = WebClient(
        token="xoxb-test",
        base_url=fake.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    started = time.monotonic()
    assert client.chat_postMessage(channel="C1", text="hi")["ok"]
    assert time.monotonic() - started >= 1
    assert fake.attempts("chat.postMessage") == 2
    assert [c.status for c in fake.calls] == [429, 200]
    assert fake.calls_to("chat.postMessage") == [{"channel": "C1", "text": "hi"}]


def test_rate_limit_without_a_retry_handler(fake, client):
    fake.fail("chat.update", times=2, retry_after=30)
    for _ in range(2):
        with pytest.raises(SlackApiError) as limited:
            client.chat_update(channel="C1", ts="1", text="t")
        response = limited.value.response
        assert (response.status_code, response["error"]) == (429, "ratelimited")
        assert response.headers["Retry-After"] == "30"
    with pytest.raises(SlackApiError, match="message_not_found"):  # the fault is used up
        client.chat_update(channel="C1", ts="1", text="t")
    assert fake.attempts("chat.update") == 3


@pytest.mark.slow  # waits out the SDK's back-off
def test_server_errors_are_html_and_retried_by_slack_sdk(fake):
    fake.fail("auth.test", status=500)
    fake.fail("auth.test", status=503, body="")
    plain_client = WebClient(token="xoxb-test", base_url=fake.api_url)
    with pytest.raises(SlackApiError, match="non-JSON"):
        plain_client.auth_test()
    retrying = WebClient(
        token="xoxb-test",
        base_url=fake.api_url,
        retry_handlers=[ServerErrorRetryHandler(max_retry_count=1)],
    )
    assert retrying.auth_test()["ok"]
    assert [c.status for c in fake.calls] == [500, 503, 200]
    assert fake.attempts() == {"auth.test": 3}


def test_a_slack_error_for_some_calls(fake, client):
    fake.fail("chat.postMessage", status=200, error="channel_not_found", times=1)
    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.chat_postMessage(channel="C1", text="t")
    assert client.chat_postMessage(channel="C1", text="t")["ok"]


def test_faults_are_thread_safe_and_settable_while_running(fake):
    client = WebClient(token="xoxb-test", base_url=fake.api_url)
    results: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            client.auth_test()
            outcome = "ok"
        except SlackApiError as exc:
            outcome = exc.response["error"]
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=call) for _ in range(25)]
    for thread in threads[:5]:  # calls in flight while the fault is set
        thread.start()
    fake.fail("auth.test", times=7)
    for thread in threads[5:]:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("ratelimited") == 7
    assert results.count("ok") == 18
    assert fake.attempts("auth.test") == 25


def test_the_errors_dict_still_answers(fake, client):
    fake.errors["chat.postMessage"] = "is_archived"
    with pytest.raises(SlackApiError, match="is_archived"):
        client.chat_postMessage(channel="C1", text="t")
    assert fake.rejected() == []  # asked for by the test
    assert fake.calls_to("chat.postMessage") == []
    assert len(fake.calls_to("chat.postMessage", refused=True)) == 1


# -- realism -------------------------------------------------------------------------------


def test_update_of_a_message_never_posted(fake, client):
    with pytest.raises(SlackApiError, match="message_not_found"):
        client.chat_update(channel="C1", ts="1700000000.999999", text="t")
    posted = client.chat_postMessage(channel="C1", text="first")
    with pytest.raises(SlackApiError, match="message_not_found"):  # the right ts elsewhere
        client.chat_update(channel="C2", ts=posted["ts"], text="t")
    updated = client.chat_update(channel="C1", ts=posted["ts"], text="second")
    assert updated["message"]["text"] == "second"
    assert fake.message("C1", posted["ts"])["text"] == "second"


def test_channel_membership(fake, client):
    assert client.chat_postMessage(channel="CANY", text="member of everything")["ok"]
    fake.leave("C1")
    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.chat_postMessage(channel="C1", text="t")
    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.chat_postEphemeral(channel="C1", user="U1", text="t")
    fake.join("C1")
    assert client.chat_postMessage(channel="C1", text="t")["ok"]
    fake.only_member_of("C2")
    assert client.chat_postMessage(channel="C2", text="t")["ok"]
    assert client.chat_postMessage(channel="UALICE", text="a DM")["ok"]
    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.chat_postMessage(channel="CANY", text="t")
    assert [c.error for c in fake.rejected()] == ["not_in_channel"] * 3


def test_thread_ts_is_echoed(client):
    parent = client.chat_postMessage(channel="C1", text="card")
    reply = client.chat_postMessage(channel="C1", text="in thread", thread_ts=parent["ts"])
    assert reply["message"]["thread_ts"] == parent["ts"]
    assert "thread_ts" not in parent["message"]
    replies = client.conversations_replies(channel="C1", ts=parent["ts"])
    assert [m["text"] for m in replies["messages"]] == ["in thread"]


def test_rejections_are_recorded_and_easy_to_assert(fake, client):
    fake.assert_nothing_rejected()
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="t", blocks=[section(3001)])
    with pytest.raises(AssertionError, match=r"chat.postMessage: invalid_blocks"):
        fake.assert_nothing_rejected()
    with pytest.raises(AssertionError, match="refused"):
        fake.wait_for("chat.postMessage", timeout=0.1)
    fake.clear()
    fake.assert_nothing_rejected()


def test_a_revoked_token_is_refused_by_every_method_until_restored(fake, client):
    """revoke(): Slack answers every Web API method, auth.test included, with the token's
    refusal (HTTP 200, ok false), as it does for a revoked token; response_url still works."""
    fake.revoke("token_revoked")
    for call in (client.auth_test, lambda: client.chat_postMessage(channel="C1", text="hi")):
        with pytest.raises(SlackApiError) as refused:
            call()
        assert refused.value.response.status_code == 200
        assert refused.value.response["error"] == "token_revoked"
    fake.restore()
    assert client.auth_test()["ok"] is True
    assert client.chat_postMessage(channel="C1", text="hi")["ok"] is True
