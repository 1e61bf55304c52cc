"""Never break what is running: `delete`, `--manifest` and `purge` against a real
docker-registry, with the in-use set read from the strict fake Kubernetes API server through
the real `kubernetes` client and a kubeconfig file.

The cluster runs: a digest in a pod (`run`), one only in an old ReplicaSet at 0 replicas
(`old`), one only in a CronJob (`cron`), one referenced by tag only in a Deployment (`bytag`);
`free` is in no workload and `latest` matches `[protect] tags`.
"""

import itertools
from urllib.parse import urlsplit

import pytest

from bot.app import build_dispatcher
from bot.core.policy import Grant, Role
from tests.support.fake_kube import FakeKube, cronjob, deployment, job, pod, replicaset
from tests.support.fixtures import make_config

_names = itertools.count(1)


@pytest.fixture
def kube():
    server = FakeKube().start()
    yield server
    server.stop()


def make_bot(distribution, kube, tmp_path, *, on_source_error="refuse"):
    config = make_config(
        tmp_path,
        registry=[{"name": "dist", "type": "oci", "url": distribution.url}],
        deployed=[
            {
                "name": "aks-prod",
                "type": "kubernetes",
                "kubeconfig": str(kube.kubeconfig(tmp_path / "kubeconfig")),
                "context": "test",
                "cache_seconds": 0,
                "timeout": 3,
            }
        ],
        protect={"tags": ["^latest$"], "on_source_error": on_source_error},
    )
    bot = build_dispatcher(config)
    for user, role in (("alice", "contributor"), ("bob", "owner"), ("carol", "reader")):
        bot.ctx.roles.grant(Grant(user, Role(role)), by="t", at=bot.ctx.clock())
    return bot


def cluster(distribution, kube):
    """Push the images and deploy them; returns (repo, {tag: digest})."""
    host = urlsplit(distribution.url).netloc
    repo = f"deployed{next(_names)}/api"
    d = {
        t: distribution.push(repo, t, label=t)
        for t in ("run", "old", "cron", "bytag", "free", "latest")
    }
    image = f"{host}/{repo}"
    kube.add(
        "pods",
        pod(
            "api-7f9c-x1",
            "payments",
            [f"{image}:run"],
            image_ids=[f"docker-pullable://{image}@{d['run']}"],
            owner=("ReplicaSet", "api-7f9c"),
        ),
    )
    kube.add(
        "replicasets",
        replicaset("api-7f9c", "payments", [f"{image}:run"], replicas=1, deployment="api"),
        replicaset("api-5d1a", "payments", [f"{image}@{d['old']}"], replicas=0, deployment="api"),
    )
    kube.add("deployments", deployment("api", "payments", [f"{image}:run"]))
    kube.add("cronjobs", cronjob("nightly", "batch", [f"{image}@{d['cron']}"]))
    kube.add("statefulsets", deployment("db", "payments", [f"{image}:bytag"]))
    return repo, d


def test_delete_manifest_refuses_every_kind_of_use_naming_where(distribution, kube, tmp_path):
    repo, d = cluster(distribution, kube)
    bot = make_bot(distribution, kube, tmp_path)
    where = {
        "run": "in use: aks-prod/payments Deployment api (1 pod), ReplicaSet api-7f9c (1 replicas)",
        "old": "in use: aks-prod/payments ReplicaSet api-5d1a (rollback)",
        "cron": "in use: aks-prod/batch CronJob nightly (schedule 0 2 * * *)",
        "bytag": "in use: aks-prod/payments StatefulSet db",
    }
    for tag, text in where.items():
        for ref in (f"{repo}:{tag}", f"{repo}@{d[tag]}"):
            reply = bot.handle(f"delete {ref} --manifest --reason old", user="alice")
            assert not reply.ok, ref
            assert text in reply.text, reply.text
            assert reply.text.endswith("; nothing was requested")
    protected = bot.handle(f"delete {repo}:latest --manifest --reason old", user="alice")
    assert protected.text == (
        f"dist/{repo}: protected: latest matches ^latest$; nothing was requested"
    )
    assert bot.handle(f"delete {repo}:free --manifest --reason old", user="alice").ok
    assert bot.handle("approve 1", user="bob").ok


def test_purge_skips_what_runs_and_protected_tags_dry_run_request_and_summary(
    distribution, kube, tmp_path
):
    repo, d = cluster(distribution, kube)
    bot = make_bot(distribution, kube, tmp_path)
    dry = bot.handle(f"purge --filter '{repo}:.*' --dry-run", user="carol")
    assert [i["tags"] for i in dry.data["items"]] == [["free"]]
    reasons = {s["item"].split(" (")[1][:-1]: s["reason"] for s in dry.data["skipped"]}
    assert reasons["old"] == "in use: aks-prod/payments ReplicaSet api-5d1a (rollback)"
    assert reasons["cron"].startswith("in use: aks-prod/batch CronJob nightly")
    assert reasons["bytag"] == "in use: aks-prod/payments StatefulSet db"
    assert reasons["run"].startswith("in use: aks-prod/payments Deployment api")
    assert reasons["latest"] == "protected: latest matches ^latest$"
    made = bot.handle(f"purge --filter '{repo}:.*' --reason tidy", user="alice")
    assert made.ok, made.text
    shown = bot.handle("request 1", user="carol")
    assert "in use: aks-prod/payments ReplicaSet api-5d1a (rollback)" in str(shown.table)
    # deployed between the request and the approval: checked again at execution
    kube.add("jobs", job("late", "batch", [f"{urlsplit(distribution.url).netloc}/{repo}:free"]))
    done = bot.handle("approve 1", user="bob")
    assert done.ok, done.text
    assert "0 deleted" in done.text and "in use: aks-prod/batch Job late" in done.text
    assert sorted(t.name for t in bot.ctx.registries.default.all_tags(repo)) == sorted(d)


def test_an_image_deployed_between_request_and_approval_is_refused(distribution, kube, tmp_path):
    repo, d = cluster(distribution, kube)
    bot = make_bot(distribution, kube, tmp_path)
    assert bot.handle(f"delete {repo}:free --manifest --reason old", user="alice").ok
    host = urlsplit(distribution.url).netloc
    kube.add("daemonsets", deployment("agent", "kube-system", [f"{host}/{repo}@{d['free']}"]))
    done = bot.handle("approve 1", user="bob")
    assert not done.ok
    assert "in use: aks-prod/kube-system DaemonSet agent" in done.text
    assert "nothing was deleted" in done.text
    assert bot.ctx.registries.default.image(repo, d["free"]).digest == d["free"]


def test_api_server_down_refuses_naming_it_and_warn_mode_proceeds_saying_so(
    distribution, kube, tmp_path
):
    repo, _ = cluster(distribution, kube)
    bot = make_bot(distribution, kube, tmp_path)
    kube.stop()
    refused = bot.handle(f"delete {repo}:free --manifest --reason old", user="alice")
    assert not refused.ok
    assert refused.text.startswith("deployed source aks-prod could not be read (")
    assert "check that the API server in the kubeconfig is reachable" in refused.text
    dry = bot.handle(f"purge --filter '{repo}:free' --dry-run", user="carol")
    assert any("deployed source aks-prod could not be read" in n for n in dry.notes)
    assert not bot.handle(f"purge --filter '{repo}:free' --reason x", user="alice").ok
    (tmp_path / "warn").mkdir()
    warn = make_bot(distribution, kube, tmp_path / "warn", on_source_error="warn")
    made = warn.handle(f"delete {repo}:free --manifest --reason old", user="alice")
    assert made.ok and "warning: deployed source aks-prod could not be read" in made.text
    done = warn.handle("approve 1", user="bob")
    assert done.ok and "proceeding without it" in done.text
    reads = warn.ctx.deployed.reads
    purge = warn.handle(f"purge --filter '{repo}:run' --reason x", user="alice")
    assert purge.ok and "warning: deployed source aks-prod could not be read" in purge.text
    assert warn.ctx.deployed.reads == reads + 1  # the reply's warning is of that one read
    unread = [e for e in warn.ctx.audit.entries() if e.action == "deployed.unread"]
    assert len(unread) == 3 and unread[0].outcome == "warn"
    said = [
        refused.text,
        made.text,
        done.text,
        *(str(e.as_dict()) for e in warn.ctx.audit.entries()),
    ]
    assert not any(kube.token in text for text in said)  # the kubeconfig's token stays secret


def test_rbac_refusal_names_the_kind_and_the_fix(distribution, kube, tmp_path):
    repo, _ = cluster(distribution, kube)
    kube.forbidden.add("pods")
    bot = make_bot(distribution, kube, tmp_path)
    reply = bot.handle(f"delete {repo}:free --manifest --reason old", user="alice")
    assert reply.text == (
        "deployed source aks-prod could not be read (403 listing pods): RBAC: list pods at "
        "cluster scope (deploy/kubernetes/rbac.yaml); nothing was requested"
    )


def test_where_names_every_use_of_a_tag_a_digest_or_a_repository_and_its_age(
    distribution, kube, tmp_path
):
    repo, d = cluster(distribution, kube)
    bot = make_bot(distribution, kube, tmp_path)
    by_tag = bot.handle(f"where {repo}:bytag", user="carol")
    assert by_tag.ok
    assert by_tag.text.startswith(f"dist/{repo}:bytag: 1 digest in use (read ")
    assert by_tag.text.endswith("from aks-prod); in use: aks-prod/payments StatefulSet db")
    assert bot.handle(f"where {repo}@{d['free']}", user="carol").text.startswith(
        f"dist/{repo}@{d['free']} is not in use in any deployed source"
    )
    whole = bot.handle(f"where {repo}", user="carol")
    assert set(whole.data["in_use"]) == {d["run"], d["old"], d["cron"], d["bytag"]}
    kinds = {u["kind"] for uses in whole.data["in_use"].values() for u in uses}
    assert kinds == {"Deployment", "ReplicaSet", "CronJob", "StatefulSet"}
    kube.forbidden.add("cronjobs")
    bot.ctx.deployed._cache = None  # past cache_seconds
    partial = bot.handle(f"where {repo}", user="carol")
    assert not partial.ok and "this answer is incomplete" in partial.notes[0]


def test_lock_deployed_locks_every_digest_in_use_on_acr(fake_acr, make_acr, kube, tmp_path):
    digests = [f"sha256:{i:064x}" for i in range(1, 5)]
    for i, digest in enumerate(digests):
        fake_acr.push("payments/api", f"v{i}", digest)
    image = f"{fake_acr.login_server}/payments/api"
    kube.add("pods", pod("api-1", "payments", [f"{image}:v0"], owner=("ReplicaSet", "api-1")))
    kube.add("replicasets", replicaset("api-0", "payments", [f"{image}@{digests[1]}"]))
    kube.add("cronjobs", cronjob("nightly", "batch", [f"{image}:v2"]))
    config = make_config(
        tmp_path,
        registry=[
            {
                "name": "prod",
                "type": "acr",
                "login_server": fake_acr.login_server,
                "subscription_id": fake_acr.subscription,
                "resource_group": fake_acr.resource_group,
            }
        ],
        deployed=[
            {
                "name": "aks-prod",
                "type": "kubernetes",
                "kubeconfig": str(kube.kubeconfig(tmp_path / "kubeconfig")),
                "lock_schedule": "*/30 * * * *",
            }
        ],
    )
    bot = build_dispatcher(config, registries=[make_acr()])
    bot.ctx.roles.grant(Grant("bob", Role.OWNER), by="t", at=bot.ctx.clock())
    bot.ctx.roles.grant(
        Grant("dave", Role.OWNER, repositories="payments/*"), by="t", at=bot.ctx.clock()
    )
    assert "needs owner on all of prod" in bot.handle("lock --deployed", user="dave").text
    reply = bot.handle("lock --deployed", user="bob")
    assert reply.ok, reply.text
    assert reply.text.startswith("Locked 3 digests in use on prod against deletion (read ")
    manifests = fake_acr.state.manifests["payments/api"]
    assert [not manifests[d].delete_enabled for d in digests] == [True, True, True, False]
    audited = [e.target for e in bot.ctx.audit.entries() if e.action == "lock.deployed"]
    assert audited == [f"prod/payments/api@{d}" for d in digests[:3]]
    # the schedule: unlocked outside the bot, locked again at the next slot, once a slot
    from bot.schedules import deployed_locks

    deployed_locks._TAKEN.clear()
    for d in digests[:3]:
        manifests[d].delete_enabled = True
    assert deployed_locks.run_due_locks(bot.ctx) == ["aks-prod prod: 3 locked"]
    assert [not manifests[d].delete_enabled for d in digests] == [True, True, True, False]
    assert deployed_locks.run_due_locks(bot.ctx) == []
    runs = [e for e in bot.ctx.audit.entries() if e.action == "lock.deployed.schedule"]
    assert [(e.actor, e.outcome) for e in runs] == [("deployed:aks-prod", "ok")]


def test_doctor_checks_each_source_and_each_kind(kube, tmp_path):
    from bot import doctor

    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    (tmp_path / "acrbot.toml").write_text(
        f"""
[[registry]]
name = "demo"
type = "oci-layout"
path = "registry"

[[deployed]]
name = "aks-prod"
type = "kubernetes"
kubeconfig = "{kubeconfig}"

[[deployed]]
name = "gone"
type = "kubernetes"
kubeconfig = "{tmp_path / "missing"}"
"""
    )
    kube.forbidden.add("cronjobs")
    rows = {
        c.name: c for c in doctor.run(tmp_path / "acrbot.toml") if c.name.startswith("deployed")
    }
    assert rows["deployed aks-prod cronjobs"].failed
    assert rows["deployed aks-prod cronjobs"].fix == (
        "RBAC: list cronjobs at cluster scope (deploy/kubernetes/rbac.yaml)"
    )
    assert rows["deployed gone"].failed and "deployed.kubeconfig" in rows["deployed gone"].fix
    kube.forbidden.clear()
    rows = {
        c.name: c for c in doctor.run(tmp_path / "acrbot.toml") if c.name.startswith("deployed")
    }
    assert not rows["deployed aks-prod"].failed
    assert rows["deployed aks-prod"].detail.startswith("kubernetes: may list pods, replicasets")


def test_container_apps_active_revisions_and_jobs_count_inactive_ones_do_not(
    distribution, tmp_path
):
    from bot.ops.deployed.reader import DeployedReader, build_source
    from tests.support.fake_acr import StaticCredential
    from tests.support.fake_container_apps import SUB, App, FakeContainerApps, Job

    arm = FakeContainerApps().start()
    try:
        ca = arm.write_ca(tmp_path / "arm-ca.pem")
        host = urlsplit(distribution.url).netloc
        repo = f"apps{next(_names)}/web"
        d = {t: distribution.push(repo, t, label=t) for t in ("live", "retired", "job", "free")}
        arm.apps = [
            App(
                "web",
                "rg-apps",
                [
                    ("web--1", False, [f"{host}/{repo}@{d['retired']}"], []),
                    ("web--2", True, [f"{host}/{repo}:live"], []),
                ],
            )
        ]
        arm.jobs = [
            Job("nightly", "rg-apps", ["mcr.microsoft.com/x:1"], init=[f"{host}/{repo}:job"])
        ]
        config = make_config(
            tmp_path,
            registry=[{"name": "dist", "type": "oci", "url": distribution.url}],
            deployed=[{"name": "apps", "type": "containerapps", "subscription_id": SUB}],
        )
        bot = build_dispatcher(config)
        bot.ctx.roles.grant(Grant("alice", Role.CONTRIBUTOR), by="t", at=bot.ctx.clock())
        source = build_source(
            config.deployed[0],
            credential=StaticCredential(),
            base_url=arm.url,
            connection_verify=ca,
            retry_total=0,
        )
        bot.ctx.deployed = DeployedReader(config, sources=[source], now=bot.ctx.clock)
        live = bot.handle(f"delete {repo}:live --manifest --reason x", user="alice")
        assert "in use: apps/rg-apps Container App web (revision web--2)" in live.text
        job = bot.handle(f"delete {repo}:job --manifest --reason x", user="alice")
        assert "in use: apps/rg-apps Container Apps job nightly" in job.text
        assert bot.handle(f"delete {repo}:retired --manifest --reason x", user="alice").ok
        arm.forbidden.add("subscription")
        refused = bot.handle(f"delete {repo}:free --manifest --reason x", user="alice")
        assert refused.text == (
            "deployed source apps could not be read (403 listing container apps): give the "
            "bot's identity Reader on the subscription (or the resource group); nothing was "
            "requested"
        )
    finally:
        arm.stop()


def test_an_index_whose_child_runs_is_refused_with_manifest(distribution, kube, tmp_path):
    repo, d = cluster(distribution, kube)
    index = distribution.push_index(repo, "multi", [d["old"]])
    bot = make_bot(distribution, kube, tmp_path)
    reply = bot.handle(f"delete {repo}:multi --manifest --reason old", user="alice")
    assert not reply.ok
    assert reply.text == (
        f"dist/{repo}@{index[:19]} is in use: aks-prod/payments ReplicaSet api-5d1a (rollback) "
        f"(a child of the index, {d['old'][:19]}); nothing was requested"
    )


def test_scheduled_retention_the_console_and_notebooks_take_the_same_checks(
    distribution, kube, tmp_path, capsys
):
    from bot.cli import main as acrbot
    from bot.core.config import load
    from bot.notebook import Acr
    from bot.schedules.retention import run_due

    repo, d = cluster(distribution, kube)
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    text = f"""
database = "acrbot.db"

[[registry]]
name = "dist"
type = "oci"
url = "{distribution.url}"

[[deployed]]
name = "aks-prod"
type = "kubernetes"
kubeconfig = "{kubeconfig}"

[protect]
tags = ["^latest$"]

[[retention]]
name = "tidy"
schedule = "* * * * *"
filter = "{repo}:.*"
channel = "C0123456789"
"""
    (tmp_path / "acrbot.toml").write_text(text)
    bot = make_bot(distribution, kube, tmp_path)  # the same database: roles for alice and bob
    bot.ctx.config = load(tmp_path / "acrbot.toml")
    assert run_due(bot.ctx) == ["tidy: request #1"]
    shown = bot.handle("request 1", user="bob")
    assert "in use: aks-prod/batch CronJob nightly" in str(shown.table)
    assert "protected: latest matches ^latest$" in str(shown.table)
    reasons = {s.item.split(" (")[1][:-1]: s.reason for s in bot.ctx.purges.planning_skips(1)}
    assert set(reasons) == {"run", "old", "cron", "bytag", "latest"}  # kept in purge_skips
    code = acrbot(
        [
            "run",
            "--config",
            str(tmp_path / "acrbot.toml"),
            "--user",
            "alice",
            f"delete {repo}:cron --manifest --reason x",
        ]
    )
    assert code != 0
    assert "in use: aks-prod/batch CronJob nightly" in capsys.readouterr().out
    notebook = Acr(tmp_path / "acrbot.toml", user="alice")
    result = notebook(f"delete {repo}@{d['old']} --manifest --reason x")
    assert (
        not result.ok and "in use: aks-prod/payments ReplicaSet api-5d1a (rollback)" in result.text
    )


def test_a_purge_whose_source_is_down_at_execution_deletes_nothing_and_says_why(
    distribution, kube, tmp_path
):
    repo, d = cluster(distribution, kube)
    bot = make_bot(distribution, kube, tmp_path)
    assert bot.handle(f"purge --filter '{repo}:free' --reason tidy", user="alice").ok
    kube.stop()
    done = bot.handle("approve 1", user="bob")
    assert not done.ok
    assert "deployed source aks-prod could not be read" in done.text
    assert "nothing was deleted" in done.text
    assert bot.ctx.registries.default.image(repo, d["free"]).digest == d["free"]
