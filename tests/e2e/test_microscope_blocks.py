"""The building blocks in a live JupyterLab: a unit's connections, clicked through, and the
neuron groups of the sample image (examples/microscope.ipynb, the embedded model).

The tests share one page and one kernel and run in file order.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import pytest
from e2e_harness import LabNotebook, poll
from e2e_server import find_cell, set_parameters
from e2e_widget import ROOT, MicroscopeView

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NOTEBOOK = "microscope.ipynb"
PARAMETERS = {
    "SIZE": 64,
    "STEPS": 16,
    "PREVIEW_STEPS": 64,
    "THUMBNAIL": 32,
    "GRID_STEPS": 8,
    "PAGE_SIZE": 8,
}
LAYER, ALIAS = "_blocks.3", "block3"
UNIT = 2
CONNECTION = '[data-testid="lw-connections-in"] [data-testid="lw-connection"]'

# Widths of the decoded images matching a selector inside the widget (0: not decoded yet).
_DECODED_JS = """([root, selector]) => [...root.querySelectorAll(selector)].map(
  (img) => (img.complete ? img.naturalWidth : 0))"""


@dataclass
class Session:
    lab: LabNotebook
    view: MicroscopeView


@pytest.fixture(scope="module")
def session(lab_server, shared_notebook, widget_bundle) -> Session:
    path = lab_server.root_dir / NOTEBOOK
    set_parameters(path, **PARAMETERS)
    widget_cell = find_cell(path, "lw.Microscope(")
    lab = shared_notebook(NOTEBOOK)
    lab.page._e2e_focus = ROOT
    for index in range(widget_cell + 1):
        lab.run_cell(index, timeout_ms=300_000)
    view = MicroscopeView(lab.page)
    view.wait_visible()
    return Session(lab, view)


def _decoded(view: MicroscopeView, selector: str) -> list[int]:
    return list(view.page.evaluate(_DECODED_JS, [view.root.element_handle(), selector]))


def test_a_units_connections_click_through_to_the_connected_unit(session, screenshot):
    view, lab = session.view, session.lab
    view.layer_item(LAYER).click()
    poll(lambda: len(view.thumbs()) == PARAMETERS["PAGE_SIZE"], 120, message="the grid")
    view.thumb(UNIT).click()
    row = view.by_testid("lw-connections")
    poll(lambda: row.get_attribute("data-state") == "done", 300, message="the connections")
    assert row.get_attribute("data-source") == "live"  # no atlas: computed live
    assert view.by_testid("lw-connections-source").inner_text() == "computed live"
    cards = view.root.locator(CONNECTION)
    assert cards.count() == 8
    outputs = view.root.locator('[data-testid="lw-connections-out"] [data-testid="lw-connection"]')
    assert outputs.count() == 8
    poll(lambda: min(_decoded(view, '[data-testid="lw-connection-thumb"]') or [0]) > 0, 60,
         message="the connected units' thumbnails")  # fmt: skip
    strengths = [float(s) for s in view.by_testid("lw-connection-strength").all_inner_texts()]
    inputs = strengths[:8]
    assert [abs(s) for s in inputs] == sorted((abs(s) for s in inputs), reverse=True)
    row.scroll_into_view_if_needed()
    screenshot(lab.page, "-connections")
    first = cards.first
    unit, layer = int(first.get_attribute("data-unit")), first.get_attribute("data-layer")
    assert layer != LAYER
    first.click()
    title = view.by_testid("lw-unit-title")
    poll(lambda: title.inner_text().startswith(f"Unit {unit} "), 60, message="the connected unit")
    state = ast.literal_eval(lab.run_code("w.layer, w.unit").strip())
    assert state == (layer, unit)
    # its own connections: the unit we came from is among the units it feeds
    poll(lambda: row.get_attribute("data-state") == "done", 300, message="the new connections")
    fed = view.root.locator('[data-testid="lw-connections-out"] [data-testid="lw-connection"]')
    assert fed.count() > 0


def test_the_groups_overlay_on_the_sample(session, screenshot):
    view, lab = session.view, session.lab
    lab.run_code(f"w.layer = {LAYER!r}")
    states = lab.run_code(
        "import skimage.data\nw.sample = skimage.data.chelsea()\nw.stop()\nw.wait(timeout=300)\n"
        "w.sample_info['state']",
        timeout_ms=360_000,
    )
    assert states.strip() == "'done'"
    view.by_testid("lw-sample-view-groups").click()
    blocks = view.by_testid("lw-blocks")
    poll(lambda: blocks.get_attribute("data-state") == "done", 300, message="the neuron groups")
    assert view.by_testid("lw-group").count() == 6
    poll(lambda: (_decoded(view, '[data-testid="lw-groups-overlay"]') or [0])[0] > 0, 60,
         message="the groups overlay")  # fmt: skip
    assert min(_decoded(view, '[data-testid="lw-group-image"]')) > 0  # each group's rendering
    assert lab.run_code("type(w.sample_block).__name__").strip() == "'NeuronGroups'"
    blocks.scroll_into_view_if_needed()
    screenshot(lab.page, "-groups")
    view.by_testid("lw-group").nth(1).click()  # runs the group's direction live
    poll(lambda: view.objective_input().input_value().startswith("direction("), 60,
         message="the group's objective in the editor")  # fmt: skip
    lab.run_code("w.stop()")
