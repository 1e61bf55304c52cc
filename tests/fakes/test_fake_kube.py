"""The fake Kubernetes API server refuses what the real one refuses, and pages as it pages,
through the real `kubernetes` client and a kubeconfig file."""

import json
import ssl

import httpx
import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.support.fake_kube import FakeKube, pod, replicaset


@pytest.fixture
def kube():
    server = FakeKube().start()
    server.add("pods", *[pod(f"p{i:03}", "ns", [f"r.io/app:{i}"]) for i in range(25)])
    yield server
    server.stop()


def api(kube, tmp_path, **kwargs):
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(kube.kubeconfig(tmp_path / "kc", **kwargs)),
        context="test",
        client_configuration=configuration,
    )
    return client.CoreV1Api(client.ApiClient(configuration))


def test_fake_kube_pages_with_limit_and_continue_through_the_real_client(kube, tmp_path):
    core = api(kube, tmp_path)
    first = core.list_pod_for_all_namespaces(limit=10)
    assert [p.metadata.name for p in first.items] == [f"p{i:03}" for i in range(10)]
    assert first.metadata.remaining_item_count == 15
    second = core.list_pod_for_all_namespaces(limit=10, _continue=first.metadata._continue)
    last = core.list_pod_for_all_namespaces(limit=10, _continue=second.metadata._continue)
    assert len(last.items) == 5 and last.metadata._continue is None
    assert last.items[0].status.container_statuses[0].image == "r.io/app:20"


def test_fake_kube_expires_continue_tokens_with_410(kube, tmp_path):
    core = api(kube, tmp_path)
    first = core.list_pod_for_all_namespaces(limit=10)
    kube.expire()
    with pytest.raises(ApiException) as caught:
        core.list_pod_for_all_namespaces(limit=10, _continue=first.metadata._continue)
    assert caught.value.status == 410
    assert json.loads(caught.value.body)["reason"] == "Expired"
    kube.continue_ttl = 0
    first = core.list_pod_for_all_namespaces(limit=10)
    with pytest.raises(ApiException, match="410"):
        core.list_pod_for_all_namespaces(limit=10, _continue=first.metadata._continue)


def test_fake_kube_refuses_a_wrong_token_and_forbidden_kinds(kube, tmp_path):
    with pytest.raises(ApiException) as caught:
        api(kube, tmp_path, token="wrong").list_pod_for_all_namespaces()
    assert caught.value.status == 401
    kube.forbidden.add("pods")
    with pytest.raises(ApiException) as caught:
        api(kube, tmp_path).list_pod_for_all_namespaces()
    assert caught.value.status == 403
    assert 'cannot list resource "pods"' in json.loads(caught.value.body)["message"]


def test_fake_kube_serves_namespaced_lists_and_apps_kinds(kube, tmp_path):
    kube.add("replicasets", replicaset("api-1", "other", ["r.io/app:1"], deployment="api"))
    core = api(kube, tmp_path)
    assert len(core.list_namespaced_pod("ns").items) == 25
    assert core.list_namespaced_pod("other").items == []
    apps = client.AppsV1Api(core.api_client)
    found = apps.list_replica_set_for_all_namespaces()
    assert found.items[0].metadata.owner_references[0].kind == "Deployment"
    assert found.items[0].spec.replicas == 0
    ca = tmp_path / "ca.pem"
    kube.ca.cert_pem.write_to_path(str(ca))
    headers = {"Authorization": f"Bearer {kube.token}"}
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), headers=headers) as http:
        assert http.delete(f"{kube.url}/api/v1/pods").status_code == 405
        assert http.get(f"{kube.url}/api/v1/secrets").status_code == 404


def test_the_bots_source_restarts_a_list_on_410_and_gives_up_naming_it(kube, tmp_path):
    from bot.core.config import DeployedConfig
    from bot.ops.deployed import kubernetes as source_module
    from bot.ops.deployed.errors import SourceUnreadable

    kube.add("pods", *[pod(f"q{i:04}", "ns", [f"r.io/app:{i}"]) for i in range(1200)])
    config = DeployedConfig(
        name="aks", type="kubernetes", kubeconfig=kube.kubeconfig(tmp_path / "kc"), context="test"
    )
    source = source_module.KubernetesSource(config)
    kube.expire_next = 1
    kube.requests.clear()
    pods = source.list_kind("pods")
    assert len(pods) == 1225 and len({p["metadata"]["name"] for p in pods}) == 1225
    assert len([r for r in kube.requests if r[0] == "/api/v1/pods"]) == 2 + 3  # 410, then 3 pages
    kube.continue_ttl = 0  # every continue expires: a source that cannot be read, never "empty"
    with pytest.raises(SourceUnreadable, match="kept expiring"):
        source.list_kind("pods")


def test_a_stopped_fake_kube_cuts_kept_alive_connections_too(kube, tmp_path):
    core = api(kube, tmp_path)
    assert len(core.list_pod_for_all_namespaces().items) == 25  # a pooled connection now
    kube.stop()
    with pytest.raises(Exception) as caught:
        core.list_pod_for_all_namespaces(_request_timeout=2)
    assert not isinstance(caught.value, ApiException)  # no answer at all, as a dead server
