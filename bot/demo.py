"""The offline demo: an OCI-layout registry on disk, a role table, and a config to match.

`acrbot demo` (or `make demo`) seeds a directory once and opens the console as alice, so a new
user can play a whole approval flow without Slack or Azure.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from bot.core.config import Config, load
from bot.core.policy import Grant, Role
from bot.state.roles import RoleTable
from bot.state.store import Store
from handlers.registries.oci_layout import OciLayoutRegistry, make_layer

DEMO_DIR = Path(".acrbot-demo")
LOGIN_SERVER = "demo.registry.local"

# repository -> [(tags sharing one image, created)]: some tags share a digest, some do not.
IMAGES: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "baseimages/alpine": [
        (("3.19",), "2023-12-07T00:00:00Z"),
        (("3.20", "latest"), "2024-05-22T00:00:00Z"),
    ],
    "baseimages/fedora": [(("24",), "2016-06-21T00:00:00Z"), (("latest",), "2024-04-23T00:00:00Z")],
    "testimages/nginx": [(("1.25", "latest"), "2024-02-14T00:00:00Z")],
    "testimages/wordpress": [
        (("6.4",), "2023-11-07T00:00:00Z"),
        (("6.5", "latest"), "2024-04-02T00:00:00Z"),
    ],
    "webserver/nginx": [(("1.24",), "2023-04-11T00:00:00Z")],
    "webservers/nginx": [(("1.26", "stable"), "2024-04-23T00:00:00Z")],
}
USERS: dict[str, Role] = {
    "alice": Role.CONTRIBUTOR,
    "bob": Role.OWNER,
    "erin": Role.OWNER,
    "carol": Role.READER,
    "dave": Role.ONCALL,
}

CONFIG = f"""\
# acr-chatops demo configuration (written by `acrbot demo`).
database = "acrbot.db"

[approvals]
ttl = "24h"
delete = 1
delete_manifest = 1

[[registry]]
name = "demo"
type = "oci-layout"
path = "registry"
login_server = "{LOGIN_SERVER}"
"""


def seed_registry(root: Path) -> OciLayoutRegistry:
    registry = OciLayoutRegistry("demo", root, login_server=LOGIN_SERVER)
    for repository, images in IMAGES.items():
        for tags, created in images:
            config = {
                "architecture": "amd64",
                "os": "linux",
                "created": created,
                "config": {"Labels": {"demo.image": f"{repository}:{tags[0]}"}},
                "rootfs": {"type": "layers", "diff_ids": []},
            }
            release = f"etc/{repository.replace('/', '-')}-release"
            layer = make_layer({release: f"{repository} {tags[0]}\n".encode()})
            for tag in tags:
                registry.push(repository, tag, config=config, layers=[layer])
    return registry


def prepare(directory: Path = DEMO_DIR, *, fresh: bool = False) -> Config:
    """Seed ``directory`` unless it already holds a demo; return its loaded configuration."""
    config_path = directory / "acrbot.toml"
    if fresh and directory.exists():
        shutil.rmtree(directory)
    if not config_path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        seed_registry(directory / "registry")
        config_path.write_text(CONFIG, encoding="utf-8")
        config = load(config_path)
        store = Store(config.database, create=True)
        table = RoleTable(store)
        now = datetime.now(UTC)
        for user, role in USERS.items():
            table.grant(Grant(principal=user, role=role), by="acrbot demo", at=now)
        store.close()
    return load(config_path)
