"""examples/microscope.ipynb in Jupyter Notebook 7 (not JupyterLab): the Microscope widget renders.

Notebook 7 is its own front end (``jupyter notebook``, pages under ``/notebooks/``), so this starts
its own server rather than using the session's JupyterLab. It runs the example up to the cell that
displays the widget, picks a layer from Python and waits for the layer list and the grid's
thumbnails in the page.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import NotebookPage, new_page, poll
from e2e_server import NotebookServer, find_cell, set_parameters
from e2e_widget import ROOT, MicroscopeView

# conftest.py skips these without Notebook 7 (or Chromium) locally and fails them under CI=true
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.requires("notebook.app")]

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "microscope.ipynb"
PARAMETERS = {
    "SIZE": 32,
    "STEPS": 8,
    "PREVIEW_STEPS": 8,
    "THUMBNAIL": 32,
    "GRID_STEPS": 16,
    "PAGE_SIZE": 8,
}
LAYER, ALIAS = "_blocks.3", "block3"  # an early layer: cheap forward passes


@pytest.fixture(scope="module")
def notebook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookServer]:
    """A Notebook 7 server whose root holds copies of ``examples/*.ipynb`` with tiny parameters."""
    root = tmp_path_factory.mktemp("notebook7-root")
    for notebook in sorted((REPO_ROOT / "examples").glob("*.ipynb")):
        shutil.copy(notebook, root / notebook.name)
    set_parameters(root / NOTEBOOK, **PARAMETERS)
    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    server = NotebookServer(
        root_dir=root,
        log_path=artifacts / "notebook7.log",
        extra_env={"PYTHONPATH": str(REPO_ROOT)},
    )
    server.log_path.unlink(missing_ok=True)
    try:
        server.start(attempts=3, timeout=120.0)
        yield server
    finally:
        server.stop()  # shuts down every kernel, then the server and its children


@pytest.fixture
def notebook_page(
    browser: Any,
    notebook_server: NotebookServer,
    screenshot: Callable[[Any, str], Path | None],
) -> Iterator[NotebookPage]:
    """A page for this test; screenshotted (``-failed`` on failure) and closed afterwards."""
    page = new_page(browser)
    page._e2e_focus = ROOT
    try:
        yield NotebookPage(page, notebook_server)
    finally:
        screenshot(page, "")
        with contextlib.suppress(Exception):
            page.evaluate(
                """() => { const w = window.jupyterapp.shell.currentWidget;
                           return w && w.sessionContext ? w.sessionContext.shutdown() : null; }"""
            )
        page.context.close()
        notebook_server.shutdown_kernels()


@pytest.mark.timeout(1200)
def test_microscope_widget_renders_in_notebook7(notebook_page, notebook_server, widget_bundle):
    path = notebook_server.root_dir / NOTEBOOK
    widget_cell = find_cell(path, "lw.Microscope(")
    notebook = notebook_page.open(NOTEBOOK, timeout_ms=180_000)
    page = notebook.page
    assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"
    assert "/notebooks/" in page.url
    assert page.locator("#main-panel .jp-Notebook").count() == 1  # Notebook 7's shell, not Lab's

    for index in range(widget_cell + 1):
        notebook.run_cell(index, timeout_ms=300_000)
    view = MicroscopeView(page)
    view.wait_visible(timeout_ms=240_000)
    assert "efficientnet" in view.by_testid("lw-model-name").inner_text().lower()
    poll(
        lambda: view.root.locator('[data-testid="lw-layer-item"]').count() > 20,
        120,
        message="the layer list",
    )
    assert view.layer_item(LAYER).is_visible()
    assert view.thumbs() == []  # no layer picked yet

    notebook.run_code(f'w.layer = "{ALIAS}"', timeout_ms=120_000)
    page_size = PARAMETERS["PAGE_SIZE"]
    poll(lambda: len(view.thumbs()) == page_size, 120, message="one tile per unit")
    assert ALIAS in view.by_testid("lw-grid-title").inner_text()
    poll(
        lambda: view.layer_item(LAYER).get_attribute("data-selected") is not None,
        60,
        message="the layer selected in the list",
    )
    poll(lambda: view.rendered_count() == page_size, 420, message="every thumbnail rendered")
    poll(lambda: all(tile["width"] > 0 for tile in view.thumbs()), 60, message="decoded tiles")
    poll(
        lambda: view.by_testid("lw-grid-progress").get_attribute("data-state") == "done",
        60,
        message="the grid progress to say done",
    )
    view.root.scroll_into_view_if_needed(timeout=30_000)
