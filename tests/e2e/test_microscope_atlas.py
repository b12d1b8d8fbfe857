"""A Microscope opened on an atlas in a live JupyterLab: a full grid page at once, no rendering.

The atlas (a tiny net built in the test, units 0..7 of two layers, dataset examples, connections)
is built in the test process; the kernel opens it with the grid engine replaced by one that fails
for the units the atlas holds, so every such thumbnail the browser shows must come from the store.
Its connections are drawn by the same Connections panel as the ones computed live: a click on a
connected unit the atlas lacks (relu2 has 16 units) opens it with live connections, same panel.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch
from e2e_harness import poll
from e2e_server import write_notebook
from e2e_widget import ROOT, MicroscopeView

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TESTS = Path(__file__).resolve().parent.parent
UNITS = 8
SETUP = """
import sys
sys.path.insert(0, {tests!r})
import torch
from tiny_models import TinyNet
import lucid_widgets as lw
from lucid_widgets.widget import engine

render = engine.make_grid_batch

def only_what_the_atlas_lacks(model, layer, units, *args, **kwargs):
    if min(units) < {units}:
        raise AssertionError("the grid rendered a thumbnail the atlas holds")
    return render(model, layer, units, *args, **kwargs)

engine.make_grid_batch = only_what_the_atlas_lacks
torch.manual_seed(0)
model = TinyNet()
"""
OPEN = (
    'w = lw.Microscope(model, atlas={folder!r}, layer="relu1", page_size={units}, '
    'settings={{"size": 48, "steps": 24}})\nw'
)
PANEL = '[data-testid="lw-connections"]'
OUT_CARD = '[data-testid="lw-connections-out"] [data-testid="lw-connection"]'
IN_CARD = '[data-testid="lw-connections-in"] [data-testid="lw-connection"]'
# the Connections panel element, tagged so that the test can tell it is the same node later
_TAG_JS = "(root) => { root.querySelector('[data-testid=\"lw-connections\"]').dataset.e2e = 'x'; }"
CHECK = 'w.wait(30); print("grid", w.grid_progress["state"], w.grid_progress["rendered"])'


@pytest.fixture(scope="module")
def atlas_folder(lab_server) -> Path:
    sys.path.insert(0, str(TESTS))
    from tiny_models import TinyNet

    from lucid_widgets import atlas as lw_atlas

    torch.manual_seed(0)
    images = torch.rand(12, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    folder = lab_server.root_dir / "tiny-atlas"
    lw_atlas.build(
        TinyNet(), folder, layers=["early", "late"], units=range(UNITS), dataset=images, k=3,
        views=("channel", "negative"), size=48, steps=24, batch_size=8, progress=False,
    )  # fmt: skip
    return folder


def test_microscope_on_an_atlas_shows_a_full_grid_page_at_once(
    atlas_folder, lab_server, open_notebook, screenshot
):
    path = lab_server.root_dir / "atlas_microscope.ipynb"
    cells = [
        SETUP.format(tests=str(TESTS), units=UNITS),
        OPEN.format(folder=str(atlas_folder), units=UNITS),
    ]
    write_notebook(path, [*cells, CHECK])
    lab = open_notebook(path.name)
    lab.page._e2e_focus = ROOT
    lab.run_cell(0, timeout_ms=300_000)
    lab.run_cell(1, timeout_ms=120_000)
    view = MicroscopeView(lab.page)
    view.wait_visible()
    poll(lambda: view.rendered_count() == UNITS, 30, message="every thumbnail of the page")
    thumbs = view.thumbs()
    assert [thumb["unit"] for thumb in thumbs] == list(range(UNITS))
    assert all(thumb["width"] == 48 for thumb in thumbs), thumbs  # the stored 48-pixel PNGs
    assert "8 stored" in view.by_testid("lw-atlas-badge").inner_text()
    assert "grid done 8" in lab.run_cell(2, timeout_ms=60_000)  # the failing engine never ran

    view.by_testid("lw-grid-view-example").click()  # each unit's top example, from the atlas
    poll(lambda: view.by_testid("lw-grid").get_attribute("data-view") == "example", 30)
    poll(lambda: view.rendered_count() == UNITS, 30, message="every unit's top example")
    screenshot(lab.page, "-examples")
    view.by_testid("lw-grid-view-visualization").click()

    view.thumb(3).click()  # the unit's stored view, examples and connections, no optimization
    panel = view.root.locator(PANEL)
    poll(lambda: panel.get_attribute("data-source") == "atlas", 30, message="stored connections")
    poll(lambda: panel.get_attribute("data-state") == "done", 60, message="their thumbnails")
    poll(lambda: view.preview() is not None, 30, message="the stored picture")
    assert view.status() == "done"
    assert "unit from the atlas" in view.by_testid("lw-atlas-badge").inner_text()
    assert view.by_testid("lw-connections-source").inner_text() == "from the atlas"
    outputs = view.root.locator(OUT_CARD)
    assert outputs.count() > 0
    layers = {outputs.nth(i).get_attribute("data-layer") for i in range(outputs.count())}
    assert layers == {"relu2"}
    assert view.root.locator('[data-testid="lw-connection-thumb"]').count() == outputs.count()
    assert view.root.locator(PANEL).count() == 1  # one panel: no second, atlas-only one
    assert view.root.locator('[data-testid^="lw-atlas-connection"]').count() == 0
    assert view.by_testid("lw-examples").inner_text().count("\n") > 0
    view.root.evaluate(_TAG_JS)
    panel.scroll_into_view_if_needed()
    screenshot(lab.page, "-unit")

    units = [int(outputs.nth(i).get_attribute("data-unit")) for i in range(outputs.count())]
    outside = next(unit for unit in units if unit >= UNITS)  # relu2 has 16 units, 8 stored
    outputs.nth(units.index(outside)).click()  # navigation: open that unit of relu2
    title = view.by_testid("lw-unit-title")
    poll(lambda: title.inner_text().startswith(f"Unit {outside} "), 60, message="the clicked unit")
    poll(lambda: panel.get_attribute("data-source") == "live", 60, message="live connections")
    poll(lambda: panel.get_attribute("data-state") == "done", 300, message="their thumbnails")
    assert panel.get_attribute("data-e2e") == "x"  # the very same panel element drew both
    assert view.by_testid("lw-connections-source").inner_text() == "computed live"
    inputs = view.root.locator(IN_CARD)
    assert inputs.count() > 0 and inputs.first.get_attribute("data-layer") == "relu1"
    assert view.root.locator(PANEL).count() == 1
    state = ast.literal_eval(lab.run_code("w.layer, w.unit, w.connections.source").strip())
    assert state == ("relu2", outside, "live")
    panel.scroll_into_view_if_needed()
    screenshot(lab.page, "-live")
