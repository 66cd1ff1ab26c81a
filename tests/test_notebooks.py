"""Guard for the committed chapter notebooks.

nbval compares the stored outputs of executed cells only: a cell whose ``execution_count`` is
null is silently skipped, so a notebook committed unexecuted would pass nbval trivially. This
guard fails on that, on error outputs, on out-of-order execution, on missing widget state, on
notebooks over the size budget and on notebooks missing from the table of contents.
"""

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
MAX_BYTES = 3 * 2**20


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


def test_there_are_chapter_notebooks():
    assert len(NOTEBOOKS) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_executed(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert code, f"{path.name} has no code cells"
    unexecuted = [i for i, c in enumerate(code) if c.get("execution_count") is None]
    assert not unexecuted, f"{path.name}: code cells {unexecuted} were never executed (run `make execute`)"
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: execution counts {counts} are not 1..n: execute top to bottom in a fresh kernel"
    errors = [i for i, c in enumerate(code) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: error output in code cells {errors}"
    first = "".join(code[0]["source"])
    assert "import reslab" in first and "reslab.setup()" in first, f"{path.name}: the first code cell must import reslab and call reslab.setup()"
    # on Colab the package is installed by the first cell; locally the cell prints nothing
    assert "except ModuleNotFoundError" in first and "%pip install" in first and "subdirectory=code" in first, (
        f"{path.name}: the first code cell must install reslab when it is missing (Colab)"
    )
    assert code[0].get("outputs") == [], f"{path.name}: the first cell should print nothing when reslab is installed"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_size_and_widget_state(path):
    assert path.stat().st_size <= MAX_BYTES, f"{path.name} is {path.stat().st_size / 2**20:.1f} MB, over the 3 MB budget"
    nb = json.loads(path.read_text(encoding="utf-8"))
    uses_widgets = any(
        "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
    )
    if uses_widgets:
        state = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
        assert state, f"{path.name} displays widgets but saved no widget state: they would be blank in the book"
        views = [
            o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
            for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        ]
        missing = [v for v in views if v not in state]
        assert not missing, f"{path.name}: displayed widgets {missing} have no saved state"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_are_opaque_and_captioned(path):
    """Readable in the book's dark theme: no figure has a transparent background (black axis
    text on a transparent PNG vanishes on a dark page). Every figure output has a caption."""
    import base64
    import io

    from PIL import Image

    nb = json.loads(path.read_text(encoding="utf-8"))
    figures = 0
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        pngs = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        for png in pngs:
            figures += 1
            image = Image.open(io.BytesIO(base64.b64decode(png))).convert("RGBA")
            w, h = image.size
            corners = [image.getpixel(p)[3] for p in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1))]
            assert min(corners) == 255, f"{path.name} cell {i}: figure background is transparent"
        if pngs:
            caption = cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("caption")
            assert caption, f"{path.name} cell {i}: figure without a caption (metadata mystnb.figure.caption)"
    assert figures >= 3, f"{path.name} has {figures} figures; every chapter has at least 3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ignored_outputs_are_few_and_explained(path):
    """A cell nbval does not compare must say why in its first line, and must not hold a verdict:
    every chapter keeps most of its printed output under nbval."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    ignored = [c for c in code if "nbval-ignore-output" in c.get("metadata", {}).get("tags", [])]
    for cell in ignored:
        first = "".join(cell["source"]).splitlines()[0]
        assert first.startswith("# Not compared by nbval"), f"{path.name}: ignored cell without a reason: {first!r}"
        printed = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []))
        assert "True" not in printed and "False" not in printed, f"{path.name}: a verdict sits in an ignored cell"
    assert len(ignored) <= max(1, len(code) // 5), f"{path.name}: {len(ignored)} of {len(code)} code cells are not compared"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_the_table_of_contents(path):
    assert f"chapters/{path.stem}" in _toc_files()


def test_every_toc_entry_exists():
    for entry in _toc_files():
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), f"{entry} is in _toc.yml but missing"
