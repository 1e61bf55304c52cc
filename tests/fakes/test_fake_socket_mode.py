"""The fake Socket Mode server refuses what Slack refuses (tests/support/fake_socket_mode.py)."""

import contextlib
import json
import socket
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.fake_socket_mode import MAX_CONNECTIONS, FakeSocketMode


# A client under load may answer a ping late: 1 s, not 0.3, before it counts as gone.
@pytest.fixture
def server():
    ws = FakeSocketMode(ping_interval=0.3, ping_timeout=1.0, close_after=0.5).start()
    yield ws
    ws.stop()


def until(condition, timeout=5):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def hello(client):
    message = json.loads(client.recv(timeout=5))
    assert message["type"] == "hello"
    return message


def test_fake_socket_mode_ticket_works_once(server):
    url = server.issue_url()
    with connect(url) as client:
        hello(client)
    with pytest.raises(InvalidStatus) as refused:
        connect(url)
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        connect(f"ws://127.0.0.1:{server.port}/link/?ticket=made-up")
    assert [why for _, why in server.refused] == ["ticket already used", "unknown ticket"]


@pytest.mark.slow  # waits out the ping timeout
def test_fake_socket_mode_pings_and_drops_a_client_that_never_answers(server):
    with connect(server.issue_url()) as client:  # websockets answers pings while reading
        hello(client)
        with pytest.raises(TimeoutError):
            client.recv(timeout=1.5)
        assert server.open_connections()
    raw = socket.create_connection(("127.0.0.1", server.port))
    path = server.issue_url().split(str(server.port), 1)[1]
    raw.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and server.history[-1].closed_at is None:
        time.sleep(0.05)  # this client reads nothing, so it never answers a ping
    raw.close()
    assert server.history[-1].closed_at is not None
    # pinged after 0.3 s, dropped 1 s after an unanswered ping: well before 4 s, even under load
    assert server.history[-1].closed_at - server.history[-1].opened_at < 4


def test_fake_socket_mode_delivers_nothing_after_disconnect_and_closes_later(server):
    with connect(server.issue_url()) as client:
        hello(client)
        server.disconnect("refresh_requested")
        told = json.loads(client.recv(timeout=5))
        assert told["type"] == "disconnect" and told["reason"] == "refresh_requested"
        envelope = server.send("slash_commands", {"command": "/acr"})
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            while True:
                assert json.loads(client.recv(timeout=5)).get("envelope_id") != envelope
        assert 0.4 < time.monotonic() - started < 2
    until(lambda: server.history[0].closed_at is not None)
    assert server.history[0].closed_by == "server"
    with connect(server.issue_url()) as again:  # the envelope waited for a connection
        hello(again)
        assert json.loads(again.recv(timeout=5))["envelope_id"] == envelope
        again.send(json.dumps({"envelope_id": envelope}))
        assert server.wait_ack(envelope)[0] == {"envelope_id": envelope}
    gaps = server.gaps(server.history[0].hello_at, server.history[1].hello_at)
    assert len(gaps) == 1 and gaps[0][1] > 0.0


def test_fake_socket_mode_says_too_many_websockets_to_the_eleventh(server):
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(connect(server.issue_url())) for _ in range(MAX_CONNECTIONS + 1)
        ]
        for client in clients:
            hello(client)
        told = json.loads(clients[-1].recv(timeout=5))
        assert told["reason"] == "too_many_websockets"
        assert len(server.deliverable()) == MAX_CONNECTIONS


def test_fake_socket_mode_link_disabled_closes_all_and_refuses_new(server):
    with connect(server.issue_url()) as client:
        hello(client)
        server.disconnect("link_disabled")
        assert json.loads(client.recv(timeout=5))["reason"] == "link_disabled"
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5)
    with pytest.raises(InvalidStatus):
        connect(server.issue_url())


def test_fake_socket_mode_spread_hands_each_envelope_to_one_connection_at_random():
    """With several connections (two replicas), Slack gives each envelope to one of them at
    random: with ``spread`` the fake does too; each envelope reaches exactly one."""
    server = FakeSocketMode(spread=True).start()
    try:
        with connect(server.issue_url()) as a, connect(server.issue_url()) as b:
            hello(a)
            hello(b)
            until(lambda: len(server.deliverable()) == 2)
            sent = [server.send("events_api", {"n": n}) for n in range(40)]
            got: dict[str, list[str]] = {"a": [], "b": []}
            deadline = time.monotonic() + 10
            while sum(map(len, got.values())) < 40 and time.monotonic() < deadline:
                for name, client in (("a", a), ("b", b)):
                    with contextlib.suppress(TimeoutError):
                        envelope = json.loads(client.recv(timeout=0.01))
                        got[name].append(envelope["envelope_id"])
            assert sorted(got["a"] + got["b"]) == sorted(sent)  # each once, none lost
            assert got["a"] and got["b"], {k: len(v) for k, v in got.items()}
    finally:
        server.stop()
