"""The deploy kit (deploy/) agrees with itself and with the app it runs.

- Kubernetes (deploy/kubernetes, deploy/kubernetes-socket-mode): every manifest, and what the
  kustomizations build, validates strictly (unknown fields refused) against the Kubernetes
  schemas bundled in kubernetes-validate, offline; and the invariants hold: one replica,
  Recreate, probes on the port `acrbot serve` is started with, workload identity, the image's
  UID, Secret keys, the config and where the database lives.
- Azure Container Apps (deploy/azure): the ARM template's shape is checked against the typed
  models of azure-mgmt-appcontainers (unknown or read-only fields refused), plus its roles,
  identity, replicas, probes and secure parameters.
- The Dockerfile, parsed with dockerfile-parse (pure Python) and, where its wheel exists
  (x86_64), cross-checked with BuildKit's own parser (the `dockerfile` package): fixed non-root
  UID, CMD, HEALTHCHECK; and the image's command line itself is run here against the
  manifests' config and a fake Slack: it serves /healthz, answers a command, passes its own
  health check in both modes and stops within the grace period.
"""

from __future__ import annotations

import copy
import http.client
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from bot import cli
from bot.core.config import from_mapping, load, slack_settings
from tests.support.helpers import free_port
from tests.support.slack_support import slash_command

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
K8S_SOCKET = DEPLOY / "kubernetes-socket-mode"
K8S_HA = DEPLOY / "kubernetes-ha"
ARM = DEPLOY / "azure" / "containerapp.json"
ARM_PARAMETERS = DEPLOY / "azure" / "containerapp.parameters.example.json"
HEALTHCHECK = DEPLOY / "healthcheck.py"
# AKS' mainstream minor version, and the newest schema kubernetes-validate bundles.
K8S_VERSIONS = ("1.34.0", kubernetes_validate.latest_version())
# children import this checkout's bot package, whatever the venv's acrbot was installed from
PYTHONPATH = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
SLACK_ENV = {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"}
ROLE_IDS = {  # Azure built-in role definition ids (learn.microsoft.com, built-in roles)
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "AcrDelete": "c2f4ef07-c644-48eb-af81-4b1b4947fb11",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
}


# -- Kubernetes: a small kustomize for what our kustomizations use ---------------------------


def yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kustomization(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def json_pointer(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path.lstrip("/").split("/")]


def apply_json6902(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        *parents, last = json_pointer(op["path"])
        node: Any = doc
        for part in parents:
            node = node[part]
        if op["op"] == "remove":
            del node[last]
        elif op["op"] in ("replace", "add"):
            assert op["op"] == "add" or last in node or isinstance(last, int), op["path"]
            node[last] = copy.deepcopy(op["value"])
        else:
            raise AssertionError(f"unsupported patch op {op['op']}")


def build(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`, for the features our kustomizations use (and fails on others)."""
    spec = kustomization(directory)
    assert set(spec) <= {"apiVersion", "kind", "resources", "images", "patches"}, set(spec)
    docs: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        docs += build(path) if path.is_dir() else yaml_docs(path)
    for patch in spec.get("patches", []):
        assert set(patch) <= {"path", "target"}, patch
        content = yaml.safe_load((directory / patch["path"]).read_text())
        if isinstance(content, list):  # JSON 6902
            target = patch["target"]
            matches = [
                d
                for d in docs
                if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]
            ]
            assert len(matches) == 1, target
            apply_json6902(matches[0], content)
        else:  # strategic merge; we only delete whole resources
            assert content.pop("$patch") == "delete", content
            before, gone = len(docs), (content["kind"], content["metadata"]["name"])
            docs = [d for d in docs if (d["kind"], d["metadata"]["name"]) != gone]
            assert len(docs) == before - 1, content
    for image in spec.get("images", []):
        for doc in docs:
            pod = pod_spec(doc) if doc["kind"] == "Deployment" else {}
            for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
                if container["image"] == image["name"]:
                    container["image"] = f"{image['newName']}:{image['newTag']}"
    return docs


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = pod_spec(one(docs, "Deployment"))["containers"]
    return c


def serve_options(argv: list[str]) -> Any:
    """Parse `acrbot serve …` with acrbot's own argument parser."""
    assert argv[:2] == ["acrbot", "serve"], argv
    return cli._parser().parse_args(argv[1:])


def container_port(c: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in c.get("ports", []) if p["name"] == port]
    return number


HTTP = build(K8S)
SOCKET = build(K8S_SOCKET)
HA = build(K8S_HA)
SECRET_TEMPLATE = one(yaml_docs(K8S / "slack-secret.template.yaml"), "Secret")


def manifest_files() -> list[Path]:
    return sorted(p for d in (K8S, K8S_SOCKET, K8S_HA) for p in d.glob("*.yaml"))


def kubernetes_objects() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object in deploy/: the files, and what both kustomizations build."""
    objects = []
    for path in manifest_files():
        for doc in yaml_docs(path):
            if isinstance(doc, dict) and doc.get("kind") != "Kustomization":
                if doc.get("$patch") == "delete":
                    continue  # a kustomize directive, not an object
                objects.append((str(path.relative_to(ROOT)), doc))
    objects += [(f"kustomize build {K8S.name}", d) for d in HTTP]
    objects += [(f"kustomize build {K8S_SOCKET.name}", d) for d in SOCKET]
    objects += [(f"kustomize build {K8S_HA.name}", d) for d in HA]
    return objects


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a name fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# -- Kubernetes ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_kubernetes_object_validates_strictly_offline(version, no_network):
    objects = kubernetes_objects()
    kinds = {d["kind"] for _, d in objects}
    assert {
        "Deployment",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Secret",
        "PodDisruptionBudget",
    } <= kinds
    for where, doc in objects:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{where}: {doc['kind']}: {exc.message}") from None


def test_strict_validation_refuses_an_unknown_field(no_network):
    deployment = copy.deepcopy(one(HTTP, "Deployment"))
    deployment["spec"]["replica"] = 1  # a typo of replicas
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("directory", [K8S, K8S_SOCKET, K8S_HA], ids=lambda d: d.name)
def test_kubectl_kustomize_builds_the_same(directory):
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(yaml.safe_load_all(out.stdout), key=key) == sorted(build(directory), key=key)


def test_one_replica_recreated_never_rolled():
    for docs in (HTTP, SOCKET):
        spec = one(docs, "Deployment")["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}
    text = (K8S / "deployment.yaml").read_text()
    assert "SQLite" in text and "one writer" in text


def test_ha_two_replicas_rolled_one_at_a_time_on_postgresql():
    """deploy/kubernetes-ha: two replicas, never fewer than two ready during a rollout, one
    at most evicted by a drain, spread over nodes, readiness failing at the SIGTERM, a grace
    covering the drain, no volume, and the database in PostgreSQL with no password."""
    from bot.slack import service

    deployment = one(HA, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    labels = spec["template"]["metadata"]["labels"]
    pdb = one(HA, "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 1
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    pod = pod_spec(deployment)
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    assert pod["terminationGracePeriodSeconds"] >= 30 > service.STOP_WITHIN
    readiness = container(HA)["readinessProbe"]
    assert readiness["httpGet"]["path"] == "/readyz"
    # dropped from the endpoints well before the listener closes (LISTEN_AFTER_TERM)
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < service.LISTEN_AFTER_TERM
    assert not [d for d in HA if d["kind"] in ("PersistentVolumeClaim", "Secret")]
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    (text,) = one(HA, "ConfigMap")["data"].values()
    toml = tomllib.loads(text)
    assert toml["database"].startswith("postgresql://") and "sslmode=require" in toml["database"]
    assert toml["database_auth"] == "azure"
    assert ":" not in toml["database"].split("://", 1)[1].split("@", 1)[0]  # no password
    assert "database-secret.template.yaml" not in kustomization(K8S_HA)["resources"]
    # everything else is the single-replica kit's, unchanged
    assert container(HA)["command"] == container(HTTP)["command"]
    assert container(HA)["args"] == container(HTTP)["args"]


PROBE_PATHS = {
    "startupProbe": "/healthz",
    "livenessProbe": "/healthz",
    "readinessProbe": "/readyz",  # fails at SIGTERM; liveness never touches the database
}


def test_probes_hit_healthz_on_the_port_acrbot_serve_listens_on():
    for path in set(PROBE_PATHS.values()):
        assert f'"{path}"' in (ROOT / "bot" / "slack" / "service.py").read_text()
    c = container(HTTP)
    options = serve_options(c["command"] + c["args"])
    assert options.host == "0.0.0.0"  # the kubelet probes the pod IP
    for probe, path in PROBE_PATHS.items():
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert container_port(c, get["port"]) == options.port
    service = one(HTTP, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    (port,) = service["spec"]["ports"]
    assert container_port(c, port["targetPort"]) == options.port
    # /metrics on a port of its own, which the Service does not expose
    assert options.metrics_port not in (None, options.port)
    assert container_port(c, "metrics") == options.metrics_port
    labels = one(HTTP, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert one(HTTP, "Deployment")["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_socket_mode_probes_run_the_image_healthcheck_and_there_is_no_service():
    c = container(SOCKET)
    (_, _, check_cmd) = dockerfile_healthcheck()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["exec"] == {"command": check_cmd}
        assert "httpGet" not in c[probe]
    assert "ports" not in c
    assert not [d for d in SOCKET if d["kind"] == "Service"]
    # everything else is the HTTP deployment
    http_c = container(HTTP)
    for key in ("command", "args", "env", "securityContext", "resources", "volumeMounts"):
        assert c[key] == http_c[key]


def test_workload_identity_label_and_service_account_annotation():
    deployment = one(HTTP, "Deployment")
    account = one(HTTP, "ServiceAccount")
    assert deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == (
        "true"
    )
    assert pod_spec(deployment)["serviceAccountName"] == account["metadata"]["name"]
    client_id = account["metadata"]["annotations"]["azure.workload.identity/client-id"]
    assert re.fullmatch(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", client_id)


def test_runs_as_the_images_non_root_user_with_a_read_only_root():
    uid, gid = dockerfile_user()
    spec = pod_spec(one(HTTP, "Deployment"))
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (uid, gid, gid)
    c = container(HTTP)
    assert c["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {v["name"]: v for v in spec["volumes"]}
    writable = {
        m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"] if not m.get("readOnly")
    }
    assert set(writable) == {database_dir(), "/tmp"}
    assert "emptyDir" in writable["/tmp"]
    assert (
        writable[database_dir()]["persistentVolumeClaim"]["claimName"]
        == (one(HTTP, "PersistentVolumeClaim")["metadata"]["name"])
    )


def test_secret_key_refs_are_the_keys_of_the_secret_template():
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container(HTTP)["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert set(refs) == SLACK_ENV
    name = SECRET_TEMPLATE["metadata"]["name"]
    keys = set(SECRET_TEMPLATE.get("stringData", {})) | set(SECRET_TEMPLATE.get("data", {}))
    for env, ref in refs.items():
        assert ref["name"] == name
        assert ref["key"] in keys
        # the bot token is always needed; the other two depend on the mode
        assert ref.get("optional", False) is (env != "SLACK_BOT_TOKEN")
    # placeholders only, and they select HTTP mode, which the base deployment probes
    values = SECRET_TEMPLATE["stringData"]
    assert all(v == "" or "REPLACE" in v for v in values.values())
    assert slack_settings(values).socket_mode is False
    # applying the kustomization never overwrites the real Secret with the template
    assert "slack-secret.template.yaml" not in kustomization(K8S)["resources"]
    assert not [d for d in HTTP + SOCKET + HA if d["kind"] == "Secret"]


def configmap_toml() -> str:
    (text,) = one(HTTP, "ConfigMap")["data"].values()
    return text


def database_dir() -> str:
    """Where the Deployment mounts the PersistentVolumeClaim."""
    (claim,) = [
        v["name"]
        for v in pod_spec(one(HTTP, "Deployment"))["volumes"]
        if "persistentVolumeClaim" in v
    ]
    (mount,) = [m["mountPath"] for m in container(HTTP)["volumeMounts"] if m["name"] == claim]
    return mount


def test_configmap_config_loads_and_keeps_the_database_on_the_volume(tmp_path):
    c = container(HTTP)
    env = {e["name"]: e.get("value", "set-from-a-secret") for e in c["env"]}
    config_path = Path(env["ACRBOT_CONFIG"])
    assert env["ACRBOT_CONFIG"] == dockerfile_env()["ACRBOT_CONFIG"]
    # the ConfigMap is mounted where ACRBOT_CONFIG points, read-only
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    assert mount["readOnly"] is True
    volumes = {v["name"]: v for v in pod_spec(one(HTTP, "Deployment"))["volumes"]}
    assert volumes[mount["name"]]["configMap"]["name"] == one(HTTP, "ConfigMap")["metadata"]["name"]
    assert list(one(HTTP, "ConfigMap")["data"]) == [config_path.name]
    # the project's own loader accepts it, with the environment the container has
    config = from_mapping(
        tomllib.loads(configmap_toml()), base=config_path.parent, source="configmap", environ=env
    )
    assert config.database.parent == Path(database_dir())
    assert [r.type for r in config.registries] == ["acr"]
    copy_path = tmp_path / "acrbot.toml"
    copy_path.write_text(configmap_toml())
    assert load(copy_path).database == config.database
    pvc = one(HTTP, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_grace_period_covers_the_http_drain_and_the_workers_jobs():
    from bot.slack import service

    # The listener closes LISTEN_AFTER_TERM + DRAIN_REQUESTS after SIGTERM; the worker (which
    # stopped taking jobs at the signal) is killed at WORKER_STOP, reaped within 5 s more.
    http = service.LISTEN_AFTER_TERM + service.DRAIN_REQUESTS
    assert max(http, service.WORKER_STOP + 5) <= service.STOP_WITHIN
    grace = pod_spec(one(HTTP, "Deployment"))["terminationGracePeriodSeconds"]
    assert service.STOP_WITHIN < grace <= service.STOP_WITHIN + 10
    assert arm_app()["properties"]["template"]["terminationGracePeriodSeconds"] == grace


def quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match, value
    return float(match[1]) * units.get(match[2], 1)


def test_resources_are_requested_and_limited():
    resources = container(HTTP)["resources"]
    for kind in ("cpu", "memory"):
        assert quantity(resources["requests"][kind]) <= quantity(resources["limits"][kind])
    assert quantity(resources["limits"]["memory"]) >= 256 * 2**20
    assert container(HTTP)["image"].endswith(":" + kustomization(K8S)["images"][0]["newTag"])


# -- Azure Container Apps --------------------------------------------------------------------


TEMPLATE = json.loads(ARM.read_text())
ENVELOPE = {"type", "apiVersion", "name", "dependsOn", "condition", "comments", "scope"}


def arm_resources(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every resource, nested deployments' included."""
    found = []
    for resource in template["resources"]:
        found.append(resource)
        if resource["type"] == "Microsoft.Resources/deployments":
            found += arm_resources(resource["properties"]["template"])
    return found


def arm_resource(kind: str, template: dict[str, Any] = TEMPLATE) -> dict[str, Any]:
    (resource,) = [r for r in arm_resources(template) if r["type"] == kind]
    return resource


def resolve(value: Any, *, socket_mode: bool, variables: dict[str, Any] | None = None) -> Any:
    """The template with variables('x') and if(variables('socketMode'), A, B) substituted;
    other expressions stay strings."""
    variables = TEMPLATE["variables"] if variables is None else variables

    def term(text: str) -> Any:
        text = text.strip()
        if text == "null()":
            return None
        if text == "createArray()":
            return []
        match = re.fullmatch(r"variables\('(\w+)'\)", text)
        assert match, text
        return resolve(variables[match[1]], socket_mode=socket_mode, variables=variables)

    if isinstance(value, str):
        if re.fullmatch(r"\[variables\('\w+'\)\]", value):
            return term(value[1:-1])
        match = re.fullmatch(r"\[if\(variables\('socketMode'\), ([^,]+), ([^,]+)\)\]", value)
        if match:
            return term(match[1] if socket_mode else match[2])
        return value
    if isinstance(value, dict):
        return {
            k: resolve(v, socket_mode=socket_mode, variables=variables) for k, v in value.items()
        }
    if isinstance(value, list):
        return [resolve(v, socket_mode=socket_mode, variables=variables) for v in value]
    return value


def arm_app(socket_mode: bool = False) -> dict[str, Any]:
    return resolve(arm_resource("Microsoft.App/containerApps"), socket_mode=socket_mode)


def arm_container(socket_mode: bool = False) -> dict[str, Any]:
    (c,) = arm_app(socket_mode)["properties"]["template"]["containers"]
    return c


class ModelChecker:
    """Check a REST body against azure-mgmt-appcontainers' typed models: unknown fields, wrong
    types, enum values and read-only fields are reported. ARM expressions are skipped."""

    def __init__(self) -> None:
        import azure.mgmt.appcontainers.models as models
        from azure.mgmt.appcontainers._utils.model_base import Model

        self.models, self.base = models, Model
        self.problems: list[str] = []

    def hints(self, cls: type) -> dict[str, Any]:
        module = vars(sys.modules[cls.__module__])
        return typing.get_type_hints(cls, globalns=module, localns={"_models": self.models})

    def check(self, value: Any, tp: Any, path: str) -> None:
        if isinstance(value, str) and value.startswith("[") and not value.startswith("[["):
            return  # an ARM expression
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Union:
            if value is None:
                return
            options = [a for a in args if a is not type(None)]
            enums = [a for a in options if isinstance(a, type) and issubclass(a, Enum)]
            if enums and isinstance(value, str):
                allowed = {e.value for e in enums[0]}
                if value not in allowed:
                    self.problems.append(f"{path}: {value!r} is not one of {sorted(allowed)}")
                return
            (tp,) = options
            return self.check(value, tp, path)
        if origin is list:
            if not isinstance(value, list):
                self.problems.append(f"{path}: expected a list, got {value!r}")
                return
            for i, item in enumerate(value):
                self.check(item, args[0], f"{path}[{i}]")
        elif origin is dict:
            if not isinstance(value, dict):
                self.problems.append(f"{path}: expected an object, got {value!r}")
                return
            for key, item in value.items():
                self.check(item, args[1], f"{path}.{key}")
        elif isinstance(tp, type) and issubclass(tp, self.base):
            self.check_model(value, tp, path)
        elif tp is bool or tp is str:
            if not isinstance(value, tp):
                self.problems.append(f"{path}: expected {tp.__name__}, got {value!r}")
        elif tp is int or tp is float:
            ok = isinstance(value, int | float if tp is float else int)
            if not ok or isinstance(value, bool):
                self.problems.append(f"{path}: expected {tp.__name__}, got {value!r}")

    def check_model(self, value: Any, cls: type, path: str) -> None:
        if not isinstance(value, dict):
            self.problems.append(f"{path}: expected an object ({cls.__name__}), got {value!r}")
            return
        cls()  # computes the class' field table
        fields = {f._rest_name: (attr, f) for attr, f in cls._attr_to_rest_field.items()}
        hints = self.hints(cls)
        for key, item in value.items():
            if key not in fields:
                self.problems.append(f"{path}.{key}: unknown to {cls.__name__}")
                continue
            attr, field = fields[key]
            if not {"create", "update"} & set(field._visibility or ["create"]):
                self.problems.append(f"{path}.{key}: read-only in {cls.__name__}")
            self.check(item, hints[attr], f"{path}.{key}")


def model_problems(resource: dict[str, Any], model: str) -> list[str]:
    checker = ModelChecker()
    body = {k: v for k, v in resource.items() if k not in ENVELOPE}
    checker.check_model(body, getattr(checker.models, model), resource["type"])
    return checker.problems


@pytest.mark.parametrize("socket_mode", [False, True], ids=["http", "socket"])
def test_arm_resources_match_the_container_apps_models(socket_mode):
    for kind, model in [
        ("Microsoft.App/containerApps", "ContainerApp"),
        ("Microsoft.App/managedEnvironments", "ManagedEnvironment"),
        ("Microsoft.App/managedEnvironments/storages", "ManagedEnvironmentStorage"),
    ]:
        resource = resolve(arm_resource(kind), socket_mode=socket_mode)
        assert model_problems(resource, model) == []


def test_arm_model_check_refuses_unknown_and_mistyped_fields():
    app = arm_app()
    app["properties"]["template"]["scale"]["minReplica"] = 1
    app["properties"]["template"]["containers"][0]["probes"][0]["httpGet"]["port"] = "3000"
    app["properties"]["template"]["volumes"][0]["storageType"] = "AzureFiles"
    app["properties"]["configuration"]["ingress"]["fqdn"] = "x.example"
    problems = "\n".join(model_problems(app, "ContainerApp"))
    for needle in ("minReplica: unknown", "port: expected int", "'AzureFiles'", "fqdn: read-only"):
        assert needle in problems


def test_arm_template_roles_on_the_registry():
    assignments = [
        r for r in arm_resources(TEMPLATE) if r["type"] == "Microsoft.Authorization/roleAssignments"
    ]
    nested = arm_resource("Microsoft.Resources/deployments")
    inner = nested["properties"]["template"]
    assert nested["resourceGroup"] == "[parameters('registryResourceGroup')]"
    roles = {}
    for assignment in assignments:
        properties = assignment["properties"]
        match = re.fullmatch(
            r"\[subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', "
            r"(variables|parameters)\('(\w+)'\)\)\]",
            properties["roleDefinitionId"],
        )
        assert match, properties["roleDefinitionId"]
        if match[1] == "variables":
            role = inner["variables"][match[2]]
        else:
            outer = nested["properties"]["parameters"][match[2]]["value"]
            role = TEMPLATE["parameters"][re.fullmatch(r"\[parameters\('(\w+)'\)\]", outer)[1]][
                "defaultValue"
            ]
        roles[role] = assignment
        assert assignment["scope"] == (
            "[format('Microsoft.ContainerRegistry/registries/{0}', parameters('registryName'))]"
        )
        assert properties["principalType"] == "ServicePrincipal"
        assert properties["principalId"] == "[parameters('principalId')]"
        assert "parameters('principalId')" in assignment["name"]
    assert set(roles) == set(ROLE_IDS.values())
    # the admin role (listCredentials, regenerateCredential, write) is optional, by a bool
    admin = roles[ROLE_IDS["Contributor"]]
    assert admin["condition"] == "[parameters('allowAdminCommands')]"
    assert TEMPLATE["parameters"]["allowAdminCommands"]["type"] == "bool"
    assert "condition" not in roles[ROLE_IDS["AcrPull"]]
    assert "condition" not in roles[ROLE_IDS["AcrDelete"]]
    # the principal is the container app's own system-assigned identity
    principal = nested["properties"]["parameters"]["principalId"]["value"]
    assert "Microsoft.App/containerApps" in principal and "identity.principalId" in principal


def test_arm_app_identity_replicas_and_probes():
    app = arm_app()
    assert app["identity"] == {"type": "SystemAssigned"}
    properties = app["properties"]
    assert properties["template"]["scale"] == {"minReplicas": 1, "maxReplicas": 1}
    assert properties["configuration"]["activeRevisionsMode"] == "Single"
    c = arm_container()
    options = serve_options(c["command"] + c["args"])
    assert options.host == "0.0.0.0"
    assert properties["configuration"]["ingress"]["targetPort"] == options.port
    assert properties["configuration"]["ingress"]["external"] is True
    assert {p["type"] for p in c["probes"]} == {"Startup", "Liveness", "Readiness"}
    for probe in c["probes"]:
        path = "/readyz" if probe["type"] == "Readiness" else "/healthz"
        assert probe["httpGet"] == {"path": path, "port": options.port}
        # Container Apps' limits on probe settings
        assert 1 <= probe["failureThreshold"] <= 10
        assert 1 <= probe["periodSeconds"] <= 240
        assert 1 <= probe["timeoutSeconds"] <= 240
        assert 1 <= probe.get("initialDelaySeconds", 1) <= 60
    # Socket Mode: no ingress, no probes (Container Apps has no exec probe)
    socket_app = arm_app(socket_mode=True)
    assert socket_app["properties"]["configuration"]["ingress"] is None
    assert arm_container(socket_mode=True)["probes"] == []
    # No /metrics: the only port is the ingress, public (Slack must reach it); /metrics is
    # unauthenticated and is never served on the Slack port.
    assert options.metrics_port is None
    # the same command line as the image and the Kubernetes deployment (less its metrics port)
    assert c["command"] + c["args"] == dockerfile_cmd()
    k8s = container(HTTP)["command"] + container(HTTP)["args"]
    assert c["command"] + c["args"] == k8s[: k8s.index("--metrics-port")]


def test_arm_secrets_are_secure_parameters_without_defaults():
    parameters = TEMPLATE["parameters"]
    secure = {n for n, p in parameters.items() if p["type"].lower() == "securestring"}
    assert secure == {"slackBotToken", "slackSigningSecret", "slackAppToken"}
    assert all("defaultValue" not in parameters[n] for n in secure)
    for n, p in parameters.items():
        if re.search(r"token|secret|password|key", n, re.I) and n not in secure:
            raise AssertionError(f"{n} looks like a secret but is {p['type']}")
    for socket_mode in (False, True):
        configuration = arm_app(socket_mode)["properties"]["configuration"]
        secrets = {s["name"]: s["value"] for s in configuration["secrets"]}
        env = {e["name"]: e for e in arm_container(socket_mode)["env"]}
        slack = {name: env[name]["secretRef"] for name in env if name.startswith("SLACK_")}
        wanted = {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN" if socket_mode else "SLACK_SIGNING_SECRET"}
        assert set(slack) == wanted
        for ref in slack.values():
            assert re.fullmatch(r"\[parameters\('(\w+)'\)\]", secrets[ref])[1] in secure
        volumes = arm_app(socket_mode)["properties"]["template"]["volumes"]
        refs = {e["secretRef"] for e in env.values() if "secretRef" in e}
        refs |= {s["secretRef"] for v in volumes for s in v.get("secrets", [])}
        assert refs == set(secrets)  # every reference resolves, every secret is used
        # the config travels as a secret too (mounted as a file), nothing in plain env values
        assert all("secretRef" in e or e["name"] == "ACRBOT_CONFIG" for e in env.values())
    assert not re.search(r"xox[abp]-[0-9]|xapp-[0-9]", ARM.read_text())


def generated_config(registry: str, subscription: str, group: str) -> str:
    """The acrbot.toml the template writes when acrbotToml is empty (format() evaluated)."""
    expression = TEMPLATE["variables"]["generatedToml"]
    match = re.fullmatch(r"\[format\('((?:[^']|'')*)', (.*)\)\]", expression, re.S)
    assert match, expression
    login = f"{registry.lower()}.azurecr.io"  # environment().suffixes.acrLoginServer, public
    text = match[1].replace("''", "'")
    return text.format(registry, login, subscription, group)


def test_arm_generated_config_loads_and_keeps_the_database_on_azure_files():
    text = generated_config("prodreg", "00000000-0000-0000-0000-000000000000", "rg-registries")
    c = arm_container()
    env = {e["name"]: e.get("value", "x") for e in c["env"]}
    config_path = Path(env["ACRBOT_CONFIG"])
    config = from_mapping(tomllib.loads(text), base=config_path.parent, environ=env)
    (registry,) = config.registries
    assert (registry.name, registry.type, registry.login_server) == (
        "prodreg",
        "acr",
        "prodreg.azurecr.io",
    )
    mounts = {m["mountPath"]: m["volumeName"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in arm_app()["properties"]["template"]["volumes"]}
    data = volumes[mounts[str(config.database.parent)]]
    assert data["storageType"] == "AzureFile"
    storage = arm_resource("Microsoft.App/managedEnvironments/storages")
    assert storage["name"].endswith("variables('environmentStorageName'))]")
    assert data["storageName"] == TEMPLATE["variables"]["environmentStorageName"]
    assert storage["properties"]["azureFile"]["accessMode"] == "ReadWrite"
    # owned by the image's user; SQLite's locks stay on the one host (see the template)
    uid, gid = dockerfile_user()
    options = dict(o.partition("=")[::2] for o in data["mountOptions"].split(","))
    assert (options["uid"], options["gid"]) == (str(uid), str(gid))
    assert "nobrl" in options
    # the config file is the mounted acrbot-toml secret
    config_volume = volumes[mounts[str(config_path.parent)]]
    assert config_volume["storageType"] == "Secret"
    assert config_volume["secrets"] == [{"secretRef": "acrbot-toml", "path": config_path.name}]
    assert str(config.database.parent) == database_dir()  # same layout as on Kubernetes


def test_arm_parameters_example_names_real_parameters_and_holds_no_secret():
    example = json.loads(ARM_PARAMETERS.read_text())["parameters"]
    parameters = TEMPLATE["parameters"]
    assert set(example) <= set(parameters)
    required = {n for n, p in parameters.items() if "defaultValue" not in p}
    assert required <= set(example)
    for name, value in example.items():
        if parameters[name]["type"] == "secureString":
            assert "reference" in value or value["value"] == "", name


# -- Dockerfile ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, shaped like BuildKit's parser gives it."""

    cmd: str
    flags: tuple[str, ...]
    value: tuple[str, ...]
    json: bool
    original: str


def parse_dockerfile(path: Path) -> list[Instruction]:
    instructions = []
    for item in DockerfileParser(str(path), cache_content=True).structure:
        if item["instruction"] == "COMMENT":
            continue
        cmd, rest = item["instruction"].upper(), item["value"]
        flags = []
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.lstrip()
        prefix = ()
        if cmd == "HEALTHCHECK" and rest.split(None, 1)[0].upper() == "CMD":
            prefix, rest = ("CMD",), rest.split(None, 1)[1]
        is_json = cmd in ("CMD", "ENTRYPOINT", "RUN", "HEALTHCHECK") and rest.startswith("[")
        if is_json:
            value = (*prefix, *json.loads(rest))
        elif cmd == "ENV":
            value = tuple(x for pair in shlex.split(rest) for x in pair.split("=", 1))
        elif cmd in ("RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK"):
            value = (*prefix, rest)
        else:
            value = tuple(rest.split())
        original = " ".join(item["content"].replace("\\\n", " ").split())
        instructions.append(Instruction(cmd, tuple(flags), value, is_json, original))
    return instructions


DOCKERFILE = parse_dockerfile(DEPLOY / "Dockerfile")


def final_stage() -> list[Any]:
    starts = [i for i, c in enumerate(DOCKERFILE) if c.cmd == "FROM"]
    return list(DOCKERFILE[starts[-1] :])


def dockerfile_user() -> tuple[int, int]:
    """The final stage's USER as numbers, checked against the user it creates."""
    users = [c for c in final_stage() if c.cmd == "USER"]
    assert users, "the image must not run as root"
    uid, _, gid = users[-1].value[0].partition(":")
    assert uid.isdigit() and gid.isdigit(), "USER should be numeric uid:gid"
    creates = " ".join(c.value[0] for c in final_stage() if c.cmd == "RUN")
    assert re.search(rf"useradd\b[^&]*--uid {uid}\b[^&]*--gid {gid}\b", creates), creates
    assert re.search(rf"groupadd\b[^&]*--gid {gid}\b", creates), creates
    return int(uid), int(gid)


def dockerfile_cmd() -> list[str]:
    (cmd,) = [c for c in DOCKERFILE if c.cmd == "CMD"]
    assert cmd.json, "exec form, so that acrbot is PID 1 and gets SIGTERM"
    return list(cmd.value)


def dockerfile_env() -> dict[str, str]:
    env = {}
    for c in final_stage():
        if c.cmd == "ENV":
            env.update(zip(c.value[::2], c.value[1::2], strict=True))
    return env


def dockerfile_healthcheck() -> tuple[Any, str, list[str]]:
    (check,) = [c for c in DOCKERFILE if c.cmd == "HEALTHCHECK"]
    assert check.json and check.value[0] == "CMD"
    return check.flags, check.value[0], list(check.value[1:])


def test_buildkit_parses_the_dockerfile_the_same_way():
    buildkit = pytest.importorskip("dockerfile", reason="BuildKit's parser: x86_64 wheels only")
    parsed = buildkit.parse_file(str(DEPLOY / "Dockerfile"))
    ours = [(i.cmd, i.flags, i.value, i.json) for i in DOCKERFILE]
    theirs = [(c.cmd, tuple(c.flags), tuple(c.value), c.json) for c in parsed]
    assert ours == theirs


def test_dockerfile_runs_as_a_fixed_non_root_uid():
    uid, gid = dockerfile_user()
    assert uid >= 10000 and gid >= 10000  # not 0, and clear of the image's system users
    assert not [c for c in DOCKERFILE if c.cmd == "ENTRYPOINT"]


def test_dockerfile_cmd_serves_on_the_probed_port():
    argv = dockerfile_cmd()
    options = serve_options(argv)
    assert options.host == "0.0.0.0"
    (expose,) = [c for c in final_stage() if c.cmd == "EXPOSE"]
    assert expose.value == (str(options.port),)
    c = container(HTTP)
    k8s = c["command"] + c["args"]
    assert k8s[: k8s.index("--metrics-port")] == argv  # the image serves no /metrics by default
    assert options.metrics_port is None
    assert container_port(c, c["livenessProbe"]["httpGet"]["port"]) == options.port


def test_dockerfile_healthcheck_is_the_shipped_script():
    flags, _, command = dockerfile_healthcheck()
    (copied,) = [c for c in final_stage() if c.cmd == "COPY" and "healthcheck" in c.original]
    source, target = copied.value
    assert (ROOT / source) == HEALTHCHECK
    assert "--chmod=0755" in copied.flags
    assert command == [Path(target).name]
    assert Path(target).parent.as_posix() in dockerfile_env().get("PATH", "") + ":/usr/local/bin"
    assert "/healthz" in HEALTHCHECK.read_text()
    assert any(f.startswith("--start-period=") for f in flags)


def test_dockerfile_copies_what_the_package_build_needs():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = []
    for c in DOCKERFILE:
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags):
            sources = c.value[:-1]
            for source in sources:
                assert (ROOT / source).exists(), source
            copied += sources
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.split(".")[0] for p in include} <= set(copied)
    # Every package folder is in the distribution (a listed set once missed two new ones).
    from setuptools import find_packages

    folders = {
        str(p.parent.relative_to(ROOT)).replace("/", ".")
        for top in ("bot", "handlers")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert folders == set(find_packages(str(ROOT), include=include))
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= set(copied)


# -- The image's command, run here -----------------------------------------------------------


def acrbot_executable() -> str:
    path = Path(sys.executable).parent / "acrbot"
    if path.exists():
        return str(path)
    found = shutil.which("acrbot")
    if found is None:
        pytest.skip("acrbot is not installed (pip install -e .)")
    return found


def test_acrbot_serve_help_runs():
    out = subprocess.run(
        [acrbot_executable(), *dockerfile_cmd()[1:2], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )
    assert out.returncode == 0, out.stderr
    assert "--port" in out.stdout and "--host" in out.stdout


def load_healthcheck() -> Any:
    spec = importlib.util.spec_from_file_location("acrbot_healthcheck", HEALTHCHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def init_container(docs: Any) -> dict:
    """The Deployment's init container that creates the database."""
    spec = pod_spec(one(docs, "Deployment"))
    return next(c for c in spec["initContainers"] if c["name"] == "init-database")


class Served:
    """The image's CMD, run with the manifests' config (its /var/lib/acrbot moved to tmp_path),
    the image's ENV, the Secret template's keys and a fake Slack."""

    def __init__(self, tmp_path: Path, fake_slack: Any, *, app_token: str = "") -> None:
        data = tmp_path / "var-lib-acrbot"
        data.mkdir()
        etc = tmp_path / "etc-acrbot"
        etc.mkdir()
        (etc / "acrbot.toml").write_text(configmap_toml().replace(database_dir(), str(data)))
        self.data = data
        self.port = free_port()
        argv = dockerfile_cmd()
        # loopback and a free port instead of 0.0.0.0:3000; the rest exactly as in the image
        argv[argv.index("--host") + 1] = "127.0.0.1"
        argv[argv.index("--port") + 1] = str(self.port)
        self.argv = [acrbot_executable(), *argv[1:]]
        env = {k: v for k, v in os.environ.items() if k not in SLACK_ENV}
        env.update({k: v for k, v in dockerfile_env().items() if k != "PATH"})
        env.update(
            ACRBOT_CONFIG=str(etc / "acrbot.toml"),
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_SIGNING_SECRET="s3",
            SLACK_APP_TOKEN=app_token,
            SLACK_API_URL=fake_slack.api_url,
            PYTHONPATH=PYTHONPATH,
            HTTPS_PROXY="",
            HTTP_PROXY="",
        )
        self.env = env
        # The pod's init container first, as the kubelet runs it: it creates the database.
        init = init_container(HTTP)["command"]
        assert init == ["acrbot", "init"], init
        subprocess.run([acrbot_executable(), *init[1:]], env=env, check=True, capture_output=True)
        self.proc = subprocess.Popen(
            self.argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    def healthz(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        conn.request("GET", "/healthz")
        return conn.getresponse().status

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.stderr.read())
            if self.healthcheck().returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError("acrbot serve did not become healthy")

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(HEALTHCHECK), "--pid", str(self.proc.pid)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def worker(self) -> int:
        module = load_healthcheck()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    status = module._status(int(entry.name))
                    argv = module._argv(int(entry.name))
                except OSError:
                    continue
                if status["PPid"] == str(self.proc.pid) and any("spawn_main" in a for a in argv):
                    return int(entry.name)
        raise AssertionError("no worker process")

    def rss_bytes(self) -> int:
        module = load_healthcheck()
        total = 0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    status = module._status(int(entry.name))
                except OSError:
                    continue
                if int(entry.name) == self.proc.pid or status["PPid"] == str(self.proc.pid):
                    total += int(status["VmRSS"].split()[0]) * 1024
        return total

    def stop(self) -> float:
        """SIGTERM, as the kubelet sends it; the seconds it took to exit."""
        started = time.monotonic()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        code = self.proc.wait(timeout=120)
        assert code == 0, self.proc.stderr.read()
        return time.monotonic() - started


def signed_command(port: int, text: str, response_url: str) -> int:
    return slash_command(
        port, user="U1", text=text, response_url=response_url, trigger="t-deploy", secret="s3"
    )


@pytest.mark.server  # `acrbot serve` as the image runs it
def test_image_command_serves_the_kubernetes_config(tmp_path, fake_slack):
    served = Served(tmp_path, fake_slack)
    try:
        served.wait_healthy()
        assert served.healthz() == 200
        check = served.healthcheck()
        assert (check.returncode, check.stdout.strip()) == (0, "ok")
        # a command goes through the ack and the worker, with the production config
        assert signed_command(served.port, "whoami", fake_slack.response_url("w1")) == 200
        assert "U1" in fake_slack.wait_for("response_url:w1")[0]["text"]
        assert (served.data / "acrbot.db").exists()  # the database is where the volume is
        limit = quantity(container(HTTP)["resources"]["limits"]["memory"])
        assert served.rss_bytes() < limit / 2
        # the health check follows the worker: down (503) while it restarts, then up again
        module = load_healthcheck()
        os.kill(served.worker(), signal.SIGKILL)
        seen: list[str | None] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            any(p and "503" in p for p in seen) and seen[-1] is None
        ):
            seen.append(module.check(served.proc.pid, served.env))
            time.sleep(0.02)
        assert any(p and "503" in p for p in seen), seen
        assert seen[-1] is None
    finally:
        took = served.stop()
    assert took < pod_spec(one(HTTP, "Deployment"))["terminationGracePeriodSeconds"]
    gone = served.healthcheck()
    assert gone.returncode == 1 and "unhealthy" in gone.stdout


@pytest.mark.server  # `acrbot serve` as the image runs it
def test_image_healthcheck_in_socket_mode(tmp_path, fake_slack):
    from tests.support.fake_socket_mode import FakeSocketMode

    ws = FakeSocketMode().start()
    ws.attach(fake_slack)
    served = Served(tmp_path, fake_slack, app_token="xapp-test")
    try:
        ws.wait_connections(1, timeout=30)
        served.wait_healthy()
        with pytest.raises(ConnectionRefusedError):
            served.healthz()  # no HTTP server in Socket Mode: hence the exec probe
        worker = served.worker()
        os.kill(worker, signal.SIGSTOP)
        try:
            check = served.healthcheck()
            assert check.returncode == 1 and "worker process is not running" in check.stdout
        finally:
            os.kill(worker, signal.SIGCONT)
        assert served.healthcheck().returncode == 0
        os.kill(served.proc.pid, signal.SIGSTOP)  # a front that hangs is unhealthy too
        try:
            check = served.healthcheck()
            assert check.returncode == 1 and "acrbot serve" in check.stdout
        finally:
            os.kill(served.proc.pid, signal.SIGCONT)
        served.wait_healthy()
        ws.disconnect("refresh_requested")  # routine: the overlap keeps it healthy
        assert served.healthcheck().returncode == 0
        ws.outage()  # Slack unreachable: unhealthy once it lasts more than a few seconds
        time.sleep(1)
        assert served.healthcheck().returncode == 0
        check = wait_unhealthy(served, timeout=15)
        assert "no connection to Slack for" in check.stdout and "(last: dropped)" in check.stdout
        ws.outage(down=False)
        served.wait_healthy()
    finally:
        served.stop()
        ws.stop()


def wait_unhealthy(served: Served, *, timeout: float) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check = served.healthcheck()
        if check.returncode == 1:
            return check
        time.sleep(0.2)
    raise AssertionError("acrbot serve stayed healthy")


def test_healthcheck_reads_the_socket_mode_status(tmp_path, monkeypatch):
    module = load_healthcheck()
    monkeypatch.setattr(module.tempfile, "tempdir", str(tmp_path))
    now = 1_000_000.0
    assert "not written" in module.check_connection(7, now=now)
    path = module.status_path(7)

    def status(**fields):
        path.write_text(json.dumps({"written_wall": now - 1, "down_since_wall": None, **fields}))
        return module.check_connection(7, now=now)

    assert status() is None
    assert status(down_since_wall=now - 3, last_reason="refresh_requested") is None
    assert status(down_since_wall=now - 12, last_reason="dropped") == (
        "no connection to Slack for 12 s (last: dropped)"
    )
    assert status(stopped="Slack turned Socket Mode off") == (
        "no connection: Slack turned Socket Mode off"
    )
    assert status(written_wall=now - 60) == (
        "no connection: the Socket Mode status was last written 60 s ago"
    )


# -- Azure Container Apps on PostgreSQL (two replicas) -----------------------------------------


ARM_PG = DEPLOY / "azure" / "containerapp-postgresql.json"
PG_TEMPLATE = json.loads(ARM_PG.read_text())


def pg_app(socket_mode: bool = False) -> dict[str, Any]:
    app = arm_resource("Microsoft.App/containerApps", PG_TEMPLATE)
    return resolve(app, socket_mode=socket_mode, variables=PG_TEMPLATE["variables"])


@pytest.mark.parametrize("socket_mode", [False, True], ids=["http", "socket"])
def test_arm_postgresql_app_matches_the_container_apps_models(socket_mode):
    assert model_problems(pg_app(socket_mode), "ContainerApp") == []
    environment = arm_resource("Microsoft.App/managedEnvironments", PG_TEMPLATE)
    assert model_problems(environment, "ManagedEnvironment") == []


def test_arm_postgresql_two_replicas_entra_only_no_file_share():
    """containerapp-postgresql.json: two replicas, no Azure Files, a flexible server that takes
    Entra tokens only, whose administrator is the identity the app runs as (and that holds the
    registry roles), and a config that signs in with that identity's token."""
    from bot.slack import service

    app = pg_app()
    template = app["properties"]["template"]
    assert template["scale"] == {"minReplicas": 2, "maxReplicas": 2}
    assert template["terminationGracePeriodSeconds"] > service.STOP_WITHIN
    assert not [v for v in template["volumes"] if v["storageType"] == "AzureFile"]
    kinds = {r["type"] for r in arm_resources(PG_TEMPLATE)}
    assert not {k for k in kinds if "Storage" in k}
    identity = (
        "[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', "
        "parameters('identityName'))]"
    )
    assert app["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {identity: {}}}
    server = arm_resource("Microsoft.DBforPostgreSQL/flexibleServers", PG_TEMPLATE)
    assert server["properties"]["authConfig"]["passwordAuth"] == "Disabled"
    assert server["properties"]["authConfig"]["activeDirectoryAuth"] == "Enabled"
    admin = arm_resource("Microsoft.DBforPostgreSQL/flexibleServers/administrators", PG_TEMPLATE)
    principal = PG_TEMPLATE["outputs"]["principalId"]["value"]
    assert principal.removeprefix("[").removesuffix("]") in admin["name"]
    assert admin["properties"]["principalName"] == "[parameters('identityName')]"
    roles = arm_resource("Microsoft.Resources/deployments", PG_TEMPLATE)
    assert roles["properties"]["parameters"]["principalId"]["value"] == principal
    # DefaultAzureCredential picks the user-assigned identity by its client id, in both
    for c in (*template["initContainers"], *template["containers"]):
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert (
            "userAssignedIdentities" in env["AZURE_CLIENT_ID"]
            and "clientId" in env["AZURE_CLIENT_ID"]
        )
        assert not [m for m in c["volumeMounts"] if m["volumeName"] == "data"]
    # the generated acrbot.toml: the server's database, the identity's token, no password
    toml = PG_TEMPLATE["variables"]["generatedToml"]
    assert '\ndatabase = "postgresql://{4}@{5}:5432/{6}?sslmode=require"\n' in toml
    assert '\ndatabase_auth = "azure"\n' in toml
    assert not {n for n in PG_TEMPLATE["parameters"] if re.search("password", n, re.I)}
    readiness = next(
        p
        for p in pg_app()["properties"]["template"]["containers"][0]["probes"]
        if p["type"] == "Readiness"
    )
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < service.LISTEN_AFTER_TERM


def test_arm_sqlite_template_no_longer_recommended_for_production():
    description = TEMPLATE["metadata"]["description"]
    assert "Not for production" in description and "containerapp-postgresql.json" in description
