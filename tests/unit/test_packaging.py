"""A new user's first `make demo` installs the package quietly: no setuptools warnings."""

import os
import re
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

# A fresh venv, pip upgraded from the index, an editable install: seconds, and the network.
pytestmark = pytest.mark.slow


def test_packaging_editable_install_prints_no_setuptools_warning(tmp_path):
    """What `make demo` runs (an editable install, with the Makefile's warning filter), into
    a throwaway environment: setuptools must not complain (it printed a deprecation of the
    `license` table three times, then a note on every install)."""
    found = re.search(
        r'^QUIET_EDITABLE := PYTHONWARNINGS="([^"]*)"$', (ROOT / "Makefile").read_text(), re.M
    )
    env_filter = found.group(1) if found else ""
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = str(target / "bin" / "python")
    # as the Makefile does first: a current pip shows what the build backend warns
    upgrade = [python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"]
    subprocess.run(upgrade, check=True, capture_output=True, timeout=300)
    result = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": env_filter},
    )
    assert result.returncode == 0, result.stderr
    # pip's own notes about this machine's index configuration are not setuptools'
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith("WARNING: Location ")
    ]
    assert lines == []
