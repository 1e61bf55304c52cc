"""Azure Container Apps as a deployed-image source, through azure-mgmt-appcontainers: every
active revision's containers (init containers too) of every app, and every Container Apps
job's template, in a subscription or one resource group.

One list of apps (paged by the SDK), then one revisions list per app (8 apps at a time) and one
list of jobs: the round trips grow with apps, never with replicas.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.core.config import DeployedConfig
from bot.core.deployed import Use
from bot.ops.deployed.errors import SourceUnreadable

CONCURRENCY = 8
RBAC_FIX = "give the bot's identity Reader on the subscription (or the resource group)"


class ContainerAppsSource:
    """One `[[deployed]] type = "containerapps"`. Signs in with DefaultAzureCredential unless
    a ``credential`` is given; ``base_url``/``connection_verify``/``retry_total`` reach the
    SDK client (another cloud, a private CA, tests)."""

    def __init__(
        self,
        config: DeployedConfig,
        *,
        credential: Any = None,
        base_url: str | None = None,
        **client_options: Any,
    ) -> None:
        self.config, self.name = config, config.name
        self._credential, self._base_url, self._options = credential, base_url, client_options
        self._client: Any = None
        self._building = threading.Lock()

    def _api(self) -> Any:
        """The SDK client, built once (a warm-up thread and the first read may race)."""
        with self._building:
            if self._client is None:
                from azure.mgmt.appcontainers import ContainerAppsAPIClient

                credential = self._credential
                if credential is None:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential()
                options = {"retry_total": 1, **self._options}
                if self._base_url:
                    options["base_url"] = self._base_url
                    options["credential_scopes"] = [f"{self._base_url.rstrip('/')}/.default"]
                assert self.config.subscription_id is not None
                self._client = ContainerAppsAPIClient(
                    credential, self.config.subscription_id, **options
                )
        return self._client

    def _call(self, what: str, fn: Any) -> Any:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

        try:
            return fn()
        except ClientAuthenticationError as exc:
            raise SourceUnreadable(
                f"{exc.status_code or 401} listing {what}"
                if getattr(exc, "status_code", None)
                else f"no Azure token for {what}",
                fix="check the bot's Azure identity (DefaultAzureCredential)",
            ) from None
        except HttpResponseError as exc:
            if exc.status_code == 403:
                raise SourceUnreadable(f"403 listing {what}", fix=RBAC_FIX) from None
            raise SourceUnreadable(
                f"HTTP {exc.status_code} listing {what}", fix="check the subscription id"
            ) from None
        except SourceUnreadable:
            raise
        except Exception as exc:  # ServiceRequestError: unreachable, TLS, a decode error
            raise SourceUnreadable(
                f"{type(exc).__name__} listing {what}", fix="check that ARM is reachable"
            ) from None

    def _apps(self) -> list[Any]:
        apps = self._api().container_apps
        rg = self.config.resource_group
        lister = (lambda: apps.list_by_resource_group(rg)) if rg else apps.list_by_subscription
        return self._call("container apps", lambda: list(lister()))

    def _jobs(self) -> list[Any]:
        jobs = self._api().jobs
        rg = self.config.resource_group
        lister = (lambda: jobs.list_by_resource_group(rg)) if rg else jobs.list_by_subscription
        return self._call("container apps jobs", lambda: list(lister()))

    def _revisions(self, app: Any) -> list[Use]:
        rg = _resource_group(app.id)
        revisions = self._call(
            f"revisions of {app.name}",
            lambda: list(self._api().container_apps_revisions.list_revisions(rg, app.name)),
        )
        uses = []
        for revision in revisions:
            props = revision.properties
            if props is None or not props.active:
                continue
            for image in _images(props.template):
                uses.append(
                    Use(
                        self.name, rg, "Container App", app.name, image, f"revision {revision.name}"
                    )
                )
        return uses

    def warm(self) -> None:
        """Build the client now (the import and set-up cost), without reading."""
        self._api()

    def read(self) -> list[Use]:
        apps = self._apps()
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            per_app = list(pool.map(self._revisions, apps))
            jobs = pool.submit(self._jobs).result()
        uses = [u for found in per_app for u in found]
        for job in jobs:
            template = job.properties.template if job.properties else None
            for image in _images(template):
                uses.append(
                    Use(self.name, _resource_group(job.id), "Container Apps job", job.name, image)
                )
        return uses

    def check(self) -> list[tuple[str, str | None]]:
        found = []
        for kind, fn in (("containerApps", self._apps), ("jobs", self._jobs)):
            try:
                fn()
                found.append((kind, None))
            except SourceUnreadable as exc:
                found.append((kind, f"{exc.message}: {exc.fix}"))
        return found


def _images(template: Any) -> list[str]:
    if template is None:
        return []
    return [
        c.image
        for group in (template.containers, template.init_containers)
        for c in group or []
        if c.image
    ]


def _resource_group(resource_id: str | None) -> str | None:
    parts = (resource_id or "").split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered else None
