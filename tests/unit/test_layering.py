"""The layers of the house, enforced: each imports only the layers below it (docs/architecture.md).

    doors     bot/*.py (app, cli, console, demo, ...), bot/doctor/, bot/schedules/,
              bot/notebook/, bot/slack/
    handlers  handlers/ (handlers/registries/: core and state only)
    kernel    bot/kernel/
    ops       bot/ops/
    state     bot/state/
    core      bot/core/ (and no Slack, IPython, database driver or Azure SDK)

Every import counts, lazy ones inside functions too: a lazy import hides an arrow, it does
not remove it. `violations` reads a tree from disk, so its own tests plant a fault in a copy.
"""

import ast
import functools
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("bot", "handlers")
CORE, STATE, OPS, KERNEL, HANDLERS, DOORS = range(6)
NAMES = {CORE: "core", STATE: "state", OPS: "ops", KERNEL: "kernel", HANDLERS: "handlers"}
NAMES[DOORS] = "doors"
# Third-party packages each with the one place allowed to import it.
ONLY_IN = {
    "slack_bolt": "bot.slack",
    "slack_sdk": "bot.slack",
    "IPython": "bot.notebook",
    "kubernetes": "bot.ops.deployed",
}
NEVER_IN_CORE = ("slack_bolt", "slack_sdk", "IPython", "psycopg", "azure")


def layer(module: str) -> int:
    parts = module.split(".")
    if parts[0] == "handlers":
        return HANDLERS
    sub = parts[1] if len(parts) > 1 else ""
    return {"core": CORE, "state": STATE, "ops": OPS, "kernel": KERNEL}.get(sub, DOORS)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the house, by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, at any depth; `from bot import x` names
    the module bot.x when x is one."""
    found = []
    for line, module, names in _import_nodes(path.read_text()):
        if module is None:
            found += [(line, name) for name in names]
            continue
        named = [f"{module}.{name}" for name in names]
        found += [(line, m) for m in named if m in known]
        if not all(m in known for m in named):  # names defined in the module itself
            found.append((line, module))
    return found


@functools.cache
def _import_nodes(source: str) -> tuple[tuple[int, str | None, tuple[str, ...]], ...]:
    """(line, `from` module or None for `import`, names) of every absolute import; cached by
    the source text, so the planted copies re-parse only the file that was changed."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.append((node.lineno, None, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, tuple(a.name for a in node.names)))
    return tuple(found)


def violations(root: Path) -> list[str]:
    """Each import that breaks the layer order, as `file:line: why`."""
    house = modules(root)
    found = []
    for name, path in house.items():
        where = layer(name)
        for line, target in imports(path, set(house)):
            at = f"{path.relative_to(root)}:{line}: {target}"
            top = target.split(".")[0]
            if top in ONLY_IN and not (name + ".").startswith(ONLY_IN[top] + "."):
                found.append(f"{at}: only {ONLY_IN[top]} may import {top}")
            if where == CORE and top in NEVER_IN_CORE:
                found.append(f"{at}: the core imports no {top}")
            if top not in PACKAGES or target not in house:
                continue
            if layer(target) > where:
                found.append(
                    f"{at}: {NAMES[where]} may not import {NAMES[layer(target)]} (an upward arrow)"
                )
            backend = name.startswith("handlers.registries")
            if backend and layer(target) > STATE and not target.startswith("handlers.registries"):
                found.append(f"{at}: a registry backend imports only the core and state")
    return found


def circles(root: Path) -> list[list[str]]:
    """Modules that import each other, directly or round a loop (lazy imports count)."""
    house = modules(root)
    graph = {
        name: {t for _, t in imports(path, set(house)) if t in house and t != name}
        for name, path in house.items()
    }
    # A package's __init__ that re-exports its modules is not a loop through them.
    graph = {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in graph.items()}
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                on.discard(top)
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_every_import_runs_down_the_layers():
    assert violations(ROOT) == []


def test_no_module_imports_one_that_imports_it():
    assert circles(ROOT) == []


def test_no_private_name_crosses_a_module_of_the_house():
    offenders = []
    house = modules(ROOT)
    for path in house.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private and private != ["__version__"]:
                    offenders.append(f"{path.relative_to(ROOT)}: {node.module} {private}")
    assert offenders == []


def test_the_root_of_bot_stays_small():
    """The wiring and the doors only: new code goes into a layer."""
    assert len([p for p in (ROOT / "bot").glob("*.py") if p.name != "__init__.py"]) <= 10


def test_each_folder_says_what_lives_there_and_what_it_may_import():
    for init in [*ROOT.glob("bot/*/__init__.py"), *ROOT.glob("handlers/**/__init__.py")]:
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.splitlines()) >= 2, init


def test_handlers_do_not_print():
    for path in ROOT.glob("handlers/**/*.py"):
        assert "print(" not in path.read_text(), path


# -- the checker's own tests: a fault planted in a copy of the tree is caught ---------------


@pytest.fixture
def copy(tmp_path):
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    assert violations(tmp_path) == []
    return tmp_path


def plant(root: Path, relative: str, line: str, *, lazy: bool = False) -> None:
    path = root / relative
    text = f"\n\ndef _planted():\n    {line}\n" if lazy else f"\n{line}\n"
    path.write_text(path.read_text() + text)


@pytest.mark.parametrize(
    ("relative", "line", "why"),
    [
        ("bot/core/errors.py", "import slack_sdk", "only bot.slack may import slack_sdk"),
        ("bot/core/references.py", "import azure.identity", "the core imports no azure"),
        ("bot/core/policy.py", "import psycopg", "the core imports no psycopg"),
        ("bot/core/grammar.py", "from bot.state import store", "core may not import state"),
        ("bot/state/audit.py", "from bot.ops.metrics import x", "state may not import ops"),
        ("bot/ops/logs.py", "from bot.kernel import dispatch", "ops may not import kernel"),
        ("handlers/meta.py", "from bot.slack.blocks import x", "handlers may not import doors"),
        ("handlers/browse.py", "from bot import app", "handlers may not import doors"),
        ("handlers/registries/oci.py", "from bot.kernel.context import x", "a registry backend"),
        ("handlers/registries/acr.py", "import slack_bolt", "only bot.slack may import"),
        ("bot/demo.py", "import IPython", "only bot.notebook may import IPython"),
        ("bot/notebook/client.py", "import slack_sdk", "only bot.slack may import slack_sdk"),
    ],
)
def test_a_planted_violation_is_caught(copy, relative, line, why):
    plant(copy, relative, line)
    found = violations(copy)
    assert found and all(v.startswith(relative) for v in found), found
    assert any(why in v for v in found), found


def test_a_lazy_import_is_caught_too(copy):
    plant(copy, "bot/core/errors.py", "import slack_sdk", lazy=True)
    assert [v for v in violations(copy) if "slack_sdk" in v]


def test_a_planted_circle_is_caught(copy):
    plant(copy, "handlers/requests/reply.py", "from handlers.requests import decide", lazy=True)
    (loop,) = circles(copy)  # reply -> decide -> delete -> reply, and the rest of the ring
    assert {"handlers.requests.reply", "handlers.requests.decide"} <= set(loop)


def test_the_allowed_doors_pass(copy):
    plant(copy, "bot/slack/blocks.py", "import slack_sdk")
    plant(copy, "bot/notebook/magics.py", "import IPython")
    plant(copy, "bot/state/audit.py", "from bot.core import errors")
    assert violations(copy) == []


def test_each_command_finds_its_handler_in_one_hop():
    """HANDLERS (handlers/__init__.py) lists the commands of COMMAND_LIST, in its order."""
    from bot.core.commands import COMMAND_LIST
    from handlers import HANDLERS

    assert list(HANDLERS) == [spec.name for spec in COMMAND_LIST]
