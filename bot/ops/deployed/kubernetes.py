"""A Kubernetes cluster as a deployed-image source, through the official `kubernetes` client.

Reads every kind that runs an image, or will, or would on a rollback, at cluster scope, paged
(`limit`/`continue`; a 410 Gone for an expired continue token restarts that list), the kinds
concurrently. Replies are read as JSON (`_preload_content=False`): the client's model classes
cost ~10x the parse for thousands of pods, and only images and owners are needed here.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.core.config import DeployedConfig
from bot.core.deployed import Use
from bot.ops.deployed.errors import SourceUnreadable

PAGE = 500  # objects a list page asks for (kubectl's default chunk size)
RESTARTS = 3  # lists restarted after a 410 Gone before giving up

# (plural, API group class, method listing every namespace, resource for the RBAC fix)
KINDS: tuple[tuple[str, str, str], ...] = (
    ("pods", "CoreV1Api", "list_pod_for_all_namespaces"),
    ("replicasets", "AppsV1Api", "list_replica_set_for_all_namespaces"),
    ("deployments", "AppsV1Api", "list_deployment_for_all_namespaces"),
    ("statefulsets", "AppsV1Api", "list_stateful_set_for_all_namespaces"),
    ("daemonsets", "AppsV1Api", "list_daemon_set_for_all_namespaces"),
    ("jobs", "BatchV1Api", "list_job_for_all_namespaces"),
    ("cronjobs", "BatchV1Api", "list_cron_job_for_all_namespaces"),
)
_CONTAINERS = ("containers", "initContainers", "ephemeralContainers")
_STATUSES = ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
_KIND_NAME = {
    "replicasets": "ReplicaSet",
    "deployments": "Deployment",
    "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet",
    "jobs": "Job",
    "cronjobs": "CronJob",
}


class KubernetesSource:
    """One `[[deployed]] type = "kubernetes"`: a kubeconfig file (and context), or the
    in-cluster service account. The API client is built once and shared by the threads."""

    def __init__(self, config: DeployedConfig, *, api_client: Any = None) -> None:
        self.config, self.name = config, config.name
        self._client = api_client
        self._building = threading.Lock()

    def _api(self) -> Any:
        """The SDK client, built once (a warm-up thread and the first read may race)."""
        with self._building:
            if self._client is None:
                from kubernetes import client
                from kubernetes import config as kube_config

                configuration = client.Configuration()
                try:
                    if self.config.kubeconfig is None:
                        kube_config.load_incluster_config(client_configuration=configuration)
                    else:
                        kube_config.load_kube_config(
                            config_file=str(self.config.kubeconfig),
                            context=self.config.context,
                            client_configuration=configuration,
                        )
                except Exception as exc:  # the loaders raise ConfigException, OSError, yaml errors
                    raise SourceUnreadable(
                        f"cannot load its credentials: {str(exc)[:200]}",
                        fix="check deployed.kubeconfig and deployed.context (or run in a pod "
                        "with a service account)",
                    ) from None
                configuration.retries = 1
                configuration.connection_pool_maxsize = len(KINDS) + 1
                self._client = client.ApiClient(configuration)
        return self._client

    def list_kind(self, plural: str) -> list[dict]:
        """Every object of one kind, every page; restarts the list on 410 Gone."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        group, method = next((g, m) for p, g, m in KINDS if p == plural)
        api = getattr(client, group)(self._api())
        lister = getattr(api, method)
        for _ in range(RESTARTS + 1):
            items: list[dict] = []
            token = None
            try:
                while True:
                    kwargs: dict[str, Any] = {"limit": PAGE}
                    if token:
                        kwargs["_continue"] = token
                    response = lister(
                        _preload_content=False, _request_timeout=self.config.timeout, **kwargs
                    )
                    body = _json(response.data, plural)
                    items += body.get("items") or []
                    token = (body.get("metadata") or {}).get("continue")
                    if not token:
                        return items
            except ApiException as exc:
                if exc.status == 410:
                    continue  # the continue token expired: list again from the start
                raise _refused(exc.status, plural) from None
            except SourceUnreadable:
                raise
            except Exception as exc:  # urllib3: refused, reset, timeout, TLS
                raise SourceUnreadable(
                    f"{type(exc).__name__} listing {plural}",
                    fix="check that the API server in the kubeconfig is reachable from the bot",
                ) from None
        raise SourceUnreadable(
            f"the {plural} list kept expiring (410 Gone {RESTARTS + 1} times)",
            fix="retry; a very busy cluster may need a larger page",
        )

    def warm(self) -> None:
        """Build the client now (the import and set-up cost), without reading."""
        self._api()

    def read(self) -> list[Use]:
        """Every image the cluster runs, will run, or would run on a rollback."""
        plurals = [k[0] for k in KINDS]
        with ThreadPoolExecutor(max_workers=len(KINDS)) as pool:
            lists = dict(zip(plurals, pool.map(self.list_kind, plurals), strict=True))
        return uses_of(self.name, lists)

    def check(self) -> list[tuple[str, str | None]]:
        """(kind, None if it may be listed, else why not): for `acrbot doctor`. Credentials
        that cannot be loaded raise SourceUnreadable (one row, not one per kind)."""
        self._api()
        found = []
        for plural, _, _ in KINDS:
            try:
                self._first_page(plural)
                found.append((plural, None))
            except SourceUnreadable as exc:
                found.append((plural, f"{exc.message}: {exc.fix}"))
        return found

    def _first_page(self, plural: str) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        group, method = next((g, m) for p, g, m in KINDS if p == plural)
        try:
            response = getattr(getattr(client, group)(self._api()), method)(
                limit=1, _preload_content=False, _request_timeout=self.config.timeout
            )
        except ApiException as exc:
            raise _refused(exc.status, plural) from None
        except SourceUnreadable:
            raise
        except Exception as exc:
            raise SourceUnreadable(
                f"{type(exc).__name__} listing {plural}",
                fix="check that the API server in the kubeconfig is reachable from the bot",
            ) from None
        _json(response.data, plural)


def _json(data: bytes, plural: str) -> dict:
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("items", []), list | type(None)):
        raise SourceUnreadable(
            f"the {plural} list is not a Kubernetes list", fix="check the API server address"
        )
    return body


def _refused(status: int | None, plural: str) -> SourceUnreadable:
    if status == 401:
        return SourceUnreadable(
            f"401 listing {plural}", fix="the token was refused: renew the kubeconfig's credentials"
        )
    if status == 403:
        return SourceUnreadable(
            f"403 listing {plural}",
            fix=f"RBAC: list {plural} at cluster scope (deploy/kubernetes/rbac.yaml)",
        )
    return SourceUnreadable(f"HTTP {status} listing {plural}", fix="check the API server")


def _images(spec: dict | None) -> list[str]:
    spec = spec or {}
    return [
        c["image"]
        for key in _CONTAINERS
        for c in spec.get(key) or []
        if isinstance(c, dict) and isinstance(c.get("image"), str)
    ]


def _controller(meta: dict) -> tuple[str, str] | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("kind", "?"), ref.get("name", "?")
    return None


def uses_of(source: str, lists: dict[str, list[dict]]) -> list[Use]:
    """The uses in the listed objects: templates as they are, pods grouped by their
    controller (a Deployment's pods by the Deployment, through their ReplicaSet)."""
    uses: list[Use] = []
    rs_owner: dict[tuple[str, str], tuple[str, str]] = {}
    for plural, items in lists.items():
        if plural == "pods":
            continue
        kind = _KIND_NAME[plural]
        for obj in items:
            meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
            ns, name = meta.get("namespace"), meta.get("name", "?")
            if plural == "cronjobs":
                template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
                note = f"schedule {spec.get('schedule')}" if spec.get("schedule") else ""
            else:
                template = spec.get("template")
                note = ""
            if plural == "replicasets":
                owner = _controller(meta)
                if owner is not None:
                    rs_owner[(ns, name)] = owner
                note = "rollback" if not spec.get("replicas") else f"{spec['replicas']} replicas"
            for image in _images((template or {}).get("spec")):
                uses.append(Use(source, ns, kind, name, image, note))
    pods: Counter[tuple[str | None, str, str, str]] = Counter()
    for pod in lists.get("pods", []):
        meta, spec, status = (
            pod.get("metadata") or {},
            pod.get("spec") or {},
            pod.get("status") or {},
        )
        ns = meta.get("namespace")
        owner = _controller(meta)
        if owner is not None and owner[0] == "ReplicaSet" and (ns, owner[1]) in rs_owner:
            owner = rs_owner[(ns, owner[1])]
        kind, name = owner if owner is not None else ("Pod", meta.get("name", "?"))
        images = set(_images(spec))
        for key in _STATUSES:
            for st in status.get(key) or []:
                if isinstance(st, dict):
                    images.update(v for v in (st.get("imageID"), st.get("image")) if v)
        for image in images:
            pods[(ns, kind, name, image)] += 1
    for (ns, kind, name, image), n in pods.items():
        uses.append(Use(source, ns, kind, name, image, f"{n} pod{'' if n == 1 else 's'}"))
    return uses
