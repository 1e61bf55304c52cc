"""Configuration: defaults, overrides, and one clear message naming the bad key."""

from datetime import timedelta

import pytest

from bot.core.config import from_mapping, load
from bot.core.errors import ConfigError

REG = {"name": "r", "type": "oci-layout", "path": "reg"}


def test_defaults(tmp_path):
    config = from_mapping({"registry": [REG]}, base=tmp_path, environ={})
    assert config.database == tmp_path / "acrbot.db"
    assert config.approvals.ttl == timedelta(hours=24)
    assert config.approvals.required_for("delete") == 1
    assert config.registries[0].options["path"] == tmp_path / "reg"


def test_durations_and_quorums(tmp_path):
    config = from_mapping(
        {"registry": [REG], "approvals": {"ttl": "1d12h", "delete": 2}}, base=tmp_path, environ={}
    )
    assert config.approvals.ttl == timedelta(days=1, hours=12)
    assert config.approvals.required_for("delete_manifest") == 2


def test_secrets_come_from_the_environment(tmp_path):
    reg = {
        "name": "r",
        "type": "oci",
        "url": "http://127.0.0.1:5000",
        "username": "bot",
        "password_env": "REG_PASSWORD",
    }
    config = from_mapping({"registry": [reg]}, base=tmp_path, environ={"REG_PASSWORD": "s3cret"})
    assert config.registries[0].secrets == {"password": "s3cret"}
    assert "s3cret" not in repr(config.registries[0].options)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "registry: at least one [[registry]] table is required"),
        ({"registry": [REG], "colour": 1}, "colour: unknown key"),
        (
            {"registry": [{**REG, "type": "ftp"}]},
            "registry[0].type: expected one of oci-layout, oci, acr, got 'ftp'",
        ),
        ({"registry": [{"name": "o", "type": "oci"}]}, "registry[0].url: required for type 'oci'"),
        (
            {"registry": [{"name": "o", "type": "oci", "url": "ftp://x"}]},
            "registry[0].url: expected an http:// or https:// URL",
        ),
        ({"registry": [{**REG, "name": "bad name"}]}, "registry[0].name: expected a name"),
        ({"registry": [REG, REG]}, "registry[1].name: 'r' is used twice"),
        (
            {
                "registry": [
                    {
                        "name": "o",
                        "type": "oci",
                        "url": "http://127.0.0.1:1",
                        "password_env": "NOPE",
                    }
                ]
            },
            "registry[0].password_env: environment variable 'NOPE' is not set",
        ),
        (
            {"registry": [REG], "approvals": {"ttl": "soon"}},
            'approvals.ttl: expected a duration such as "24h"',
        ),
        (
            {"registry": [REG], "approvals": {"delete": 0}},
            "approvals.delete: expected a number of approvals from 1 to 10",
        ),
        ({"registry": [REG], "approvals": {"purges": 1}}, "approvals.purges: unknown action"),
        ({"registry": [REG], "groups": {"g": "alice"}}, "groups.g: expected a list of user ids"),
    ],
)
def test_bad_config_names_the_key(tmp_path, data, message):
    with pytest.raises(ConfigError) as exc:
        from_mapping(data, base=tmp_path, environ={})
    assert str(exc.value).startswith(message)


def test_load_reports_toml_errors_with_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("database = \n")
    with pytest.raises(ConfigError, match=r"c.toml: not valid TOML"):
        load(path)


def test_load_from_the_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text('[[registry]]\nname = "r"\ntype = "oci-layout"\npath = "x"\n')
    monkeypatch.setenv("ACRBOT_CONFIG", str(path))
    assert load().registries[0].name == "r"


def test_deploy_example_config_loads():
    from pathlib import Path

    config = load(Path(__file__).parents[2] / "deploy" / "acrbot.example.toml")
    assert config.approvals.required_for("delete_manifest") == 2


OCI = {"name": "h", "type": "oci", "url": "https://harbor.example.com"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {**OCI, "tag_delet": True},
            "registry[0].tag_delet: unknown key; did you mean tag_delete? (known: ",
        ),
        (
            {**OCI, "ca_bundel": "x.pem"},
            "registry[0].ca_bundel: unknown key; did you mean ca_bundle?",
        ),
        (
            {
                "name": "p",
                "type": "acr",
                "login_sever": "p.azurecr.io",
                "subscription_id": "s",
                "resource_group": "g",
            },
            "registry[0].login_sever: unknown key; did you mean login_server?",
        ),
        (
            {**OCI, "password": "hunter2"},
            "registry[0].password: secrets are never written in the file; put it in an "
            'environment variable and name it: password_env = "VARIABLE"',
        ),
        ({**OCI, "path": "x"}, "registry[0].path: unknown key (known: "),
    ],
)
def test_every_registry_key_is_known_and_no_secret_is_written(tmp_path, table, message):
    with pytest.raises(ConfigError) as exc:
        from_mapping({"registry": [table]}, base=tmp_path, environ={})
    assert str(exc.value).startswith(message), str(exc.value)
    assert "hunter2" not in str(exc.value)


def test_credentials_never_cross_plain_http_to_another_host(tmp_path):
    remote = {
        "name": "h",
        "type": "oci",
        "url": "http://harbor.example.com",
        "username": "bot",
        "password_env": "PW",
    }
    env = {"PW": "s3cret"}
    with pytest.raises(ConfigError) as exc:
        from_mapping({"registry": [remote]}, base=tmp_path, environ=env)
    assert str(exc.value).startswith(
        "registry[0].url: http://harbor.example.com is plain HTTP to another host"
    )
    token = {"name": "h", "type": "oci", "url": "http://harbor.lan:5000", "token_env": "PW"}
    with pytest.raises(ConfigError, match=r'plain_http_hosts = \["harbor.lan:5000"\]'):
        from_mapping({"registry": [token]}, base=tmp_path, environ=env)
    listed = from_mapping(
        {"registry": [token], "plain_http_hosts": ["harbor.lan:5000"]}, base=tmp_path, environ=env
    )
    assert listed.registries[0].secrets == {"token": "s3cret"}
    local = {**remote, "url": "http://127.0.0.1:5000"}
    assert from_mapping({"registry": [local]}, base=tmp_path, environ=env).registries
    anonymous = {"name": "h", "type": "oci", "url": "http://mirror.example.com"}
    assert from_mapping({"registry": [anonymous]}, base=tmp_path, environ={}).registries


ACR = {
    "name": "p",
    "type": "acr",
    "login_server": "p.azurecr.io",
    "subscription_id": "s",
    "resource_group": "g",
}


def test_acr_read_rate_is_a_rate_and_only_for_acr(tmp_path):
    config = from_mapping(
        {"registry": [{**ACR, "read_rate": "2700/min", "write_rate": 4}]},
        base=tmp_path,
        environ={},
    )
    assert config.registries[0].options["read_rate"] == 45.0
    assert config.registries[0].options["write_rate"] == 4.0
    with pytest.raises(ConfigError) as exc:
        from_mapping({"registry": [{**ACR, "read_rate": "fast"}]}, base=tmp_path, environ={})
    assert str(exc.value) == (
        'registry[0].read_rate: expected a rate such as "500/min" or "8/s", got \'fast\''
    )
    with pytest.raises(ConfigError, match=r"registry\[0\].read_rate: unknown key"):
        from_mapping({"registry": [{**OCI, "read_rate": 5}]}, base=tmp_path, environ={})


def test_token_realms_are_https_urls(tmp_path):
    table = {**OCI, "token_realms": ["http://auth.example.com"]}
    with pytest.raises(ConfigError) as exc:
        from_mapping({"registry": [table]}, base=tmp_path, environ={})
    assert str(exc.value).startswith("registry[0].token_realms: expected a list of https:// URLs")
    table = {**OCI, "token_realms": ["https://auth.docker.io"]}
    config = from_mapping({"registry": [table]}, base=tmp_path, environ={})
    assert config.registries[0].options["token_realms"] == ("https://auth.docker.io",)
