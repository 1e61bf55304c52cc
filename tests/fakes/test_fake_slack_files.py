"""The fake Slack's file uploads: files_upload_v2's three steps pass, files.upload is
refused as Slack refuses it now, and an upload not made in full is never shared."""

from __future__ import annotations

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.support.fake_slack import FakeSlack


@pytest.fixture
def fake():
    server = FakeSlack().start()
    yield server
    server.stop()


@pytest.fixture
def client(fake):
    return WebClient(token="xoxb-test", base_url=fake.api_url)


def test_files_upload_v2_shares_the_file_in_the_thread(fake, client):
    answer = client.files_upload_v2(
        channel="C1",
        thread_ts="1.2",
        file=b"\x89PNG fake",
        filename="a.png",
        title="A chart",
        alt_txt="numbers",
        initial_comment="beside it",
    )
    assert answer["file"]["title"] == "A chart"
    (shared,) = fake.shared_files()
    assert (shared.data, shared.channel, shared.thread_ts) == (b"\x89PNG fake", "C1", "1.2")
    assert (shared.comment, shared.alt_txt, shared.filename) == ("beside it", "numbers", "a.png")


@pytest.mark.filterwarnings("ignore:client.files_upload")
def test_the_retired_files_upload_is_refused(client):
    with pytest.raises(SlackApiError) as caught:
        client.files_upload(channels="C1", content="x", filename="a.txt")
    assert caught.value.response["error"] == "method_deprecated"


def test_an_upload_url_needs_a_filename_and_a_length(client):
    for params in ({"filename": "a.png"}, {"length": 3}, {"filename": "a", "length": "x"}):
        with pytest.raises(SlackApiError) as caught:
            client.api_call("files.getUploadURLExternal", params=params)
        assert caught.value.response["error"] == "invalid_arguments"


def test_completing_a_file_never_uploaded_or_cut_short_is_refused(fake, client):
    never = client.files_getUploadURLExternal(filename="a.png", length=10)
    with pytest.raises(SlackApiError) as caught:
        client.files_completeUploadExternal(files=[{"id": never["file_id"]}], channel_id="C1")
    assert caught.value.response["error"] == "file_upload_not_found"
    short = client.files_getUploadURLExternal(filename="b.png", length=10)
    assert httpx.post(short["upload_url"], content=b"12345").status_code == 200
    with pytest.raises(SlackApiError):
        client.files_completeUploadExternal(files=[{"id": short["file_id"]}], channel_id="C1")
    with pytest.raises(SlackApiError) as caught:
        client.files_completeUploadExternal(files=[{"id": "F404"}], channel_id="C1")
    assert caught.value.response["error"] == "file_not_found"
    assert fake.shared_files() == []


def test_a_file_is_shared_only_where_the_bot_is_a_member(fake, client):
    fake.leave("C9")
    with pytest.raises(SlackApiError) as caught:
        client.files_upload_v2(channel="C9", file=b"x", filename="a.png")
    assert caught.value.response["error"] == "not_in_channel"


def test_uploads_need_the_files_write_scope(fake, client):
    fake.scopes.discard("files:write")
    with pytest.raises(SlackApiError) as caught:
        client.files_upload_v2(channel="C1", file=b"x", filename="a.png")
    assert caught.value.response["error"] == "missing_scope"
    assert fake.shared_files() == []
