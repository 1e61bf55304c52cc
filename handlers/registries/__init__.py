"""Registry backends: each module implements bot.core.registry.Registry for one kind of registry.

oci_layout.py  a directory of OCI image layouts on local disk (the demo, air-gapped copies)
oci.py         any registry speaking the OCI distribution API, over httpx (auth.py: Basic/Bearer)
acr.py         Azure Container Registry through the Azure SDKs (data plane and ARM)

BACKENDS maps each `[[registries]] type` to the factory that builds it from its configuration;
a new backend registers here. May import bot.core and bot.state only.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.core.config import RegistryConfig
from bot.core.registry import Registry
from bot.state.facts import FactCache

BackendFactory = Callable[[RegistryConfig, FactCache], Registry]


# Each backend is imported by its factory, when a registry of its type is configured: the oci
# backend brings httpx and urllib3 (~0.1 s of CPU), acr the Azure SDKs, and `acrbot run` pays
# only for the backends its configuration names (tests/unit/test_startup.py).


def _oci_layout(cfg: RegistryConfig, facts: FactCache) -> Registry:
    from handlers.registries.oci_layout import OciLayoutRegistry

    return OciLayoutRegistry(cfg.name, cfg.options["path"], login_server=cfg.login_server)


def _oci(cfg: RegistryConfig, facts: FactCache) -> Registry:
    from handlers.registries.oci import OciRegistry

    options = cfg.options
    return OciRegistry(
        cfg.name,
        options["url"],
        login_server=cfg.login_server,
        username=options.get("username"),
        password=cfg.secrets.get("password"),
        token=cfg.secrets.get("token"),
        token_realms=tuple(options.get("token_realms", ())),
        tag_delete=bool(options.get("tag_delete", False)),
        verify=str(options["ca_bundle"]) if "ca_bundle" in options else True,
        timeout=float(options.get("timeout", 10)),
        concurrency=int(options.get("concurrency", 16)),
        facts=facts,
    )


def _acr(cfg: RegistryConfig, facts: FactCache) -> Registry:
    from azure.identity import DefaultAzureCredential

    from handlers.registries.acr import CLOUDS, AcrRegistry

    options = cfg.options
    arm, authority, audience = CLOUDS[options.get("cloud", "public")]
    arm = options.get("arm_endpoint", arm)
    credential = DefaultAzureCredential(authority=options.get("authority", authority))
    verify = str(options["ca_bundle"]) if "ca_bundle" in options else True
    vault = None
    if "key_vault_url" in options:
        from azure.keyvault.secrets import SecretClient

        vault = SecretClient(options["key_vault_url"], credential, connection_verify=verify)
    return AcrRegistry(
        cfg.name,
        login_server=cfg.login_server or "",
        subscription_id=options["subscription_id"],
        resource_group=options["resource_group"],
        registry_name=options.get("resource_name", cfg.name),
        credential=credential,
        arm_endpoint=arm,
        audience=options.get("audience", audience),
        connection_verify=verify,
        key_vault=vault,
        key_vault_secret=options.get("key_vault_secret"),
        facts=facts,
        read_rate=options.get("read_rate"),
    )


BACKENDS: dict[str, BackendFactory] = {"oci-layout": _oci_layout, "oci": _oci, "acr": _acr}
# Whether a backend has an admin user (`rotate`, `admin`): what `help` asks every registry,
# answered from the configuration so that a deferred registry is not built for it
# (tests/unit/test_startup.py checks it against each backend's own `has_admin`).
HAS_ADMIN: dict[str, bool] = {"oci-layout": False, "oci": False, "acr": True}
