"""The tests keep the layout tests/conftest.py describes: test modules in the four folders,
importing only tests/support/ (never each other, never a conftest), and `make test-fast` running
exactly the tests that are neither `server` nor `slow`."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parents[1]
FOLDERS = {"unit", "flows", "servers", "fakes"}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_test_modules_live_in_the_four_folders():
    misplaced = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("test_*.py")
        if path.parent.name not in FOLDERS or path.parent.parent != TESTS
    ]
    assert misplaced == []
    assert sorted(p.name for p in TESTS.glob("*.py")) == ["__init__.py", "conftest.py"]


def test_test_modules_import_only_the_support_package():
    offenders = [
        f"{path.relative_to(TESTS)}: {name}"
        for path in [*TESTS.rglob("*.py"), *TESTS.parent.glob("bench/*.py")]
        for name in imported(path)
        if (name == "tests" or name.startswith("tests."))
        and not (name == "tests.support" or name.startswith("tests.support."))
    ]
    assert offenders == []


def test_the_support_package_holds_no_tests():
    assert [p.name for p in (TESTS / "support").glob("test_*.py")] == []


def test_make_test_fast_runs_what_is_neither_server_nor_slow():
    makefile = (TESTS.parent / "Makefile").read_text()
    recipe = re.search(r"^test-fast:.*\n\t(.*)$", makefile, re.M)
    assert recipe and recipe.group(1) == '$(BIN)/pytest -m "not server and not slow"'


@pytest.mark.slow  # collects the real-server tests in a pytest of its own (seconds)
def test_nothing_that_starts_a_server_is_left_in_make_test_fast():
    """Collected as `make test-fast` would: no test under tests/servers/ and none using a real
    server's fixture (docker-registry, Azurite) is left."""
    fast = ("-m", "not server and not slow", "tests/servers", "tests/flows/test_doctor.py")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *fast],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert [line for line in collected if line.startswith("tests/servers/")] == []
    # two of test_doctor.py's tests run on Azurite and docker-registry (their fixtures)
    on_servers = ("test_doctor_checks_the_archive_and_its", "test_doctor_tries_the_registry_cred")
    assert [line for line in collected if any(name in line for name in on_servers)] == []
    assert collected, result.stdout + result.stderr  # the rest of test_doctor.py stays
