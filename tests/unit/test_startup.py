"""`acrbot run` stays quick: what it imports, checked in a fresh interpreter.

Scripts call `acrbot run` in loops, and a heavy import costs every call: pandas (which
sqlite-utils imports when it is installed) ~0.4 s of CPU, the Azure SDKs, Slack's, httpx and
prometheus-client ~0.1 s each. Timing is noisy on a shared machine, so these tests check the
cause, not the clock: which modules a fresh process holds afterwards. bench/startup.py measures
the time.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot import demo

# Modules that `help` on the demo's oci-layout registry has no use for.
HEAVY = (
    "pandas",
    "numpy",
    "azure",
    "slack_sdk",
    "slack_bolt",
    "IPython",
    "tqdm",
    "httpx",
    "urllib3",
    "prometheus_client",
    "croniter",
    "matplotlib",
)

PROBE = """
import json, sys
{code}
heavy = {heavy!r}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))))
"""


def loaded_after(code: str, *, cwd: Path | None = None) -> list[str]:
    """The heavy top-level packages a fresh interpreter holds after running ``code``."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_startup_heavy_packages_are_installed():
    """The checks below mean something only where these are installed (the test extra)."""
    import importlib.util

    missing = [
        name
        for name in ("pandas", "numpy", "azure.identity", "slack_sdk", "httpx", "tqdm")
        if importlib.util.find_spec(name) is None
    ]
    assert missing == []


def test_startup_import_cli_pulls_no_heavy_package():
    assert loaded_after("import bot.cli") == []


def test_startup_slack_and_notebook_doors_import_no_matplotlib(tmp_path):
    """The chart's library (~0.3 s) is imported where a chart is drawn, never by the acking
    process, the worker's start, a notebook's import or a console `report`."""
    demo.prepare(tmp_path / "demo", fresh=True)
    doors = "import bot.slack.service, bot.slack.worker, bot.slack.perform, bot.notebook\n"
    report = (
        "from bot.cli import main\n"
        f"code = main(['run', '--config', {str(tmp_path / 'demo' / 'acrbot.toml')!r}, "
        "'--user', 'alice', 'report'])\n"
        "assert code == 0, code"
    )
    assert "matplotlib" not in loaded_after(doors + report, cwd=tmp_path)


def test_startup_run_help_pulls_no_heavy_package(tmp_path):
    demo.prepare(tmp_path / "demo", fresh=True)
    code = (
        "from bot.cli import main\n"
        f"code = main(['run', '--config', {str(tmp_path / 'demo' / 'acrbot.toml')!r}, "
        "'--user', 'alice', 'help'])\n"
        "assert code == 0, code"
    )
    assert loaded_after(code, cwd=tmp_path) == []


def test_startup_store_leaves_pandas_importable(tmp_path):
    """sqlite-utils is imported without pandas, but pandas still imports afterwards (to_df)."""
    code = (
        "import bot.state.store, sqlite_utils.db\n"
        "assert sqlite_utils.db.pd is None\n"
        "import pandas\n"
        "assert pandas.DataFrame({'a': [1]}).shape == (1, 1)"
    )
    assert "pandas" in loaded_after(code)


@pytest.mark.parametrize(("first", "attribute"), [("pandas", "pd"), ("numpy", "np")])
def test_startup_store_after_pandas_keeps_it(first, attribute):
    """A notebook that imported pandas (or numpy) first: sqlite-utils sees it, as before."""
    code = (
        f"import {first}\n"
        "import bot.state.store, sqlite_utils.db\n"
        f"assert sqlite_utils.db.{attribute} is sys.modules[{first!r}]"
    )
    assert first in loaded_after(code)


ACR_AND_OCI = """\
database = "acrbot.db"
[[registry]]
name = "prod"
type = "acr"
login_server = "prod.azurecr.io"
subscription_id = "00000000-0000-0000-0000-000000000000"
resource_group = "rg"
[[registry]]
name = "hub"
type = "oci"
url = "https://registry.example.com"
"""


def test_startup_run_help_builds_no_registry_client(tmp_path):
    """With acr and oci registries configured, `help` and `requests` need none of them: the
    Azure SDKs and httpx stay unimported (they cost ~0.5 s of CPU)."""
    from bot.state.store import Store

    config = tmp_path / "acrbot.toml"
    config.write_text(ACR_AND_OCI)
    Store(tmp_path / "acrbot.db", create=True).close()
    code = (
        "from bot.cli import main\n"
        f"for line in ('help', 'requests', 'whoami'):\n"
        f"    main(['run', '--config', {str(config)!r}, '--user', 'alice', line])"
    )
    assert loaded_after(code, cwd=tmp_path) == []


def test_startup_deferred_registry_builds_on_first_use(tmp_path):
    """`acrbot run` defers building registries; a command that needs one builds it (once)."""
    from bot.app import DeferredRegistry
    from bot.core.config import load

    demo.prepare(tmp_path / "demo", fresh=True)
    config = load(tmp_path / "demo" / "acrbot.toml")
    registry = DeferredRegistry(config.registries[0], facts=None)
    assert (registry.name, registry.kind, registry.has_admin) == ("demo", "oci-layout", False)
    assert repr(registry) == "DeferredRegistry('demo', built=False)"
    assert "baseimages/alpine" in registry.repositories()
    assert repr(registry) == "DeferredRegistry('demo', built=True)"
    assert registry.login_server == "demo.registry.local"


def test_startup_has_admin_table_matches_the_backends():
    from handlers.registries import BACKENDS, HAS_ADMIN
    from handlers.registries.acr import AcrRegistry
    from handlers.registries.oci import OciRegistry
    from handlers.registries.oci_layout import OciLayoutRegistry

    classes = {"acr": AcrRegistry, "oci": OciRegistry, "oci-layout": OciLayoutRegistry}
    assert set(HAS_ADMIN) == set(BACKENDS) == set(classes)
    assert {kind: cls.has_admin for kind, cls in classes.items()} == HAS_ADMIN
    assert {kind: cls.kind for kind, cls in classes.items()} == {k: k for k in classes}
