"""The lock (requirements/*.txt, `make lock`) is what CI and the image install: every package
pinned with its hashes, every range of pyproject.toml satisfied, the runtime lock held to the
test lock's versions, and the installers using it with --require-hashes.

Offline: it reads the files (re-resolving needs PyPI; `make lock` does that).
"""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = {"runtime": ROOT / "requirements/runtime.txt", "test": ROOT / "requirements/test.txt"}


def pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{name: (version, [hashes])} from a pip-compile --generate-hashes file."""
    found: dict[str, tuple[str, list[str]]] = {}
    text = path.read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        first = block.split("\n", 1)[0]
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)", first)
        if match:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
            found[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    return found


def requirements(*extras: str) -> list[Requirement]:
    listed = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        listed += PYPROJECT["project"]["optional-dependencies"][extra]
    return [Requirement(r) for r in listed]


@pytest.mark.parametrize(("lock", "extras"), [("runtime", ()), ("test", ("test",))])
def test_lock_pins_every_range_of_pyproject_with_hashes(lock, extras):
    locked = pins(LOCKS[lock])
    assert locked, f"{LOCKS[lock]} pins nothing"
    for name, (version, hashes) in locked.items():
        assert hashes, f"{name}=={version} has no hash"
    for req in requirements(*extras):
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is in pyproject.toml but not in {lock}: make lock"
        version = locked[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"{lock} pins {req.name}=={version}, outside pyproject.toml's {req.specifier}: "
            "make lock"
        )
    build = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    for req in build:  # --no-build-isolation builds the project with the locked setuptools
        assert req.specifier.contains(locked[canonicalize_name(req.name)][0])


def test_runtime_lock_is_held_to_the_test_locks_versions():
    """What the image runs is what the tests ran."""
    runtime, test = pins(LOCKS["runtime"]), pins(LOCKS["test"])
    assert {n: v for n, (v, _) in runtime.items()} == {n: test[n][0] for n in runtime}


def test_ci_the_makefile_and_the_image_install_from_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --require-hashes -r requirements/test.txt" in makefile
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in makefile
    assert re.search(r"^lock:", makefile, re.M)
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    assert "--require-hashes -r requirements/runtime.txt" in dockerfile
    assert "--no-deps --no-build-isolation ." in dockerfile
    assert "make test" in (ROOT / ".ci/run").read_text()  # which bootstraps from the lock
