"""The other example notebooks run top to bottom in JupyterLab (with tiny sizes and steps)."""

from __future__ import annotations

import pytest
from e2e_server import find_cell, set_parameters
from e2e_widget import RENDERED_THUMB, ROOT, MicroscopeView

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _has_image(outputs: list[dict]) -> bool:
    return any("image/png" in output.get("data", {}) for output in outputs)


def test_render_units_notebook(lab_server, open_notebook):
    path = lab_server.root_dir / "render_units.ipynb"
    set_parameters(path, SIZE=32, STEPS=4, UNITS=2)
    lab = open_notebook(path.name)
    lab.run_all(timeout_ms=420_000)
    for needle in ('"block2"', '"block12"', '"logits"'):
        cell = find_cell(path, needle)
        assert _has_image(lab.outputs(cell)), f"cell {cell} ({needle}) shows no image"
    assert "(2, 32, 32, 3)" in lab.output_text(find_cell(path, "print(early.shape)"))


def test_colab_quickstart_notebook(lab_server, open_notebook, widget_bundle):
    path = lab_server.root_dir / "colab_quickstart.ipynb"
    set_parameters(path, SIZE=32, STEPS=4, PREVIEW_STEPS=8, THUMBNAIL=32, GRID_STEPS=4, PAGE_SIZE=4)
    lab = open_notebook(path.name)
    lab.page._e2e_focus = ROOT
    lab.run_all(timeout_ms=420_000)
    view = MicroscopeView(lab.page)
    view.wait_visible()
    assert lab.output_text(find_cell(path, "1 + 1")).strip() == "2"
    assert _has_image(lab.outputs(find_cell(path, "lw.show(w.images)")))
    assert _has_image(lab.outputs(find_cell(path, "lw.render_vis(")))
    # With the preview done (8 steps), Start lets the grid of block10 finish.
    lab.run_code("w.start()")
    view.root.locator(f"{RENDERED_THUMB}").nth(3).wait_for(state="attached", timeout=240_000)
    assert view.preview() is not None


def test_building_blocks_notebook(lab_server, open_notebook):
    path = lab_server.root_dir / "building_blocks.ipynb"
    set_parameters(path, SIZE=32, STEPS=4, CELL=16, GRID_STEPS=2)
    lab = open_notebook(path.name)
    lab.run_all(timeout_ms=600_000)
    for needle in (
        "lw.show(seen)",
        "groups_overlay(seen, groups.spatial), *maps]",
        "groups.batch_objective()",
        "heatmap_overlay(seen, a.spatial)",
        "lw.show(grid.reshape(",
        'render_units(model, "block9"',
    ):
        cell = find_cell(path, needle)
        assert _has_image(lab.outputs(cell)), f"cell {cell} ({needle}) shows no image"
    assert "(7, 7, 16, 16, 3)" in lab.output_text(find_cell(path, "lw.show(grid.reshape("))
    assert "expanded_weights" in lab.output_text(find_cell(path, "by_photo = "))
