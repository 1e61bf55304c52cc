"""The fake ARM's listUsages, as azure-mgmt-containerregistry reads it (GET …/listUsages):
the SDK parses its answer, and ARM refuses a caller without a valid token."""

from __future__ import annotations

import ssl

import httpx
from azure.mgmt.containerregistry import ContainerRegistryManagementClient

from tests.support.fake_acr import ARM_TOKEN


class _Token:
    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        return AccessToken(ARM_TOKEN, 2**31)


def test_list_usages_through_the_sdk(fake_acr):
    fake_acr.usages[0]["currentValue"] = 123
    arm = ContainerRegistryManagementClient(
        _Token(),
        fake_acr.subscription,
        base_url=fake_acr.url,
        connection_verify=fake_acr.ca_path,
        retry_total=0,
    )
    result = arm.registries.list_usages(fake_acr.resource_group, fake_acr.registry_name)
    size = {u.name: u for u in result.value}["Size"]
    assert (size.current_value, size.limit, size.unit) == (123, 10 * 1024**3, "Bytes")


def test_list_usages_needs_arm_s_token(fake_acr):
    path = (
        f"/subscriptions/{fake_acr.subscription}/resourceGroups/{fake_acr.resource_group}"
        f"/providers/Microsoft.ContainerRegistry/registries/{fake_acr.registry_name}/listUsages"
    )
    answer = httpx.get(
        fake_acr.url + path, verify=ssl.create_default_context(cafile=fake_acr.ca_path)
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "InvalidAuthenticationToken"
