"""The example notebooks are committed clean and well formed (no browser or kernel needed)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.ipynb"))
COLAB_URL = (
    "https://colab.research.google.com/github/lucid-widgets/lucid_widgets/blob/main/"
    "examples/colab_quickstart.ipynb"
)

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from strip_outputs import main as strip_main  # noqa: E402
from strip_outputs import strip_notebook  # noqa: E402


def _code(cell: nbformat.NotebookNode) -> str:
    # IPython shell escapes and magics are not Python: blank them before parsing.
    return re.sub(r"^\s*[!%].*$", "", cell.source, flags=re.MULTILINE)


def test_the_expected_examples_exist():
    names = {path.name for path in EXAMPLES}
    assert {"microscope.ipynb", "colab_quickstart.ipynb", "render_units.ipynb"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_is_valid_stripped_and_parses(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert not strip_notebook(notebook), f"{path.name} has outputs: run scripts/strip_outputs.py"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            ast.parse(_code(cell), filename=f"{path.name}:{cell.get('id')}")


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_has_a_small_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    first_code = next(
        cell for cell in notebook.cells if cell.cell_type == "code" and "=" in cell.source
    )
    assert "parameters" in first_code.metadata.get("tags", [])
    values = {}
    exec(compile(first_code.source, path.name, "exec"), {}, values)  # plain assignments only
    assert values.get("STEPS", 0) <= 256, "keep the committed defaults quick on a CPU"
    assert values.get("SIZE", 0) <= 224


def test_colab_quickstart_has_badge_and_commented_install():
    notebook = nbformat.read(REPO_ROOT / "examples" / "colab_quickstart.ipynb", as_version=4)
    assert COLAB_URL in notebook.cells[0].source
    assert "colab-badge.svg" in notebook.cells[0].source
    install = [cell.source for cell in notebook.cells if "pip install lucid-widgets" in cell.source]
    assert install and "Colab" in install[0]


def test_strip_outputs_removes_outputs_counts_and_widget_state(tmp_path):
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=3)
    cell.outputs = [
        nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)
    ]
    notebook.cells.append(cell)
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    path = tmp_path / "dirty.ipynb"
    nbformat.write(notebook, path)

    assert strip_main(["--check", str(path)]) == 1
    assert strip_main([str(path)]) == 0
    stripped = nbformat.read(path, as_version=4)
    assert stripped.cells[0].outputs == []
    assert stripped.cells[0].execution_count is None
    assert "widgets" not in stripped.metadata
    assert strip_main(["--check", str(path)]) == 0
