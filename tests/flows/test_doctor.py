"""`acrbot doctor`: a healthy demo set-up passes; each fault says what is wrong and the fix.

Everything is real: the demo's files, SQLite, a docker-registry behind htpasswd, the fake
Slack Web API (with the token's scopes in `x-oauth-scopes`), the ACR fake for the ARM rows.
"""

import contextlib
import io
import json
import os
import shutil
import sqlite3
import stat
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from bot import cli, doctor
from bot.core.config import RegistryConfig
from bot.demo import prepare, seed_registry
from bot.state.store import SCHEMA_VERSION, Store
from tests.support.helpers import closed_port

CHANNEL = "C0REQUESTS"


@pytest.fixture
def slack_env(monkeypatch, fake_slack):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s3")
    monkeypatch.setenv("SLACK_API_URL", fake_slack.api_url)
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    return fake_slack


@pytest.fixture
def demo(tmp_path) -> Path:
    """The demo's set-up (`acrbot demo`), with a requests channel for Slack."""
    config = prepare(tmp_path / "demo", fresh=True)
    path = Path(config.source)
    path.write_text(path.read_text() + f'\n[slack]\nrequests_channel = "{CHANNEL}"\n')
    return path


def doctor_says(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["doctor", *args])
    return code, out.getvalue()


def rows(output: str) -> dict[str, tuple[str, str, str | None]]:
    """{check: (mark, detail, fix)} from the table."""
    found: dict[str, tuple[str, str, str | None]] = {}
    last = None
    for line in output.splitlines()[1:-1]:
        if line.lstrip().startswith("fix: "):
            mark, detail, _ = found[last]
            found[last] = (mark, detail, line.split("fix: ", 1)[1])
            continue
        mark, rest = line[0], line[2:]
        name, detail = rest.split("  ", 1)
        last = name.strip()
        found[last] = (mark, detail.strip(), None)
    return found


def test_doctor_passes_a_healthy_demo(demo, slack_env):
    code, output = doctor_says("--config", str(demo))
    assert code == 0, output
    found = rows(output)
    database = demo.parent / "acrbot.db"
    assert found == {
        "config": ("✓", f"{demo} parses: registries demo (oci-layout)", None),
        "database": ("✓", f"{database} writable", None),
        "database schema": ("✓", f"version {SCHEMA_VERSION} (current)", None),
        "database WAL": ("✓", "journal_mode=wal", None),
        "registry demo": (
            "✓",
            "oci-layout: listed 6 repositories (first: baseimages/alpine)",
            None,
        ),
        "audit archive": ("–", "no [audit.blob] table: the audit stays in SQLite", None),
        "leases": ("✓", "sweep: free; archive: free; delivery: free", None),
        "undo snapshots": (
            "✓",
            "0 kept for the 7-day window: 0.0 MB stored (0.0 MB before compression)",
            None,
        ),
        "slack token": ("✓", "auth.test: bot acrbot (UBOT) in T (T0001)", None),
        "slack scopes": ("✓", "the token has all 7 scopes the bot uses", None),
        "slack requests channel": ("✓", f"the bot is a member of #platform ({CHANNEL})", None),
        "slack outbox": ("✓", "delivering: 0 waiting, 0 given up in the last week", None),
    }
    assert output.splitlines()[0] == f"acrbot doctor: {demo}"
    assert output.splitlines()[-1] == "All 12 checks passed."


def test_doctor_with_a_bad_token_says_invalid_auth_and_where_to_find_the_token(demo, slack_env):
    slack_env.errors["auth.test"] = "invalid_auth"
    code, output = doctor_says("--config", str(demo))
    assert code == 1
    assert rows(output)["slack token"] == (
        "✗",
        "auth.test: token rejected: invalid_auth (the token is not valid in any workspace)",
        "check SLACK_BOT_TOKEN: the Bot User OAuth Token (xoxb-…) on the app's OAuth & "
        "Permissions page",
    )
    assert output.splitlines()[-1] == "1 of 10 checks failed."  # the outbox row too


def test_doctor_names_missing_scopes_and_a_channel_the_bot_is_not_in(demo, slack_env):
    slack_env.scopes -= {"usergroups:read"}
    slack_env.leave(CHANNEL)
    code, output = doctor_says("--config", str(demo))
    assert code == 1
    found = rows(output)
    assert found["slack scopes"][:2] == ("✗", "the token lacks usergroups:read")
    assert found["slack scopes"][2].startswith("add them on the app's OAuth & Permissions page")
    assert found["slack requests channel"] == (
        "✗",
        f"the bot is not a member of #platform ({CHANNEL}): cards cannot be posted there",
        f"invite it: type `/invite @acrbot` in #platform ({CHANNEL})",
    )


def test_doctor_without_channels_read_says_which_scope_to_add(demo, slack_env):
    slack_env.scopes -= {"channels:read"}
    found = rows(doctor_says("--config", str(demo))[1])
    assert found["slack requests channel"][:2] == (
        "✗",
        f"conversations.info {CHANNEL}: missing_scope",
    )
    assert found["slack requests channel"][2].startswith("the token lacks channels:read")


def write_config(tmp_path: Path, registry: str, *, extra: str = "") -> Path:
    seed_registry(tmp_path / "registry")
    path = tmp_path / "acrbot.toml"
    path.write_text(
        'database = "acrbot.db"\n'
        '[[registry]]\nname = "demo"\ntype = "oci-layout"\npath = "registry"\n'
        f"[[registry]]\n{registry}\n{extra}"
    )
    Store(tmp_path / "acrbot.db", create=True).close()  # as `acrbot init` does
    return path


@pytest.mark.slow  # waits out a connection timeout
def test_doctor_with_a_registry_down_says_check_its_url(tmp_path, monkeypatch):
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    url = f"http://127.0.0.1:{closed_port()}"
    config = write_config(tmp_path, f'name = "harbor"\ntype = "oci"\nurl = "{url}"')
    code, output = doctor_says("--config", str(config))
    assert code == 1
    assert rows(output)["registry harbor"] == (
        "✗",
        f"harbor ({url}) is unreachable (connection refused); check the URL and that the "
        "registry is running",
        f"check registry[1].url ({url}): is the registry running, and can this host reach it "
        "(DNS, firewall, proxy)? For a private CA set registry[1].ca_bundle",
    )
    assert rows(output)["slack"] == ("–", "SLACK_BOT_TOKEN not set: Slack checks skipped", None)


@pytest.mark.parametrize(
    ("password", "mark", "fix"),
    [
        ("s3cret-pw", "✓", None),
        (
            "wrong",
            "✗",
            "the registry refused the credentials: check registry[1].username and the secret "
            "in the variable registry[1].password_env (or token_env) names",
        ),
    ],
    ids=["right", "wrong"],
)
def test_doctor_tries_the_registry_credentials(
    tmp_path, monkeypatch, distribution_basic, password, mark, fix
):
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.setenv("DOCTOR_REGISTRY_PW", password)
    distribution_basic.push("doctor/app", "v1")
    config = write_config(
        tmp_path,
        f'name = "dist"\ntype = "oci"\nurl = "{distribution_basic.url}"\nusername = "bot"\n'
        'password_env = "DOCTOR_REGISTRY_PW"',
    )
    code, output = doctor_says("--config", str(config))
    found = rows(output)["registry dist"]
    assert (code, found[0], found[2]) == (0 if mark == "✓" else 1, mark, fix)
    if mark == "✓":
        assert found[1].startswith("oci: listed ")
    else:
        assert found[1] == (
            "dist rejected the bot's credentials (401); check the registry's username and "
            "password_env/token_env in the config"
        )


def run_unprivileged(argv: list[str]) -> tuple[int, str]:
    """`cli.main(argv)` as an unprivileged user: root writes to any file, whatever its mode,
    so a forked child drops to `nobody` (everything it runs is imported before the fork)."""
    if os.geteuid() != 0:
        return doctor_says(*argv[1:])
    import bot.slack.checks  # noqa: F401  (imported here, not after the fork)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 99
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with os.fdopen(write, "w") as out, contextlib.redirect_stdout(out):
                code = cli.main(argv)
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


@pytest.fixture
def shared_dir():
    """A folder `nobody` can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="acrbot-doctor-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(folder)


def test_doctor_with_a_read_only_database_says_make_it_writable(shared_dir, monkeypatch):
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    config = write_config(shared_dir, 'name = "second"\ntype = "oci-layout"\npath = "registry"')
    Store(shared_dir / "acrbot.db", create=True).close()
    (shared_dir / "acrbot.db").chmod(0o444)
    shared_dir.chmod(0o555)
    code, output = run_unprivileged(["doctor", "--config", str(config)])
    assert code == 1, output
    found = rows(output)
    database = shared_dir / "acrbot.db"
    uid = 65534 if os.geteuid() == 0 else os.geteuid()
    assert found["database"] == (
        "✗",
        f"{database} is read-only (attempt to write a readonly database)",
        f"make {database} and its folder {shared_dir} writable by the user acrbot runs as "
        f"(uid {uid}): chown/chmod them, or in Kubernetes set fsGroup and mount the volume "
        "read-write; or point `database` in the config at a writable place",
    )
    assert found["database schema"][0] == "✓" and found["database WAL"][0] == "✓"


def test_doctor_finds_an_old_schema_and_wal_off(tmp_path, monkeypatch):
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    config = write_config(tmp_path, 'name = "second"\ntype = "oci-layout"\npath = "registry"')
    Store(tmp_path / "acrbot.db", create=True).close()
    conn = sqlite3.connect(tmp_path / "acrbot.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    conn.execute("PRAGMA journal_mode = delete")
    conn.close()
    found = rows(doctor_says("--config", str(config))[1])
    assert found["database schema"][:2] == (
        "✗",
        f"version {SCHEMA_VERSION - 1}; this acrbot migrates it to {SCHEMA_VERSION}",
    )
    assert found["database schema"][2] == (
        f"back up {tmp_path / 'acrbot.db'}, then start acrbot once (serve, or `acrbot roles list "
        f"--config {config}`): it migrates the database when it opens it"
    )
    assert found["database WAL"][:2] == ("✗", "journal_mode=delete, not wal")
    assert "not NFS, SMB or Azure Files" in found["database WAL"][2]


def test_doctor_without_a_configuration_says_how_to_give_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACRBOT_CONFIG", raising=False)
    code, output = doctor_says("--json")
    assert code == 1
    report = json.loads(output)
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"]] == ["config"]
    assert report["checks"][0]["fix"] == "pass --config FILE, or set ACRBOT_CONFIG"


def test_doctor_json_is_for_ci(demo, slack_env):
    slack_env.errors["auth.test"] = "invalid_auth"
    code, output = doctor_says("--config", str(demo), "--json")
    report = json.loads(output)
    assert code == 1 and report["ok"] is False
    token = next(c for c in report["checks"] if c["name"] == "slack token")
    assert token["status"] == "fail" and token["fix"].startswith("check SLACK_BOT_TOKEN")
    assert {c["status"] for c in report["checks"]} == {"ok", "fail", "skip"}


def test_doctor_checks_the_archive_and_its_backlog(tmp_path, monkeypatch, azurite):
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.setenv("DOCTOR_BLOB", azurite.connection_string)
    config = write_config(
        tmp_path,
        'name = "second"\ntype = "oci-layout"\npath = "registry"',
        extra='[audit.blob]\nconnection_string_env = "DOCTOR_BLOB"\ncontainer = "doctor"\n',
    )
    cli.main(["init", "--config", str(config)])
    cli.main(["roles", "grant", "alice", "reader", "--config", str(config)])  # an audit row
    found = rows(doctor_says("--config", str(config))[1])
    assert found["audit archive"][0] == "✓"
    assert found["audit backlog"] == ("✓", "0 audit rows not archived yet", None)


def test_doctor_with_the_archive_unreachable_counts_what_waits(tmp_path, monkeypatch):
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    account = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{closed_port()}/devstoreaccount1;"
    )
    monkeypatch.setenv("DOCTOR_BLOB", account)
    config = write_config(
        tmp_path,
        'name = "second"\ntype = "oci-layout"\npath = "registry"',
        extra='[audit.blob]\nconnection_string_env = "DOCTOR_BLOB"\n',
    )
    cli.main(["init", "--config", str(config)])
    cli.main(["roles", "grant", "alice", "reader", "--config", str(config)])
    found = rows(doctor_says("--config", str(config))[1])
    assert found["audit archive"][0] == "✗"
    assert found["audit archive"][2].startswith("check [audit.blob] account_url")
    assert found["audit backlog"] == (
        "✗",
        "1 audit rows wait for the archive",
        "they are shipped as soon as the archive is reachable: fix the row above",
    )


# -- acr: the ARM rows, against the HTTPS fake of ACR and ARM --------------------------------


def acr_config(fake_acr) -> RegistryConfig:
    return RegistryConfig(
        name="prod",
        type="acr",
        login_server=fake_acr.login_server,
        options={
            "subscription_id": fake_acr.subscription,
            "resource_group": fake_acr.resource_group,
        },
    )


def test_doctor_on_acr_reads_the_resource_and_tries_list_credentials(fake_acr, acr):
    fake_acr.push("team/app", "v1", "sha256:" + "a" * 64)
    checks = doctor.registry_checks(acr_config(fake_acr), 0, build=lambda cfg: acr)
    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("registry prod", "ok", "acr: listed 1 repositories (first: team/app)"),
        (
            "registry prod ARM",
            "ok",
            "read the registry resource (admin user enabled); Premium tier: purges at 30 "
            "deletions/s, scans at 150 reads/s",
        ),
        ("registry prod rotation", "ok", "the identity may list the admin credentials"),
    ]


def test_doctor_on_acr_says_which_role_rotation_needs(fake_acr, acr):
    prefix = f"/subscriptions/{fake_acr.subscription}/resourceGroups/{fake_acr.resource_group}"
    fake_acr.throttle(status=403, method="POST", path_prefix=prefix, times=None)
    checks = doctor.registry_checks(acr_config(fake_acr), 0, build=lambda cfg: acr)
    rotation = checks[-1]
    assert (rotation.name, rotation.status) == ("registry prod rotation", "fail")
    assert rotation.detail.startswith("prod denied the bot access to the admin credentials")
    assert rotation.fix.startswith("rotation needs listCredentials and regenerateCredential")


def test_doctor_on_acr_with_admin_disabled_has_nothing_to_rotate(fake_acr, acr):
    fake_acr.state.admin_enabled = False
    checks = doctor.registry_checks(acr_config(fake_acr), 0, build=lambda cfg: acr)
    assert (checks[-1].status, checks[-1].detail) == (
        "skip",
        "admin user disabled: nothing to rotate (`admin enable` first)",
    )


def test_doctor_says_how_to_create_a_missing_database(tmp_path, monkeypatch):
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    config = write_config(tmp_path, 'name = "second"\ntype = "oci-layout"\npath = "registry"')
    (tmp_path / "acrbot.db").unlink()
    code, output = doctor_says("--config", str(config))
    assert code == 1
    assert rows(output)["database"] == (
        "✗",
        f"{tmp_path / 'acrbot.db'} does not exist",
        f"if the `database` key is right, create it: acrbot init --config {config} (the deploy "
        "kit's init container does); otherwise fix the key",
    )


def test_doctor_fix_quotes_a_config_path_for_the_shell(tmp_path, monkeypatch):
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    folder = tmp_path / "my configs"
    folder.mkdir()
    config = write_config(folder, 'name = "second"\ntype = "oci-layout"\npath = "registry"')
    (folder / "acrbot.db").unlink()
    _, output = doctor_says("--config", str(config))
    assert rows(output)["database"][2] == (
        f"if the `database` key is right, create it: acrbot init --config '{config}' (the "
        "deploy kit's init container does); otherwise fix the key"
    )


def test_doctor_fix_reads_the_status_the_registry_answered_not_its_wording():
    """A 429 is known by RegistryError.status (data), not by "(429)" in the message."""
    from bot.core.errors import RegistryError

    cfg = RegistryConfig(name="dist", type="oci", options={"url": "https://r.example"})
    throttled = RegistryError("dist is busy; try again later", status=429, retry_after=3.0)
    assert doctor.registry_fix(cfg, 0, throttled) == (
        "the registry is throttling: run the doctor again in a minute"
    )
    refused = RegistryError("dist refused the credentials", status=401)
    assert doctor.registry_fix(cfg, 0, refused).startswith("the registry refused the credentials")


def test_doctor_says_who_holds_each_lease(tmp_path, clock):
    """With two replicas, doctor names the process running each singleton, and one whose
    holder stopped renewing."""
    from bot.doctor import lease_checks
    from bot.state.leases import ARCHIVE, SWEEP, TTL, Leases
    from bot.state.store import Store
    from tests.support.fixtures import make_config

    config = make_config(tmp_path)
    store = Store(config.database)
    Leases(store, owner=lambda: "pod-a:7:1", clock=clock).take(SWEEP)
    Leases(store, owner=lambda: "pod-b:9:1", clock=clock).take(ARCHIVE)
    store.close()
    [check] = lease_checks(config, now=clock() + timedelta(seconds=5))
    assert check.detail == (
        "sweep: pod-a:7:1 (for 15 s more unless renewed); "
        "archive: pod-b:9:1 (for 15 s more unless renewed); delivery: free"
    )
    [check] = lease_checks(config, now=clock() + TTL + timedelta(seconds=40))
    assert check.detail.startswith("sweep: expired 40 s ago (pod-a:7:1, gone)")
