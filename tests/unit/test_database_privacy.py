"""The database is private and keeps no live capability longer than a job (issue 27, item 8).

A slash command's payload holds a response_url (post as the bot for 30 minutes) and Slack's
legacy verification token; the file was created 0644 and kept whole payloads for a day.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time

import pytest

from bot.slack import handoff
from bot.slack.listeners import Listeners
from bot.state.store import Store


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    old = os.umask(0o022)  # what most shells and images run with
    yield
    os.umask(old)


def test_the_database_its_folder_and_its_wal_are_created_private(tmp_path, open_umask):
    path = tmp_path / "state" / "acrbot.db"
    store = Store(path, create=True)
    with store.transaction() as db:
        db.execute("insert into meta values ('k', 'v')")
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
    wal = [p for p in path.parent.iterdir() if p.name != path.name]
    assert {p.name for p in wal} == {"acrbot.db-wal", "acrbot.db-shm"}
    assert {p.name: mode(p) for p in wal} == {p.name: 0o600 for p in wal}
    store.close()


def test_init_makes_an_existing_world_readable_database_private(tmp_path, open_umask):
    path = tmp_path / "acrbot.db"
    Store(path, create=True).close()
    os.chmod(path, 0o644)  # made by an earlier release
    Store(path, create=True).close()  # what `acrbot init` does
    assert mode(path) == 0o600


def test_an_existing_folder_is_left_as_it_is(tmp_path, open_umask):
    os.chmod(tmp_path, 0o755)
    Store(tmp_path / "acrbot.db", create=True).close()
    assert mode(tmp_path) == 0o755  # not ours to change (a mount, the working directory)


class Sink:
    def __init__(self):
        self.jobs = []

    def submit(self, job):
        self.jobs.append(job)
        return handoff.QUEUED


SLASH = {
    "token": "legacy-verification-token",
    "team_id": "T1",
    "team_domain": "acme",
    "channel_id": "C0CHAN",
    "channel_name": "platform",
    "user_id": "UCAROL",
    "user_name": "carol",
    "command": "/acr",
    "text": "repos",
    "api_app_id": "A0001",
    "is_enterprise_install": "false",
    "response_url": "https://hooks.slack.com/commands/T1/1/abc",
    "trigger_id": "trig.1",
}


def test_a_command_job_keeps_only_what_it_needs():
    sink = Sink()
    Listeners(sink).on_command(lambda **_: None, SLASH)
    [job] = sink.jobs
    assert job.data == {
        "user_id": "UCAROL",
        "channel_id": "C0CHAN",
        "text": "repos",
        "response_url": "https://hooks.slack.com/commands/T1/1/abc",
    }
    assert job.key == "trigger:trig.1"


def test_a_thread_reply_job_keeps_only_what_it_needs():
    sink = Sink()
    event = {
        "type": "app_mention",
        "channel": "C0CHAN",
        "user": "UBOB",
        "text": "<@UBOT> approve",
        "ts": "2.0",
        "thread_ts": "1.0",
        "event_ts": "2.0",
        "blocks": [{"type": "rich_text"}],
        "team": "T1",
    }
    Listeners(sink).on_mention({"event_id": "Ev1"}, event)
    assert sink.jobs[0].data == {
        "channel": "C0CHAN",
        "user": "UBOB",
        "text": "<@UBOT> approve",
        "ts": "2.0",
        "thread_ts": "1.0",
    }


def test_a_finished_job_leaves_no_payload_or_response_url_in_the_database(slack):
    """Scan the database files themselves once the answer is delivered."""
    name, status = slack.command("UCAROL", "repos")
    assert status == 200
    assert slack.response(name)["response_type"] == "ephemeral"
    url = f"/response/{name}".encode()
    store = slack.ctx.store
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        store.db.execute("select count(*) from outbox where state = 'pending'").fetchone()[0]
        or store.db.execute("select count(*) from jobs where state != 'done'").fetchone()[0]
    ):
        time.sleep(0.02)
    rows = store.db.execute("select payload from jobs").fetchall()
    assert rows and all(json.loads(p) == {} for (p,) in rows)
    for (payload,) in store.db.execute("select payload from outbox"):
        assert "url" not in json.loads(payload)
    slack.stop()
    files = list(store.path.parent.glob("acrbot.db*"))
    assert files
    for f in files:
        content = f.read_bytes()
        assert url not in content, f.name
        assert b"legacy" not in content, f.name  # the harness's verification token
    conn = sqlite3.connect(store.path)
    assert conn.execute("select count(*) from jobs").fetchone()[0] >= 1  # the key is kept
    conn.close()
