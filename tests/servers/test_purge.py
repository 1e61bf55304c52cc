"""`purge`: acr purge's options, one request pinning every item, resumable execution.

Against a real docker-registry (distribution deletes only manifests: a tag goes with its
image), the embedded oci-layout registry (locks, untagged manifests), and the fake ACR (429s).
"""

import itertools
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from bot.app import build_dispatcher
from bot.cli import main as acrbot
from bot.core import formatting as fmt
from bot.core.errors import UsageError
from bot.core.policy import Grant, Role
from bot.core.purge_spec import parse_ago, parse_filter
from tests.support.distribution import MANIFEST_ACCEPT
from tests.support.fault_proxy import FaultProxy
from tests.support.fixtures import dry, make_config, seed

_repos = itertools.count(1)


# -- the vocabulary ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("2d3h6m", timedelta(days=2, hours=3, minutes=6)),
        ("1d1.5h", timedelta(days=1, hours=1.5)),
        ("90m", timedelta(minutes=90)),
        ("0d", timedelta(0)),
        ("12h30m15s", timedelta(hours=12, minutes=30, seconds=15)),
    ],
)
def test_ago_takes_acr_purge_durations(text, expected):
    assert parse_ago(text) == expected


@pytest.mark.parametrize("text", ["7days", "abc", "15", "1D", "d", "-1d", "1.5d"])
def test_a_duration_that_does_not_parse_is_an_error_never_150_years(text):
    with pytest.raises(UsageError, match=r"is not a duration|is empty"):
        parse_ago(text)


def test_filters_split_on_the_first_colon_and_check_the_regex():
    assert str(parse_filter("team/*:^pr-\\d+$")) == "team/*:^pr-\\d+$"
    assert parse_filter("app:a:b").regex == "a:b"
    with pytest.raises(UsageError, match="no tag expression"):
        parse_filter("app:")
    with pytest.raises(UsageError, match="is not a filter"):
        parse_filter("app")
    with pytest.raises(UsageError, match="is not a regular expression"):
        parse_filter("app:(")


# -- on docker-registry ------------------------------------------------------------------


def test_ago_and_keep_select_like_acr_purge(oci_bot, clock):
    repo, _ = seed(oci_bot, clock)
    reply = dry(oci_bot, "carol", f"purge --filter '{repo}:^b' --ago 5d --keep 2")
    going = [i["tags"][0] for i in reply.data["items"]]
    # older than 5 days: b5…b11; the 2 most recent of those are kept
    assert going == ["b7", "b8", "b9", "b10", "b11"]
    assert [s["item"] for s in reply.data["skipped"]] == [f"{repo}:b5", f"{repo}:b6"]
    assert reply.data["skipped"][0]["reason"] == "kept (--keep 2)"
    assert reply.text == (
        "Dry run on dist: 5 tags older than 5d would be deleted from 1 repository, freeing "
        f"{fmt.size(reply.data['freed_bytes'])}; nothing was changed."
    )
    assert reply.data["freed_bytes"] > 0  # their own configs, layers and manifests


def test_the_regex_is_searched_unanchored(oci_bot, clock):
    repo, _ = seed(oci_bot, clock, 12)
    assert len(dry(oci_bot, "carol", f"purge --filter '{repo}:1'").data["items"]) == 3  # 1,10,11
    assert len(dry(oci_bot, "carol", f"purge --filter '{repo}:^b1$'").data["items"]) == 1


def test_a_tag_sharing_its_image_with_an_unmatched_tag_is_skipped(oci_bot, clock):
    repo, digests = seed(oci_bot, clock, 4)
    oci_bot.registry.add_tags(repo, ["release"], digests["b2"])
    reply = dry(oci_bot, "carol", f"purge --filter '{repo}:^b'")
    assert sorted(i["tags"][0] for i in reply.data["items"]) == ["b0", "b1", "b3"]
    assert reply.data["skipped"] == [
        {
            "item": f"{repo}:b2",
            "reason": "its image also carries release, which the purge does not remove",
        }
    ]


def test_a_dry_run_deletes_nothing(oci_bot, clock):
    repo, _ = seed(oci_bot, clock, 5)
    oci_bot.proxy.reset()
    dry(oci_bot, "carol", f"purge --filter '{repo}:.*'")
    assert oci_bot.proxy.count("DELETE") == 0


def test_oci_says_it_cannot_list_untagged_manifests(oci_bot, clock):
    repo, _ = seed(oci_bot, clock, 2)
    reply = oci_bot.handle(f"purge --filter '{repo}:.*' --untagged --dry-run", user="carol")
    assert reply.text == (
        "dist (oci) cannot list manifests without tags (the distribution API lists only "
        "tags), so `--untagged` is not possible here"
    )


def test_one_approval_deletes_exactly_the_pinned_items_once(oci_bot, clock):
    repo, digests = seed(oci_bot, clock, 10)
    made = oci_bot.handle(
        f"purge --filter '{repo}:^b' --ago 3d --reason 'CI leftovers'", user="alice"
    )
    assert made.ok, made.text
    assert made.text == (
        "Purge request #1 created: 7 tags in 1 repository pinned; waiting for 1 approval "
        "from an owner (not you)."
    )
    assert oci_bot.handle("approve 1", user="alice").text == (
        "you cannot approve request #1: you made it (separation of duties)"
    )
    oci_bot.proxy.reset()
    done = oci_bot.handle("approve 1", user="bob")
    assert done.text == "Purge request #1 approved and done: 7 deleted, 0 skipped, 0 failed."
    deleted = [p for (m, p), n in oci_bot.proxy.counts.items() if m == "DELETE" for _ in range(n)]
    assert sorted(deleted) == sorted(
        f"/v2/{repo}/manifests/{digests[f'b{i}']}" for i in range(3, 10)
    )
    left = {t.name for t in build_dispatcher(oci_bot.config).ctx.registries.default.all_tags(repo)}
    assert left == {"b0", "b1", "b2"}
    rows = oci_bot.ctx.audit.entries(last=100, request_id=1)
    assert sum(1 for e in rows if e.action == "purge.item" and e.outcome == "deleted") == 7
    assert oci_bot.ctx.audit.verify().ok
    listing = oci_bot.handle("request 1", user="carol")
    assert listing.notes == ("Items: 7 deleted.",)


def test_execution_skips_a_tag_pushed_again_and_reports_why(oci_bot, clock):
    repo, _ = seed(oci_bot, clock, 3)
    assert oci_bot.handle(f"purge --filter '{repo}:.*' --reason x", user="alice").ok
    oci_bot.registry.push(repo, "b1", label="a new image")  # b1 now names another image
    done = oci_bot.handle("approve 1", user="bob")
    assert done.text == (
        "Purge request #1 approved and done: 2 deleted, 1 skipped (1 b1 no longer points at "
        "the pinned image (pushed again or deleted since the request)), 0 failed."
    )
    assert (
        oci_bot.registry.client()
        .head(f"/v2/{repo}/manifests/b1", headers={"Accept": MANIFEST_ACCEPT})
        .is_success
    )  # the new b1 is untouched


def test_quorum_purge_and_roles_reread_at_approval(distribution, tmp_path, clock):
    proxy = FaultProxy(distribution.url).start()
    try:
        config = make_config(
            tmp_path,
            registry=[{"name": "dist", "type": "oci", "url": proxy.url}],
            approvals={"delete_manifest": 2},
        )
        bot = build_dispatcher(config, clock=clock)
        for user, role in (("alice", "contributor"), ("bob", "owner"), ("erin", "owner")):
            bot.ctx.roles.grant(Grant(user, Role(role)), by="t", at=clock())
        bot.registry = distribution
        repo, _ = seed(bot, clock, 2)
        assert bot.handle(f"purge --filter '{repo}:.*' --reason x", user="alice").ok
        assert bot.ctx.requests.get(1).required == 2  # purge defaults to delete_manifest's
        first = bot.handle("approve 1", user="bob")
        assert first.text == "Approval recorded for request #1; 1 more needed."
        bot.ctx.roles.grant(Grant("erin", Role.READER), by="t", at=clock())
        bot.ctx.roles.revoke(Grant("erin", Role.OWNER))
        assert bot.handle("approve 1", user="erin").text.startswith("`approve` needs owner")
    finally:
        proxy.stop()


def test_a_process_killed_mid_purge_resumes_and_deletes_each_item_once(oci_bot, clock, tmp_path):
    """SIGKILL the process running the approved purge; the next start finishes the job, and
    no manifest receives a second DELETE."""
    repo, _ = seed(oci_bot, clock, 30)
    real_time = build_dispatcher(oci_bot.config)  # the processes below run on the real clock
    assert real_time.handle(f"purge --filter '{repo}:.*' --reason x", user="alice").ok
    real_time.ctx.store.close()
    oci_bot.ctx.store.close()
    oci_bot.proxy.reset()
    oci_bot.proxy.delay_response("DELETE", 0.4)  # each DELETE lands at once, answers late
    config_file = tmp_path / "acrbot.toml"
    config_file.write_text(
        f'database = "acrbot.db"\n[[registry]]\nname = "dist"\ntype = "oci"\n'
        f'url = "{oci_bot.proxy.url}"\npurge_concurrency = 2\ntimeout = 1\n'
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    run = [sys.executable, "-m", "bot", "run", "--config", str(config_file)]
    worker = subprocess.Popen(
        [*run, "--user", "bob", "approve 1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while oci_bot.proxy.count("DELETE") < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(worker.pid, signal.SIGKILL)
    out, err = worker.communicate()
    assert 6 <= oci_bot.proxy.count("DELETE") < 30, (out + err).decode()[-2000:]
    oci_bot.proxy.clear()  # no more delays
    # The next start resumes it; a DELETE that may have been in flight when the process died
    # is only sent again after the registry's grace (2 × timeout + 5 s = 7 s here).
    deadline = time.monotonic() + 30
    while True:
        resumed = subprocess.run(
            [*run, "--user", "carol", "request 1"], env=env, capture_output=True, text=True
        )
        if "Items: 30 deleted." in resumed.stdout or time.monotonic() > deadline:
            break
        time.sleep(1)
    rest = subprocess.run(
        [*run, "--user", "carol", "request 1 --after 25"], env=env, capture_output=True, text=True
    )
    assert "Items: 30 deleted." in resumed.stdout, rest.stdout + rest.stderr
    statuses = [s for m, p, s in oci_bot.proxy.upstream_statuses if m == "DELETE"]
    paths = [p for m, p, s in oci_bot.proxy.upstream_statuses if m == "DELETE"]
    assert len(paths) == len(set(paths)) == 30  # every manifest deleted exactly once
    assert set(statuses) == {202}
    verify = subprocess.run(
        [sys.executable, "-m", "bot", "audit", "verify", "--config", str(config_file)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout


# -- oci-layout: locks and untagged manifests --------------------------------------------


def test_locked_tags_are_skipped_and_reported(bot):
    assert bot.say("bob", "lock baseimages/alpine:3.19 --delete").text == (
        "Locked demo/baseimages/alpine:3.19 against deletion."
    )
    reply = bot.say("carol", "purge --filter 'baseimages/alpine:^3' --dry-run")
    assert [i["tag"] for i in reply.data["items"]] == ["3.20"]
    assert reply.data["skipped"] == [{"item": "baseimages/alpine:3.19", "reason": "locked"}]
    bot.say("alice", "purge --filter 'baseimages/alpine:^3' --reason x")
    bot.say("bob", "unlock baseimages/alpine:3.19")
    bot.say("bob", "lock baseimages/alpine:3.20")  # locked after the request was made
    assert bot.say("erin", "approve 1").text == (
        "Purge request #1 approved and done: 0 deleted, 1 skipped (1 locked), 0 failed."
    )


def test_untagged_manifests_go_after_their_tags(bot):
    reply = bot.say("carol", "purge --filter 'baseimages/fedora:.*' --untagged --dry-run")
    kinds = [(i["kind"], i["tag"]) for i in reply.data["items"]]
    assert kinds == [("tag", "latest"), ("tag", "24"), ("manifest", None), ("manifest", None)]
    bot.say("alice", "purge --filter 'baseimages/fedora:.*' --untagged --reason x")
    assert bot.say("bob", "approve 1").ok
    assert bot.registry.manifests("baseimages/fedora") == []


def test_lock_on_oci_says_there_are_no_locks(oci_bot, clock):
    repo, _ = seed(oci_bot, clock, 1)
    assert oci_bot.handle(f"lock {repo}:b0", user="bob").text.startswith("dist (oci) has no locks")


# -- the manifest bug: a re-pushed tag is not deleted ------------------------------------


def test_a_manifest_request_fails_when_its_tag_was_pushed_again(oci_bot, clock, tmp_path, capsys):
    repo = f"repush{next(_repos)}/app"
    first = oci_bot.registry.push(repo, "24", label="old")
    real_time = build_dispatcher(oci_bot.config)  # `acrbot run` below runs on the real clock
    assert real_time.handle(f"delete {repo}:24 --manifest --reason eol", user="alice").ok
    real_time.ctx.store.close()
    oci_bot.registry.push(repo, "24", label="new")  # pushed again: 24 names a new image
    oci_bot.ctx.store.close()
    config_file = tmp_path / "acrbot.toml"
    config_file.write_text(
        f'database = "acrbot.db"\n[[registry]]\nname = "dist"\ntype = "oci"\n'
        f'url = "{oci_bot.proxy.url}"\n'
    )
    oci_bot.proxy.reset()
    code = acrbot(["run", "--config", str(config_file), "--user", "bob", "approve 1"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{repo}:24 moved: it now points at" in out and "nothing was deleted" in out
    assert oci_bot.proxy.count("DELETE") == 0
    fresh = build_dispatcher(oci_bot.config)
    assert fresh.ctx.requests.get(1).state.value == "failed"
    assert fresh.ctx.registries.default.image(repo, first).digest == first  # still there


# -- the fake ACR: a 429 burst ------------------------------------------------------------


def test_an_acr_purge_rides_out_a_429_burst_with_no_failure(make_acr, fake_acr, tmp_path, clock):
    for i in range(40):  # real manifests: a purge keeps each one's bytes for undo
        fake_acr.push_image("ci/app", f"pr-{i}", offset=i)
    fake_acr.push("ci/app", "main", f"sha256:{99:064x}", offset=100)
    fake_acr.throttle(method="DELETE", times=6, retry_after=1)
    config = make_config(
        tmp_path,
        registry=[
            {
                "name": "prod",
                "type": "acr",
                "login_server": fake_acr.login_server,
                "subscription_id": fake_acr.subscription,
                "resource_group": fake_acr.resource_group,
                "purge_concurrency": 8,
            }
        ],
    )
    bot = build_dispatcher(config, clock=clock, registries=[make_acr()])
    bot.ctx.roles.grant(Grant("alice", Role.CONTRIBUTOR), by="t", at=clock())
    bot.ctx.roles.grant(Grant("bob", Role.OWNER), by="t", at=clock())
    assert bot.handle("purge --filter 'ci/app:^pr-' --reason 'merged PRs'", user="alice").ok
    began = time.monotonic()
    done = bot.handle("approve 1", user="bob")
    assert done.text == "Purge request #1 approved and done: 40 deleted, 0 skipped, 0 failed."
    assert time.monotonic() - began >= 1  # it waited for Retry-After, did not hammer
    assert sorted(fake_acr.state.repositories["ci/app"]) == ["main"]
    assert fake_acr.count("DELETE", status=429) == 6


# -- scheduled retention ------------------------------------------------------------------


def test_retention_opens_one_request_per_slot_and_never_runs_it(make_bot, clock):
    from bot.schedules.retention import run_due

    bot = make_bot(
        retention=[
            {
                "name": "nightly",
                "schedule": "0 */6 * * *",
                "filter": "baseimages/alpine:^3",
                "ago": "0d",
                "channel": "C0RETAIN",
            }
        ]
    )
    assert run_due(bot.ctx) == ["nightly: request #1"]  # the 06:00 slot (it is 09:00)
    assert run_due(bot.ctx) == []  # taken
    request = bot.ctx.requests.get(1)
    assert (request.requester, request.channel, request.state.value) == (
        "retention:nightly",
        "C0RETAIN",
        "pending",
    )
    assert request.reason == "scheduled retention `nightly`"
    assert [i.tag for i in bot.ctx.purges.items(1)] == ["3.20", "3.19"]
    clock.advance(hours=6)
    assert run_due(bot.ctx) == [
        "nightly: no request: request #1 from the previous slot is still pending"
    ]
    assert bot.say("bob", "approve 1").ok  # any owner approves: the bot asked, not a person
    clock.advance(hours=6)
    assert run_due(bot.ctx) == [
        "nightly: no request: nothing to purge on demo with --filter baseimages/alpine:^3 "
        "--ago 0d; no request was made"
    ]
    assert bot.ctx.outbox.state_of("card:1") == "pending"  # its card goes to C0RETAIN


def test_a_bad_retention_rule_names_the_key(tmp_path):
    from bot.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"retention\[0\].schedule: expected a cron schedule"):
        make_config(
            tmp_path,
            retention=[{"name": "x", "schedule": "daily", "filter": "a:.*", "channel": "C1"}],
        )
    with pytest.raises(ConfigError, match=r"retention\[0\]\.ago `7days` is not a duration"):
        make_config(
            tmp_path,
            retention=[
                {
                    "name": "x",
                    "schedule": "0 3 * * *",
                    "filter": "a:.*",
                    "ago": "7days",
                    "channel": "C1",
                }
            ],
        )
