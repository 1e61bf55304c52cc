"""The `database` keys: a path or a postgresql:// URL, and how the server is logged in to;
each mistake is one line naming the key and the fix, and the password stays a secret."""

from __future__ import annotations

import pytest

from bot.core.config import from_mapping
from bot.core.errors import ConfigError

REG = [{"name": "demo", "type": "oci-layout", "path": "registry"}]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"database": "postgresql://u:pw@h/db"},
            "database: the URL holds a password; remove it",
        ),
        (
            {"database": "postgresql://h/db", "database_auth": "azure"},
            'database: with database_auth = "azure" the URL names the Entra user',
        ),
        ({"database": "postgresql://u@h/db", "database_auth": "kerberos"}, "database_auth:"),
        ({"database": "a.db", "database_auth": "azure"}, "database_auth: only for a PostgreSQL"),
        (
            {"database": "postgresql://u@h/db", "database_password_env": "NOPE"},
            "database_password_env: the environment variable NOPE is not set",
        ),
    ],
)
def test_database_keys_are_checked_at_load(tmp_path, data, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
        from_mapping({**data, "registry": REG}, base=tmp_path, environ={})


def test_database_password_is_not_in_the_config_repr(tmp_path):
    config = from_mapping(
        {"database": "postgresql://u@h/db", "database_password_env": "PW", "registry": REG},
        base=tmp_path,
        environ={"PW": "s3cret-db-pw"},
    )
    assert config.database.password == "s3cret-db-pw"
    assert "s3cret-db-pw" not in repr(config) and "s3cret-db-pw" not in str(config.database)
