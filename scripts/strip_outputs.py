"""Strip outputs, execution counts and saved widget state from notebooks.

Usage::

    python scripts/strip_outputs.py                 # strip examples/*.ipynb in place
    python scripts/strip_outputs.py a.ipynb b.ipynb # strip these
    python scripts/strip_outputs.py --check         # exit 1 when a notebook is not stripped
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
# Notebook-level metadata written by front ends that should not be committed.
VOLATILE_METADATA = ("widgets", "colab", "vscode", "toc", "execution")
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime", "outputId", "id")


def strip_notebook(notebook: nbformat.NotebookNode) -> bool:
    """Strip ``notebook`` in place; return True when anything changed."""
    changed = False
    for key in VOLATILE_METADATA:
        if key in notebook.metadata:
            del notebook.metadata[key]
            changed = True
    for cell in notebook.cells:
        for key in VOLATILE_CELL_METADATA:
            if key in cell.get("metadata", {}):
                del cell.metadata[key]
                changed = True
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            cell.outputs = []
            changed = True
        if cell.get("execution_count") is not None:
            cell.execution_count = None
            changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    """Strip (or with ``--check`` only inspect) the given notebooks; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: examples/)")
    parser.add_argument("--check", action="store_true", help="report, do not rewrite")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(EXAMPLES_DIR.glob("*.ipynb"))
    dirty = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        if strip_notebook(notebook):
            dirty.append(path)
            if not args.check:
                nbformat.write(notebook, path)
    verb = "not stripped" if args.check else "stripped"
    for path in dirty:
        print(f"{verb}: {path}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
