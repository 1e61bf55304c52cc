"""examples/registry-cleanup.ipynb runs top to bottom on a real kernel, as on a fresh clone."""

import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "registry-cleanup.ipynb"

# The whole notebook, executed once on a real Jupyter kernel (seconds).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def executed(tmp_path_factory, request):
    """The notebook executed headless in a directory of its own (its demo is made there)."""
    import nbformat
    from nbclient import NotebookClient  # here: importing it costs seconds, even unused

    workdir = tmp_path_factory.mktemp("example")
    shutil.copy(EXAMPLE, workdir)
    notebook = nbformat.read(workdir / EXAMPLE.name, as_version=4)
    saved = os.environ.get("PYTHONPATH")
    # The kernel imports this checkout's bot, whatever the venv's editable install points at.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved) if p)
    try:
        NotebookClient(
            notebook,
            timeout=120,
            kernel_name="python3",
            resources={"metadata": {"path": str(workdir)}},
        ).execute()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved
    return notebook


def outputs(notebook, starts):
    """The outputs of the one code cell whose source starts with ``starts``."""
    cells = [
        c for c in notebook.cells if c.cell_type == "code" and c.source.lstrip().startswith(starts)
    ]
    assert len(cells) == 1, starts
    return cells[0].outputs


def shown(notebook, starts, mime="text/html"):
    return "".join(
        o.get("data", {}).get(mime, "") for o in outputs(notebook, starts) if "data" in o
    )


def test_the_example_is_stored_without_outputs():
    import nbformat

    notebook = nbformat.read(EXAMPLE, as_version=4)
    nbformat.validate(notebook)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    assert notebook.metadata.kernelspec.name == "python3"


def test_every_cell_runs_without_an_error_or_a_traceback(executed):
    for c in executed.cells:
        for output in c.get("outputs", []):
            assert output.output_type != "error", c.source
            assert "Traceback" not in str(output), c.source


def test_the_magics_list_the_demo_repositories_and_tags(executed):
    repos = shown(executed, "%acr repos")
    for name in ("baseimages/alpine", "baseimages/fedora", "testimages/nginx", "webservers/nginx"):
        assert f'<td style="text-align: left">{name}</td>' in repos
    tags = shown(executed, "%%acr\nwhoami")
    assert "You are alice." in tags
    assert '<td style="text-align: left">24</td>' in tags
    assert '<td style="text-align: left">latest</td>' in tags


def test_a_refusal_shows_as_one_line(executed):
    refusal = shown(executed, "%acr --user carol")
    assert refusal.startswith('<div class="acr-error"') and refusal.count("<div") == 1
    assert "needs contributor on demo/baseimages/fedora" in refusal


def test_the_dataframe_has_a_row_per_tag_and_the_expected_columns(executed):
    columns = shown(executed, "list(tags.columns)", "text/plain")
    assert re.sub(r"\s+", " ", columns) == (
        "['registry', 'repository', 'tag', 'digest', 'size', 'created', 'locked']"
    )
    frame = shown(executed, "import pandas as pd")
    assert "<table" in frame and "baseimages/fedora" in frame
    assert frame.split("<tbody>")[1].count("<tr>") == 13  # every tag of the six repositories


def test_the_chart_or_its_numbers(executed):
    chart = outputs(executed, "per_repository =")
    kinds = {mime for o in chart for mime in o.get("data", {})}
    printed = "".join(o.get("text", "") for o in chart)
    assert "image/png" in kinds or "matplotlib is not installed" in printed


def test_the_old_tag_is_the_candidate_and_the_purge_is_a_dry_run(executed):
    assert ">24</td>" in shown(executed, "old = tags[")
    assert "Dry run on demo:" in shown(executed, "%acr purge")


def test_the_request_card_is_pending_and_alice_asked(executed):
    card = shown(executed, "candidate = old.iloc[0]")
    assert 'class="acr-card"' in card and "Deletion request #1" in card
    assert ">pending</span>" in card
    assert '<dt style="font-weight: 600">requester</dt><dd style="margin: 0">alice</dd>' in card
    assert shown(executed, 'request.data["id"]', "text/plain") == "(1, 'pending', 'alice')"
    waited = shown(executed, "acr.wait(request", "text/plain")
    assert waited.startswith("error: Request #1 is still pending after 2 s")


def test_the_audit_names_the_notebook_door(executed):
    audit = shown(executed, 'Acr(config=CONFIG, user="bob").audit', "text/plain")
    assert "delete@notebook" in audit and "request@notebook" in audit


def test_the_dry_run_keeps_alpine_latest_with_its_image(executed):
    """`--keep 1` keeps alpine's newest image whole: `3.20` and `latest` (issue 17.2)."""
    html = shown(executed, "%acr purge")
    rows = dict(
        re.findall(
            r'<td style="text-align: left">(baseimages/alpine:[^<]+)</td>.*?'
            r'<td style="text-align: left">(goes|skipped: [^<]+)</td>',
            html,
            re.S,
        )
    )
    assert rows == {
        "baseimages/alpine:3.19": "goes",
        "baseimages/alpine:3.20": "skipped: kept (--keep 1)",
        "baseimages/alpine:latest": "skipped: kept (--keep 1)",
    }


def test_the_report_cell_tabulates_and_plots_the_storage(executed):
    table = shown(executed, "usage = acr.report(")
    printed = "".join(o.get("text", "") for o in outputs(executed, "usage = acr.report("))
    assert "demo holds" in printed and "(each blob counted once)" in printed
    assert "<table" in table and "stale_bytes" in table and "baseimages/fedora" in table
    chart = outputs(executed, "usage.plot()")
    png = next(o["data"]["image/png"] for o in chart if "image/png" in o.get("data", {}))
    import base64
    import struct

    data = base64.b64decode(png)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1000 and 250 <= height <= 1200
