"""The fake Microsoft.App provider through the real azure-mgmt-appcontainers client: pages by
nextLink, refuses without a token or api-version, 403 for a scope the identity may not read."""

import ssl

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from tests.support.fake_acr import ARM_TOKEN, StaticCredential
from tests.support.fake_container_apps import SUB, App, FakeContainerApps, Job


@pytest.fixture
def arm(tmp_path):
    server = FakeContainerApps().start()
    server.ca_path = server.write_ca(tmp_path / "ca.pem")
    server.apps = [
        App(f"app{i}", "rg-a" if i % 2 else "rg-b", [(f"app{i}--1", True, [f"r.io/a:{i}"], [])])
        for i in range(5)
    ]
    server.jobs = [Job("nightly", "rg-a", ["r.io/j:1"], init=["r.io/i:1"])]
    yield server
    server.stop()


def client(arm):
    return ContainerAppsAPIClient(
        StaticCredential(),
        SUB,
        base_url=arm.url,
        credential_scopes=[f"{arm.url}/.default"],
        connection_verify=arm.ca_path,
        retry_total=0,
    )


def test_fake_container_apps_pages_apps_revisions_and_jobs_through_the_sdk(arm):
    api = client(arm)
    apps = list(api.container_apps.list_by_subscription())
    assert sorted(a.name for a in apps) == [f"app{i}" for i in range(5)]
    assert sum(1 for r in arm.requests if r.endswith("/containerApps")) == 3  # 2 + 2 + 1
    assert [a.name for a in api.container_apps.list_by_resource_group("rg-a")] == ["app1", "app3"]
    (rev,) = api.container_apps_revisions.list_revisions("rg-a", "app1")
    assert rev.properties.active and rev.properties.template.containers[0].image == "r.io/a:1"
    (job,) = api.jobs.list_by_subscription()
    assert job.properties.template.init_containers[0].image == "r.io/i:1"


def test_fake_container_apps_refuses_like_arm(arm):
    arm.forbidden.add("rg-a")
    with pytest.raises(HttpResponseError) as caught:
        list(client(arm).container_apps.list_by_resource_group("rg-a"))
    assert caught.value.status_code == 403 and caught.value.error.code == "AuthorizationFailed"
    with httpx.Client(verify=ssl.create_default_context(cafile=arm.ca_path)) as http:
        url = f"{arm.url}/subscriptions/{SUB}/providers/Microsoft.App/jobs"
        assert http.get(url, params={"api-version": "2026-07-01"}).status_code == 401
        missing = http.get(url, headers={"Authorization": f"Bearer {ARM_TOKEN}"})
        assert missing.status_code == 400
        assert missing.json()["error"]["code"] == "MissingApiVersionParameter"
