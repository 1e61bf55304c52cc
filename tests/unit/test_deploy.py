"""The Slack app manifest asks for what the app uses, and nothing it does not."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
MANIFEST = json.loads((ROOT / "deploy" / "slack-app-manifest.json").read_text())
LISTENERS = (ROOT / "bot" / "slack" / "listeners.py").read_text()


def test_manifest_subscribes_to_the_events_the_app_listens_to():
    events = set(MANIFEST["settings"]["event_subscriptions"]["bot_events"])
    listened = set(re.findall(r'app\.event\("([a-z_]+)"\)', LISTENERS))
    assert {e.split(".")[0] for e in events} == listened


def test_the_shipped_manifests_are_what_acrbot_slack_manifest_prints():
    from bot.slack.manifest import manifest

    http = json.loads((ROOT / "deploy" / "slack-app-manifest.http.json").read_text())
    assert manifest(mode="socket") == MANIFEST
    assert http == manifest(mode="http")
    assert http["settings"]["socket_mode_enabled"] is False
    assert {
        http["settings"]["event_subscriptions"]["request_url"],
        http["settings"]["interactivity"]["request_url"],
        http["features"]["slash_commands"][0]["url"],
    } == {"https://YOUR-HOST/slack/events"}
    assert "request_url" not in MANIFEST["settings"]["event_subscriptions"]
    assert MANIFEST["features"]["slash_commands"][0]["should_escape"] is True


def test_manifest_has_the_slash_command_socket_mode_and_interactivity():
    assert [c["command"] for c in MANIFEST["features"]["slash_commands"]] == ["/acr"]
    assert MANIFEST["settings"]["socket_mode_enabled"] is True
    assert MANIFEST["settings"]["interactivity"]["is_enabled"] is True
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True


def test_manifest_scopes_cover_every_web_api_method_used():
    needs = {
        "chat_postMessage": "chat:write",
        "chat_postEphemeral": "chat:write",
        "chat_update": "chat:write",
        "usergroups_users_list": "usergroups:read",
        "conversations_info": "channels:read",  # acrbot doctor: is the bot in the channel
        "files_upload_v2": "files:write",  # `report`'s chart
    }
    code = "".join(p.read_text() for p in (ROOT / "bot" / "slack").glob("*.py"))
    used = set(
        re.findall(r"\.(chat_\w+|usergroups_\w+|views_\w+|conversations_\w+|files_\w+)\b", code)
    )
    scopes = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    assert used <= set(needs) | {"views_open", "views_publish"}
    assert {needs[m] for m in used if m in needs} <= scopes
    assert {"commands", "app_mentions:read"} <= scopes
    assert not scopes & {"channels:history", "groups:history"}  # no reading of channels


def test_dockerfile_runs_acrbot_serve():
    assert 'CMD ["acrbot", "serve"' in (ROOT / "deploy" / "Dockerfile").read_text()


def test_doctor_checks_the_scopes_the_manifest_asks_for():
    from bot.slack.checks import NEEDED_SCOPES

    assert set(MANIFEST["oauth_config"]["scopes"]["bot"]) == NEEDED_SCOPES


def slack_manifest(capsys, *args):
    from bot.cli import main

    code = main(["slack-manifest", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def request_urls(manifest):
    return {
        manifest["settings"]["event_subscriptions"]["request_url"],
        manifest["settings"]["interactivity"]["request_url"],
        manifest["features"]["slash_commands"][0]["url"],
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://acrbot.example.com", "https://acrbot.example.com/slack/events"),
        ("https://acrbot.example.com/", "https://acrbot.example.com/slack/events"),
        # the full events URL, pasted from the Slack app's settings: taken as it is
        ("https://acrbot.example.com/slack/events", "https://acrbot.example.com/slack/events"),
        ("https://acrbot.example.com/slack/events/", "https://acrbot.example.com/slack/events"),
        # behind a reverse proxy under a prefix
        ("https://example.com/acrbot", "https://example.com/acrbot/slack/events"),
        (
            "https://example.com:8443/acrbot/slack/events",
            "https://example.com:8443/acrbot/slack/events",
        ),
    ],
)
def test_slack_manifest_url_base_or_events_url(capsys, url, expected):
    code, manifest, _ = slack_manifest(capsys, "--mode", "http", "--url", url)
    assert code == 0
    assert request_urls(manifest) == {expected}


BASE_OR_EVENTS = (
    "expected the bot's public base URL, e.g. https://acrbot.example.com, "
    "or its events URL, https://acrbot.example.com/slack/events"
)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://acrbot.example.com",
            f"--url: Slack sends events only to https:// URLs; {BASE_OR_EVENTS}",
        ),
        (
            "acrbot.example.com",
            f"--url: Slack sends events only to https:// URLs; {BASE_OR_EVENTS}",
        ),
        ("https://", f"--url: {BASE_OR_EVENTS}; got 'https://'"),
        (
            "https://user:pw@acrbot.example.com",
            f"--url: {BASE_OR_EVENTS}; got 'https://user:pw@acrbot.example.com'",
        ),
        (
            "https://acrbot.example.com:x",
            f"--url: {BASE_OR_EVENTS}; got 'https://acrbot.example.com:x'",
        ),
        (
            "https://acrbot.example.com/slack/events?x=1",
            f"--url: no ?query or #fragment: {BASE_OR_EVENTS}; "
            "got 'https://acrbot.example.com/slack/events?x=1'",
        ),
    ],
)
def test_slack_manifest_url_refused_with_the_form_expected(capsys, url, message):
    code, _, err = slack_manifest(capsys, "--mode", "http", "--url", url)
    assert (code, err) == (2, f"acrbot: {message}\n")


def test_slack_manifest_url_without_http_mode_is_refused(capsys):
    code, _, err = slack_manifest(capsys, "--url", "https://acrbot.example.com")
    assert (code, err) == (
        2,
        "acrbot: --url: only with --mode http (in Socket Mode Slack posts to no URL)\n",
    )


def test_slack_manifest_http_without_url_has_the_placeholder(capsys):
    code, manifest, _ = slack_manifest(capsys, "--mode", "http")
    assert code == 0
    assert request_urls(manifest) == {"https://YOUR-HOST/slack/events"}
