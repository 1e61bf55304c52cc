"""`%acr` / `%%acr` in a real IPython InteractiveShell: cells run as a notebook runs them."""

import pytest
from IPython.core.interactiveshell import InteractiveShell

from bot import demo
from bot.notebook import CommandFailed, Result, Results
from bot.notebook.magics import Acr as AcrMagics
from bot.notebook.magics import MagicError, Settings, expand, parse_options


@pytest.fixture(scope="module")
def shell():
    return InteractiveShell.instance()


@pytest.fixture
def config(tmp_path):
    demo.prepare(tmp_path / "demo")
    return tmp_path / "demo" / "acrbot.toml"


@pytest.fixture
def ip(shell, config, monkeypatch):
    """A shell with the extension freshly loaded and the demo's config as the default."""
    monkeypatch.setenv("ACRBOT_CONFIG", str(config))
    monkeypatch.setenv("ACRBOT_USER", "alice")
    shell.config.pop("Acr", None)  # what `%config Acr.…` left in the shell's own config
    shell.run_line_magic("reload_ext", "bot.notebook")
    shell.user_ns.pop("r", None)
    yield shell
    shell.run_line_magic("unload_ext", "bot.notebook")


def cell(ip, source):
    """Run ``source`` as a cell; return what it evaluated to (the Out[] value)."""
    outcome = ip.run_cell(source)
    if not outcome.success:
        raise outcome.error_before_exec or outcome.error_in_exec
    return outcome.result


def magics(ip):
    return next(c for c in ip.configurables if isinstance(c, AcrMagics))


def test_line_magic_returns_a_result(ip):
    result = cell(ip, "%acr tags baseimages/fedora")
    assert isinstance(result, Result) and result.ok
    assert result.text == "2 tags in demo/baseimages/fedora"
    assert ">24</td>" in result._repr_html_()


def test_line_magic_result_can_be_assigned(ip):
    cell(ip, "r = %acr show baseimages/fedora:24")
    assert ip.user_ns["r"].data["tags"] == ["24"]


def test_cell_magic_runs_a_command_a_line_and_skips_comments(ip):
    results = cell(ip, "%%acr\n# who am I?\nwhoami\n\ntags baseimages/fedora --top 1\n")
    assert isinstance(results, Results) and results.ok
    assert [r.command for r in results] == ["whoami", "tags baseimages/fedora --top 1"]
    page = results._repr_html_()
    assert "<code>&gt; whoami</code>" in page and "You are alice." in page


def test_cell_magic_stops_at_the_first_failure(ip):
    results = cell(ip, "%%acr\nwhoami\ntags nope/x\ndelete baseimages/fedora:24 --reason x\n")
    assert [r.ok for r in results] == [True, False]
    assert results.not_run == ["delete baseimages/fedora:24 --reason x"]
    assert "stopped after the failure: 1 line not run" in results._repr_html_()
    assert cell(ip, "%acr requests").text == "0 pending requests."


def test_line_interpolation_is_ipythons(ip):
    ip.user_ns.update(repo="baseimages/fedora", tag="24")
    assert cell(ip, "%acr show {repo}:$tag").text == "demo/baseimages/fedora:24"
    assert cell(ip, "%acr show {repo.replace('fedora', 'alpine')}:3.19").ok


def test_cell_body_is_interpolated_the_same_way(ip):
    ip.user_ns.update(repo="baseimages/fedora", tag="24", why="EOL since 2017")
    results = cell(ip, '%%acr\nshow {repo}:$tag\ndelete {repo}:{tag} --reason "{why}"\n')
    assert results.ok
    assert results[1].data["reason"] == "EOL since 2017"


def test_interpolation_inside_a_function_sees_its_locals(ip):
    cell(ip, "def latest(repo):\n    page = %acr tags {repo} --top 1\n    return page\n")
    assert cell(ip, "latest('baseimages/alpine')").text == "3 tags in demo/baseimages/alpine"


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("show {repo}:$tag", "show a/b:1"),
        ("price $$5", "price $5"),
        ("show {missing}:1", "show {missing}:1"),  # what does not expand stays as typed
    ],
)
def test_expand_follows_ipython(text, expanded):
    assert expand(text, {"repo": "a/b", "tag": "1"}) == expanded


def test_an_error_is_one_line_and_no_traceback(ip, capsys):
    outcome = ip.run_cell("%acr --user carol delete baseimages/fedora:24 --reason x")
    assert outcome.error_in_exec is None
    page = outcome.result._repr_html_()
    assert page.count("<div") == 1 and 'class="acr-error"' in page
    assert "needs contributor on demo/baseimages/fedora" in page
    assert "Traceback" not in capsys.readouterr().out


def test_debug_raises_the_failure(ip):
    outcome = ip.run_cell("%acr --debug tags nope/x")
    assert isinstance(outcome.error_in_exec, CommandFailed)
    assert str(outcome.error_in_exec) == "demo: no repository `nope/x`"


def test_options_alone_set_the_defaults(ip, config):
    settings = cell(ip, f"%acr --config {config} --user bob")
    assert isinstance(settings, Settings)
    assert settings.text == f"%acr acts as bob with {config}"
    assert cell(ip, "%acr whoami").text == "You are bob."
    assert cell(ip, "%acr --user carol whoami").text == "You are carol."  # this command only
    assert cell(ip, "%acr whoami").text == "You are bob."


def test_quoted_option_values(ip, config):
    assert cell(ip, f'%acr --config "{config}" --user=dave whoami').text == "You are dave."


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--user", "%acr: --user needs a value"),
        ("--config nope.toml whoami", "/nope.toml: no such file"),
    ],
)
def test_magic_errors_are_one_line(ip, line, message):
    result = cell(ip, f"%acr {line}")
    assert isinstance(result, MagicError) and result.message.endswith(message)
    assert result._repr_html_().startswith('<div class="acr-error"')


def test_config_settings_outlive_a_reload(ip, config):
    cell(ip, f'%config Acr.config = "{config}"')
    cell(ip, '%config Acr.user = "dave"')
    ip.run_line_magic("reload_ext", "bot.notebook")
    assert magics(ip).config_file == str(config)
    assert cell(ip, "%acr whoami").text == "You are dave."


def test_config_traits(ip, config, capsys):
    cell(ip, '%config Acr.user = "erin"')
    assert cell(ip, "%acr whoami").text == "You are erin."
    cell(ip, '%config Acr.config = "/nowhere/acrbot.toml"')  # the alias of config_file
    assert magics(ip).config_file == "/nowhere/acrbot.toml"
    assert cell(ip, "%acr whoami").message == "/nowhere/acrbot.toml: no such file"
    cell(ip, f'%config Acr.config_file = "{config}"')
    assert cell(ip, "%acr whoami").ok
    cell(ip, "%config Acr.debug = True")
    with pytest.raises(CommandFailed):
        cell(ip, "%acr tags nope/x")
    capsys.readouterr()
    cell(ip, "%config Acr")
    listed = capsys.readouterr().out
    assert "Acr.user=<Unicode>" in listed and "Acr.config_file=<Unicode>" in listed


def test_the_magic_audits_as_the_notebook(ip):
    cell(ip, "%acr tags baseimages/fedora")
    audit = cell(ip, "%acr --user bob audit --last 1")
    assert audit.data[0]["action"] == "tags@notebook"
    assert audit.data[0]["actor"] == "alice"


@pytest.mark.parametrize(
    ("line", "options", "rest"),
    [
        ("tags a/b --top 5", {}, "tags a/b --top 5"),
        ("--user bob tags a/b", {"user": "bob"}, "tags a/b"),
        ("--debug --config 'my file.toml' help", {"debug": True, "config": "my file.toml"}, "help"),
        ("--user=bob", {"user": "bob"}, ""),
        ("delete r:t --reason '--user x'", {}, "delete r:t --reason '--user x'"),
    ],
)
def test_parse_options_takes_only_the_leading_options(line, options, rest):
    assert parse_options(line) == (options, rest)
