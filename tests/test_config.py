"""Configuration: defaults, overrides, and one clear message naming the bad key."""

from datetime import timedelta

import pytest

from bot.config import from_mapping, load
from bot.errors import ConfigError

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
    reg = {**REG, "password_env": "REG_PASSWORD"}
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
            {"registry": [{**REG, "password_env": "NOPE"}]},
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

    config = load(Path(__file__).parent.parent / "deploy" / "acrbot.example.toml")
    assert config.approvals.required_for("delete_manifest") == 2
