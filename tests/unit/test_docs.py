"""Docs stay in step with the code: a short README, every command and configuration key in
docs/, working help, and a docs site that builds in strict mode (a broken link fails)."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bot.core.commands import COMMAND_LIST, COMMANDS
from bot.core.config import ConfigError, from_mapping
from bot.core.grammar import parse

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
COMMANDS_PAGE = (DOCS / "commands.md").read_text()
CONFIGURATION_PAGE = (DOCS / "configuration.md").read_text()
# mkdocs-material prints an end-of-life notice on every build; it is not a warning of ours.
MKDOCS_ENV = {"NO_MKDOCS_2_WARNING": "1"}


def test_readme_opens_with_the_two_commands():
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make demo", "make test"]


def test_readme_fits_on_a_few_screens():
    assert len(README.splitlines()) <= 200


@pytest.mark.parametrize("spec", COMMAND_LIST, ids=lambda s: s.name)
@pytest.mark.parametrize("page", ["README.md", "docs/commands.md"])
def test_every_command_has_a_row(spec, page):
    text = README if page == "README.md" else COMMANDS_PAGE
    # docs/ writes a usage with `|` as <code>…&#124;…</code> (see the note in commands.md)
    row = rf"^\| (`{spec.name}[ `]|<code>{spec.name}[ <])"
    assert re.search(row, text, re.MULTILINE), f"{spec.name} in {page}"


@pytest.mark.parametrize("spec", COMMAND_LIST, ids=lambda s: s.name)
def test_every_example_parses_to_its_command(spec):
    assert parse(spec.example, COMMANDS).name == spec.name
    assert spec.summary and all(p.help for p in spec.params)


def test_help_command_shows_usage_arguments_and_example(bot):
    reply = bot.say("alice", "help delete")
    fields = dict(reply.fields)
    assert reply.text.startswith("delete: request deletion of a tag")
    assert fields["usage"] == (
        "delete IMAGE --reason TEXT [--manifest] [--registry R] [--break-glass]"
    )
    assert fields["example"] == 'delete baseimages/fedora:24 --reason "EOL"'
    assert fields["needs"] == "contributor; oncall or owner with --break-glass"
    assert bot.say("alice", "help tgas").text == "unknown command `tgas`. Did you mean `tags`?"


# --- every configuration key -------------------------------------------------------------

_REGISTRY = {"name": "r", "type": "oci-layout", "path": "r"}
_TYPES = {
    "oci-layout": {"path": "r"},
    "oci": {"url": "https://registry.example.com"},
    "acr": {"login_server": "r.azurecr.io", "subscription_id": "s", "resource_group": "g"},
}


def _known(data: dict) -> list[str]:
    """The keys the loader accepts where `data` puts an unknown one, read from its refusal
    (`… unknown key (known: a, b)`): the loader's own list, so a new key needs docs at once."""
    try:
        from_mapping(data, base=Path(tempfile.gettempdir()), environ={})
    except ConfigError as exc:
        found = re.search(r"\(known: ([^)]*)\)", str(exc))
        assert found, str(exc)
        return found.group(1).split(", ")
    raise AssertionError(f"{data} was accepted")


def config_keys() -> set[str]:
    """Every key of acrbot.toml, qualified by its table (`registry.url`, `audit.blob.prefix`)."""
    unknown = {"zz_unknown": 1}
    keys = set(_known(unknown))
    keys |= {"approvals.ttl"} | {
        f"approvals.{k}" for k in _known({"registry": [_REGISTRY], "approvals": unknown})
    }
    for kind, required in _TYPES.items():
        table = {"name": "r", "type": kind, **required, **unknown}
        keys |= {f"registry.{k}" for k in _known({"registry": [table]})}
    for table in ("audit", "slack", "notebook"):
        keys |= {f"{table}.{k}" for k in _known({"registry": [_REGISTRY], table: unknown})}
    blob = {"registry": [_REGISTRY], "audit": {"blob": unknown}}
    keys |= {f"audit.blob.{k}" for k in _known(blob)}
    keys |= {f"retention.{k}" for k in _known({"registry": [_REGISTRY], "retention": [unknown]})}
    keys |= {f"report.{k}" for k in _known({"registry": [_REGISTRY], "report": [unknown]})}
    rule = {"name": "r", "repos": ["*"], **unknown}
    keys |= {f"policy.{k}" for k in _known({"registry": [_REGISTRY], "policy": [rule]})}
    # a table is documented by its keys; groups and users are maps of names, rows of their own
    return keys - {
        "approvals",
        "registry",
        "audit",
        "slack",
        "notebook",
        "retention",
        "report",
        "policy",
    }


def test_config_keys_are_read_from_the_loader():
    keys = config_keys()
    assert {"database", "registry.url", "registry.read_rate", "audit.blob.prefix"} <= keys
    assert {"retention.keep", "approvals.purge", "slack.requests_channel", "users"} <= keys


@pytest.mark.parametrize("key", sorted(config_keys()))
def test_every_config_key_is_documented(key):
    assert re.search(rf"^\| `{re.escape(key)}` \|", CONFIGURATION_PAGE, re.MULTILINE), (
        f"{key}: add a row to docs/configuration.md's table of every key"
    )


# --- the site -----------------------------------------------------------------------------


def mkdocs_build(project: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` of the project at `project` (its mkdocs.yml and docs/)."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        env={**os.environ, **MKDOCS_ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = mkdocs_build(ROOT, out)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    return out


def test_docs_site_builds_in_strict_mode(site):
    pages = {p.parent.name or "index" for p in site.rglob("index.html")}
    expected = {p.stem for p in DOCS.glob("*.md")}
    assert expected <= pages | {"index"}, expected - pages


@pytest.fixture
def docs_copy(tmp_path) -> Path:
    """A copy of mkdocs.yml and docs/ to plant faults in."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    return tmp_path


@pytest.mark.slow  # each builds the site again (about 1 s)
@pytest.mark.parametrize(
    "planted, said",
    [
        ("[the purge page](purj.md)", "purj.md"),
        ("[keep](purge.md#no-such-anchor)", "no-such-anchor"),
        ("[layout](#no-such-heading)", "no-such-heading"),
    ],
    ids=["page", "anchor", "local-anchor"],
)
def test_docs_build_fails_on_a_broken_link(docs_copy, tmp_path, planted, said):
    page = docs_copy / "docs" / "commands.md"
    page.write_text(page.read_text() + f"\nSee {planted}.\n")
    built = mkdocs_build(docs_copy, tmp_path / "site")
    assert built.returncode != 0
    assert said in built.stderr


@pytest.mark.slow  # builds the site again (about 1 s)
def test_docs_build_fails_on_a_page_left_out_of_the_nav(docs_copy, tmp_path):
    (docs_copy / "docs" / "orphan.md").write_text("# Orphan\n")
    built = mkdocs_build(docs_copy, tmp_path / "site")
    assert built.returncode != 0
    assert "orphan.md" in built.stderr


@pytest.mark.slow  # builds the site again (about 1 s)
def test_docs_copy_builds_unchanged(docs_copy, tmp_path):
    """The planted faults above are what fails: the copy itself builds."""
    built = mkdocs_build(docs_copy, tmp_path / "site")
    assert built.returncode == 0, built.stderr


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.ids |= {value for name, value in attrs if name == "id" and value}


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("name", ["README.md", "CHANGELOG.md"])
def test_links_outside_the_site_reach_a_page_and_its_heading(site, name):
    """README.md and CHANGELOG.md are not in the site: their links into docs/ are checked here,
    anchors against the ids the build gave the headings."""
    links = [t for t in LINK.findall((ROOT / name).read_text()) if "://" not in t]
    assert links
    for target in links:
        path, _, anchor = target.partition("#")
        assert (ROOT / path).is_file(), f"{name}: {target}"
        if anchor:
            assert path.startswith("docs/"), f"{name}: {target}"
            stem = Path(path).stem
            html = site / ("" if stem == "index" else stem) / "index.html"
            ids = _Ids()
            ids.feed(html.read_text())
            assert anchor in ids.ids, f"{name}: {target}"
