"""bot.notebook's Python API: `Acr`, its results, and the audit naming the notebook door."""

import ast
import re
import sys
import threading
import time
from pathlib import Path

import pytest

from bot.core.errors import ConfigError
from bot.core.replies import Reply
from bot.kernel.dispatch import CONSOLE, NOTEBOOK, SLACK, door_action, split_door
from bot.notebook import Acr, CommandFailed, Result, WaitTimeout, command_line
from tests.support.fixtures import make_config


@pytest.fixture
def acr(bot):
    """alice in a notebook, sharing the test bot's dispatcher (its clock and registry)."""
    return Acr(user="alice", dispatcher=bot.dispatcher)


def as_user(bot, user, **kwargs):
    return Acr(user=user, dispatcher=bot.dispatcher, **kwargs)


# -- commands go through the Dispatcher, and the audit says so -----------------------------


def test_acr_runs_a_command_line_as_the_console_would(acr, bot):
    result = acr("tags baseimages/fedora")
    console = bot.say("alice", "tags baseimages/fedora")
    assert result.ok and result.user == "alice"
    assert result.as_json() == console.as_json()  # what `acrbot run --json` prints
    assert [t["name"] for t in result.data["tags"]] == ["latest", "24"]


def test_acr_audits_as_the_notebook_door_without_touching_console_rows(acr, bot):
    acr.tags("baseimages/fedora")
    acr("delete baseimages/fedora:24 --reason")  # refused, and not parsed
    bot.say("alice", "tags baseimages/fedora")
    rows = [(e.actor, e.action, e.outcome) for e in bot.ctx.audit.entries(last=3)]
    assert rows == [
        ("alice", "tags@notebook", "ok"),
        ("alice", "(unparsed)@notebook", "refused"),
        ("alice", "tags", "ok"),
    ]
    assert bot.ctx.audit.verify().ok


@pytest.mark.parametrize(
    ("action", "parts"),
    [
        ("delete", ("delete", CONSOLE)),
        ("delete@notebook", ("delete", NOTEBOOK)),
        ("approve@slack", ("approve", SLACK)),
        ("(unparsed)@notebook", ("(unparsed)", NOTEBOOK)),
        ("request.create", ("request.create", CONSOLE)),
        ("x@elsewhere", ("x@elsewhere", CONSOLE)),
    ],
)
def test_split_door_reads_the_action_back(action, parts):
    assert split_door(action) == parts
    if parts[1] != CONSOLE or "@" not in action:
        assert door_action(*parts) == action


def test_dispatcher_refuses_an_unknown_door(bot):
    with pytest.raises(ValueError, match="unknown door 'fax'"):
        bot.dispatcher.handle("help", user="alice", door="fax")


# -- methods are command lines built from the command table --------------------------------


@pytest.mark.parametrize(
    ("name", "args", "options", "line"),
    [
        ("tags", ("baseimages/fedora",), {"top": 50}, "tags baseimages/fedora --top 50"),
        ("tags", (), {"repository": "a/b", "orderby": "name"}, "tags a/b --orderby name"),
        ("repos", (), {}, "repos"),
        ("repos", ("demo",), {"filter": "base*"}, "repos demo --filter 'base*'"),
        (
            "delete",
            ("baseimages/fedora:24",),
            {"reason": "EOL since 2017", "manifest": True},
            "delete baseimages/fedora:24 --reason 'EOL since 2017' --manifest",
        ),
        ("delete", ("r:t",), {"reason": "it’s old"}, "delete r:t --reason 'it'\"'\"'s old'"),
        ("requests", (), {"mine": True, "all": False}, "requests --mine"),
        ("approve", (12,), {"reason": None}, "approve 12"),
        (
            "purge",
            (),
            {"filter": ["a/*:^pr-", "b:.*"], "ago": "30d", "dry_run": True},
            "purge --filter 'a/*:^pr-' --filter 'b:.*' --ago 30d --dry-run",
        ),
    ],
)
def test_command_line_builds_what_a_person_would_type(name, args, options, line):
    assert command_line(name, *args, **options) == line


@pytest.mark.parametrize(
    ("name", "args", "options", "message"),
    [
        ("tags", ("a", "b"), {}, "tags() takes REPO positionally, not 2 arguments"),
        ("tags", (), {"colour": "red"}, "tags() got an unexpected keyword argument 'colour'"),
        ("tags", ("a",), {"repository": "b"}, "tags() got multiple values for argument"),
        ("delete", ("a:b",), {"manifest": "yes"}, "delete(): manifest is a flag"),
        ("tags", (True,), {}, "True is not a command argument"),
    ],
)
def test_command_line_refuses_python_mistakes(name, args, options, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        command_line(name, *args, **options)


def test_every_command_is_a_method_with_its_help(acr):
    assert {"tags", "show", "delete", "requests", "purge"} <= set(dir(acr))
    assert acr.tags.__doc__.startswith("list the tags of a repository.")
    with pytest.raises(AttributeError, match="no attribute or command 'tag'"):
        acr.tag("baseimages/fedora")


def test_a_missing_argument_gets_the_grammars_own_message(acr):
    result = acr.delete("baseimages/fedora:24")
    assert not result.ok
    assert result.text == (
        "missing --reason\nUsage: delete IMAGE --reason TEXT [--manifest] [--registry R] "
        "[--break-glass]"
    )


# -- errors are data, unless asked for -----------------------------------------------------


def test_a_refusal_is_a_result_and_raise_errors_raises_it(bot):
    carol = as_user(bot, "carol")
    refused = carol.delete("baseimages/fedora:24", reason="x")
    message = "`delete` needs contributor on demo/baseimages/fedora; you have reader on */*."
    assert (refused.ok, refused.text) == (False, message)
    with pytest.raises(CommandFailed, match="needs contributor") as raised:
        as_user(bot, "carol", raise_errors=True).delete("baseimages/fedora:24", reason="x")
    assert raised.value.result.text == message


class Broken:
    """The demo registry, except that listing tags hits a bug."""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.kind, self.login_server = inner.name, inner.kind, inner.login_server
        self.can_untag = inner.can_untag

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def list_tags(self, *args, **kwargs):
        raise RuntimeError("bug in the backend")


def test_an_internal_error_is_one_line_and_keeps_its_exception(make_bot, registry, capsys):
    bot = make_bot(backend=Broken(registry))
    result = as_user(bot, "alice").tags("baseimages/fedora")
    assert not result.ok and result.text.startswith("something went wrong on our side (ref ")
    assert isinstance(result.exception, RuntimeError)
    assert any("failed (ref" in line for line in result.log)
    assert capsys.readouterr().err == ""  # no traceback printed under the cell
    assert "Traceback" not in result._repr_html_()
    with pytest.raises(CommandFailed) as raised:
        as_user(bot, "alice", raise_errors=True).tags("baseimages/fedora")
    assert isinstance(raised.value.__cause__, RuntimeError)


# -- HTML -----------------------------------------------------------------------------------


def test_html_of_a_listing_is_a_table_naming_the_tags(acr):
    page = acr.tags("baseimages/fedora")._repr_html_()
    assert '<table class="acr-table"' in page
    assert '<td style="text-align: left">24</td>' in page
    assert '<td style="text-align: left">latest</td>' in page


def test_html_of_show_is_a_definition_list(acr):
    page = acr.show("baseimages/fedora:24")._repr_html_()
    assert '<dl class="acr-fields"' in page
    assert '<dt style="font-weight: 600">digest</dt>' in page
    assert "<table" not in page


def test_html_of_delete_is_the_request_card_with_everything_escaped(acr):
    result = acr.delete("baseimages/fedora:24", reason="<script>alert('x')</script> & co")
    page = result._repr_html_()
    assert 'class="acr-card"' in page and "Deletion request #1" in page
    assert ">pending</span>" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert "approve 1" in page  # no requests channel: says how an owner approves


def test_html_of_an_error_is_one_line(acr):
    page = acr("tags nope/x")._repr_html_()
    assert page == (
        '<div class="acr-error" style="font-family: var(--jp-ui-font-family, system-ui, '
        'sans-serif); font-size: 13px; color: #cf222e"><strong>✖ error:</strong> demo: no '
        "repository <code>nope/x</code></div>"
    )
    usage = acr("tags")._repr_html_()
    assert "\n" not in usage and "missing REPO — Usage: <code>" not in usage
    assert "missing REPO — Usage: tags REPO" in usage


def test_a_secret_is_never_displayed():
    result = Result(Reply(text="Rotated password2.", secret="hunter2"), command="rotate", user="d")
    assert result.secret == "hunter2"
    assert "hunter2" not in repr(result) and "hunter2" not in result._repr_html_()
    assert "not displayed" in result._repr_html_()


# -- DataFrames ----------------------------------------------------------------------------


def test_to_df_of_tags_has_a_row_per_tag_with_its_repository(acr):
    frame = acr.tags("baseimages/fedora").to_df()
    assert list(frame.columns) == [
        "registry",
        "repository",
        "tag",
        "digest",
        "size",
        "created",
        "locked",
    ]
    assert list(frame["tag"]) == ["latest", "24"]
    assert set(frame["repository"]) == {"baseimages/fedora"}
    assert str(frame["created"].dtype) == "datetime64[us, UTC]"


def test_to_df_of_tags_names_the_times_as_the_table_does(acr):
    """The layout knows when images were built: the table calls that column `created`, and
    the DataFrame has the same dates under the same name, with no all-NaT `updated` beside."""
    result = acr.tags("baseimages/fedora")
    assert result.table.columns == ("tag", "digest", "size", "created", "lock")
    frame = result.to_df()
    assert "updated" not in frame.columns
    assert [t.isoformat() for t in frame["created"]] == [
        "2024-04-23T00:00:00+00:00",
        "2016-06-21T00:00:00+00:00",
    ]
    assert [row[3] for row in result.table.rows] == [
        "2024-04-23 00:00 UTC",
        "2016-06-21 00:00 UTC",
    ]


def test_to_df_of_tags_on_acr_has_the_update_times_the_table_shows(
    tmp_path, clock, make_acr, fake_acr
):
    """ACR reports when a tag last moved: the table's `updated` is the DataFrame's `updated`."""
    from bot.app import build_dispatcher
    from bot.core.policy import Grant, Role
    from tests.support.fixtures import make_config

    fake_acr.push("team/api", "1.0", "sha256:" + "a" * 64)
    dispatcher = build_dispatcher(make_config(tmp_path), clock=clock, registries=[make_acr()])
    dispatcher.ctx.roles.grant(Grant("carol", Role.READER), by="test", at=clock())
    result = Acr(user="carol", dispatcher=dispatcher).tags("team/api")
    assert result.table.columns == ("tag", "digest", "size", "updated", "lock")
    frame = result.to_df()
    assert list(frame.columns) == [
        "registry",
        "repository",
        "tag",
        "digest",
        "size",
        "created",
        "updated",
        "locked",
    ]
    assert frame["updated"].notna().all()
    assert frame["updated"][0].strftime("%Y-%m-%d %H:%M UTC") == result.table.rows[0][3]


def test_to_df_keeps_digests_whole(acr, bot):
    """The table shortens digests for reading; a DataFrame is for working: the full value."""
    digest = acr.show("baseimages/fedora:24").data["digest"]
    assert len(digest) == len("sha256:") + 64
    assert list(acr.tags("baseimages/fedora").to_df()["digest"])[1] == digest
    assert list(acr.show("baseimages/fedora:24").to_df()["digest"]) == [digest]
    dry_run = acr("purge --filter 'baseimages/fedora:^24$' --ago 0d --dry-run").to_df()
    assert list(dry_run["digest"]) == [digest]
    acr.delete("baseimages/fedora:24", reason="EOL")
    assert list(acr.requests().to_df()["digest"]) == [digest]


def test_to_df_of_repos_requests_and_show(acr):
    assert list(acr.repos(filter="baseimages/*").to_df()["repository"]) == [
        "baseimages/alpine",
        "baseimages/fedora",
    ]
    acr.delete("baseimages/fedora:24", reason="EOL")
    pending = acr.requests().to_df()
    assert list(pending[["id", "state", "requester"]].itertuples(index=False, name=None)) == [
        (1, "pending", "alice")
    ]
    shown = acr.show("baseimages/fedora:24").to_df()
    assert len(shown) == 1 and shown["tags"][0] == ["24"]


def test_to_df_of_a_failure_raises_it(acr):
    with pytest.raises(CommandFailed, match="no repository"):
        acr("tags nope/x").to_df()


def test_to_df_without_pandas_says_how_to_get_it(acr, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(ImportError, match=r"to_df\(\) needs pandas, which is not installed"):
        acr.tags("baseimages/fedora").to_df()


# -- wait ------------------------------------------------------------------------------------


def test_wait_returns_once_an_owner_approves_elsewhere(acr, bot):
    request = acr.delete("baseimages/fedora:24", reason="EOL")
    approver = threading.Timer(0.3, lambda: bot.say("bob", "approve 1"))
    approver.start()
    started = time.monotonic()
    outcome = acr.wait(request, timeout=10, poll=0.05)
    approver.join()
    assert time.monotonic() - started < 5
    assert outcome.ok and outcome.data["state"] == "done"
    assert outcome.text == ("Request #1 approved and done: deleted 24 from demo/baseimages/fedora.")
    assert outcome.data["approvals"] == ["bob"]
    assert 'class="acr-card"' in outcome._repr_html_() and ">done</span>" in outcome._repr_html_()


def test_wait_gives_up_after_the_timeout(acr):
    acr.delete("baseimages/fedora:24", reason="EOL")
    still = acr.wait(1, timeout=0.1, poll=0.02)
    assert (still.ok, still.data["state"]) == (False, "pending")
    assert still.text == "Request #1 is still pending after 0.1 s (0 of 1 approvals)."
    with pytest.raises(WaitTimeout) as raised:
        Acr(user="alice", dispatcher=acr.dispatcher, raise_errors=True).wait(1, timeout=0)
    assert isinstance(raised.value, TimeoutError)


def test_wait_reports_a_denial_and_an_expiry(acr, bot, clock):
    acr.delete("baseimages/fedora:24", reason="EOL")
    bot.say("bob", "deny 1 --reason 'still used'")
    denied = acr.wait(1, timeout=1)
    assert (denied.ok, denied.text) == (False, "Request #1 denied by bob: still used.")
    acr.delete("baseimages/alpine:3.19", reason="old")
    clock.advance(hours=25)
    expired = acr.wait(2, timeout=1, poll=0.01)
    assert expired.data["state"] == "expired"
    assert expired.text == "Request #2 expired with 0 of 1 approvals; nothing was deleted."


def test_wait_shows_a_request_only_to_whom_request_would(acr, bot):
    acr.delete("baseimages/fedora:24", reason="EOL")
    assert as_user(bot, "carol").wait(1, timeout=0).data["requester"] == "alice"  # a reader
    bot.grant("frank", "reader", repositories="testimages/*")
    elsewhere = as_user(bot, "frank").wait(1, timeout=0)
    assert (elsewhere.ok, elsewhere.text) == (False, "there is no request #1")
    nobody = as_user(bot, "mallory").wait(1, timeout=0)
    assert nobody.text == "`request` needs reader on any registry; you have no roles."


# -- who is asking -------------------------------------------------------------------------


def test_the_user_comes_from_the_argument_the_config_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ACRBOT_USER", "dave")
    config = make_config(tmp_path, notebook={"user": "erin"})
    assert Acr(config, user="bob").user == "bob"
    assert Acr(config).user == "erin"
    assert Acr(make_config(tmp_path)).user == "dave"
    monkeypatch.delenv("ACRBOT_USER")
    monkeypatch.delenv("USER", raising=False)
    with pytest.raises(ConfigError, match="no acting user: pass user="):
        Acr(make_config(tmp_path))


def test_a_bad_config_path_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file"):
        Acr(tmp_path / "nope.toml", user="alice")


# -- layering ------------------------------------------------------------------------------


def top_level_imports(path):
    """Modules imported when ``path`` is imported (not those imported inside a function)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_magics_module_imports_ipython():
    """The core, and bot.notebook's API, import without IPython or pandas (STYLE.md, the
    house); pandas is imported by to_df() alone, when called."""
    root = Path(__file__).parents[2]
    frontend = ("IPython", "ipykernel", "traitlets", "nbformat", "nbclient", "pandas")
    offenders = [
        f"{path.relative_to(root)}: {sorted(found)}"
        for path in [*root.glob("bot/**/*.py"), *root.glob("handlers/**/*.py")]
        if path != root / "bot" / "notebook" / "magics.py"
        if (found := {m for m in top_level_imports(path) if m.split(".")[0] in frontend})
    ]
    assert offenders == []
