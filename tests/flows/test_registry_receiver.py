"""The receiver as an ASGI app (what `--events-port` serves in Socket Mode): authentication
before the body is read, bounds on chunked bodies, stored before the answer, one ring."""

import asyncio
import json

import httpx
import pytest

from bot.core.event_rules import EventsConfig
from bot.slack.registry_receiver import EventWriter, Receiver, events_only_app
from bot.state.registry_events import EventLog
from bot.state.store import Store
from tests.support.registry_payloads import distribution_event, envelope

SECRET = "r" * 40


@pytest.fixture
def receiver(tmp_path):
    store = Store(tmp_path / "r.db", create=True)
    rings = []
    writer = EventWriter(EventLog(store), ring=lambda: rings.append(1))
    receiver = Receiver(EventsConfig("EV", SECRET, max_body=4096), writer)
    receiver.store, receiver.rings = store, rings
    yield receiver
    writer.stop()
    store.close()


def call(receiver, method, path, *, content=b"", headers=None):
    async def go():
        transport = httpx.ASGITransport(app=events_only_app(receiver))
        async with httpx.AsyncClient(transport=transport, base_url="http://bot") as client:
            return await client.request(method, path, content=content, headers=headers or {})

    return asyncio.run(go())


AUTH = {"Authorization": f"Bearer {SECRET}"}


def test_events_are_stored_before_the_answer_and_ring_the_worker_once(receiver):
    body = envelope(distribution_event(id="a"), distribution_event(id="b"))
    answer = call(receiver, "POST", "/registry/events", content=body, headers=AUTH)
    assert (answer.status_code, answer.json()) == (
        200,
        {"stored": 2, "duplicates": 0, "ignored": 0},
    )
    assert receiver.store.db.execute("select count(*) from registry_events").fetchone()[0] == 2
    again = call(receiver, "POST", "/registry/events", content=body, headers=AUTH)
    assert again.json() == {"stored": 0, "duplicates": 2, "ignored": 0}
    assert receiver.rings == [1]  # nothing new: no ring


def test_a_chunked_body_past_the_bound_is_413(receiver):
    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    answer = call(receiver, "POST", "/registry/events", content=chunks(), headers=AUTH)
    assert answer.status_code == 413


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": SECRET},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": f"Bearer {SECRET} "},
    ],
)
def test_anything_but_the_bearer_secret_is_401(receiver, headers):
    answer = call(receiver, "POST", "/registry/events", content=b"x" * 100_000, headers=headers)
    assert answer.status_code == 401
    assert SECRET not in answer.text


def test_the_events_port_serves_nothing_else(receiver):
    assert call(receiver, "GET", "/healthz").status_code == 200
    assert call(receiver, "POST", "/slack/events", headers=AUTH).status_code == 404
    assert call(receiver, "GET", "/registry/events", headers=AUTH).status_code == 405
    assert json.loads(call(receiver, "GET", "/metrics").text) == {"error": "not found"}


def test_socket_mode_serves_the_receiver_on_its_events_port(receiver):
    from bot.slack.service import serve_events
    from tests.support.helpers import free_port, wait_until

    port = free_port()
    server = serve_events(receiver, host="127.0.0.1", port=port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(f"{url}/healthz"), 10, what="the events port")
        body = envelope(distribution_event(id="sm"))
        answer = httpx.post(f"{url}/registry/events", content=body, headers=AUTH)
        assert answer.json()["stored"] == 1
        assert httpx.post(f"{url}/registry/events", content=body).status_code == 401
    finally:
        server.should_exit = True


def _up(url):
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
