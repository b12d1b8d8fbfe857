"""examples/microscope.ipynb in a live JupyterLab: the Microscope widget, clicked like a user would.

The tests share one page and one kernel (loading the model and warming it up is the slow part) and
run in file order: open the widget, pick a layer, open a unit, edit the objective, use the kernel
while it renders, stop, show dataset examples and a sample image, export a static page, then run
the rest of the notebook.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_harness import LabNotebook, block_other_hosts, new_page, poll, serve_folder
from e2e_server import find_cell, set_parameters
from e2e_widget import RENDERED_THUMB, ROOT, MicroscopeView

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NOTEBOOK = "microscope.ipynb"
# Small images and few steps keep this quick on 2 CPU cores; the live preview gets many steps so
# that it is still running when the tests edit and stop it.
PARAMETERS = {
    "SIZE": 64,
    "STEPS": 16,
    "PREVIEW_STEPS": 100_000,
    "THUMBNAIL": 32,
    "GRID_STEPS": 16,
    "PAGE_SIZE": 8,
}
LAYER, ALIAS = "_blocks.3", "block3"  # an early layer: cheap forward passes
UNIT = 2


@dataclass
class Session:
    lab: LabNotebook
    view: MicroscopeView
    path: Path
    widget_cell: int


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
    return Session(lab, view, path, widget_cell)


def test_widget_shows_the_layer_browser(session):
    view = session.view
    assert "efficientnet" in view.by_testid("lw-model-name").inner_text().lower()
    poll(
        lambda: view.root.locator('[data-testid="lw-layer-item"]').count() > 20,
        60,
        message="layers",
    )
    assert view.layer_item(LAYER).is_visible()
    assert view.by_testid("lw-grid-hint").is_visible()  # no layer picked yet
    assert view.thumbs() == []


def test_detail_panel_is_hidden_before_a_unit_is_open(session):
    assert not session.view.by_testid("lw-detail").is_visible()


def test_clicking_a_layer_fills_in_the_thumbnails(session):
    view = session.view
    view.layer_item(LAYER).click()
    poll(lambda: len(view.thumbs()) == PARAMETERS["PAGE_SIZE"], 60, message="one tile per unit")
    assert ALIAS in view.by_testid("lw-grid-title").inner_text()
    assert view.layer_item(LAYER).get_attribute("data-selected") is not None
    counts = [view.rendered_count()]
    poll(
        lambda: counts.append(view.rendered_count()) or counts[-1] > counts[0],
        240,
        message="thumbnails to start filling in",
    )
    poll(
        lambda: counts.append(view.rendered_count()) or counts[-1] == PARAMETERS["PAGE_SIZE"],
        240,
        message="every thumbnail of the page rendered",
    )
    assert counts == sorted(counts), f"the rendered count went down: {counts}"
    poll(lambda: all(tile["width"] > 0 for tile in view.thumbs()), 30, message="decoded tiles")
    poll(
        lambda: view.by_testid("lw-grid-progress").get_attribute("data-state") == "done",
        30,
        message="the grid progress to say done",
    )


def test_clicking_a_unit_runs_its_preview(session):
    view = session.view
    view.thumb(UNIT).click()
    objective = f"{ALIAS}:{UNIT}"
    poll(lambda: view.objective_input().input_value() == objective, 30, message="the objective")
    poll(lambda: view.status() == "running", 60, message="the preview to start")
    first = view.wait_new_frame(None, timeout=180)
    step = view.wait_step_above(0, timeout=180)
    second = view.wait_new_frame(first)  # frames keep arriving, with new pixels
    assert view.wait_step_above(step) > step
    assert second["width"] == PARAMETERS["SIZE"]
    assert view.thumb(UNIT).get_attribute("data-selected") is not None


def test_editing_the_objective_mid_run(session, screenshot):
    view = session.view
    before = view.step()
    view.set_objective(f"{ALIAS}:{UNIT} - 0.5 * {ALIAS}:5")
    poll(lambda: view.objective_error() == "", 30, message="no error for a valid objective")
    applied = view.by_testid("lw-objective-applied")
    poll(lambda: not applied.is_visible(), 60, message="the run to take the new objective")
    assert view.status() == "running"
    after_edit = view.wait_step_above(before)  # no restart at step 0: the run continued
    view.wait_new_frame(view.preview())

    view.set_objective(f"{ALIAS}:{UNIT} +* )")
    error = poll(view.objective_error, 30, message="an inline error for a bad objective")
    assert view.by_testid("lw-objective").get_attribute("aria-invalid") == "true"
    assert view.by_testid("lw-objective-error-snippet").count() == 1, error
    assert view.status() == "running"
    view.wait_step_above(after_edit)  # the last valid objective keeps running
    screenshot(session.lab.page, "-error")

    view.set_objective(f"blokc3:{UNIT}")  # a misspelt layer: "did you mean" buttons
    suggestion = view.by_testid("lw-objective-suggestion").filter(has_text=re.compile(f"^{ALIAS}$"))
    suggestion.first.wait_for(state="visible", timeout=30_000)
    suggestion.first.click()  # replaces the bad name and applies
    poll(lambda: view.objective_error() == "", 30, message="the error to clear")
    assert view.objective_input().input_value() == f"{ALIAS}:{UNIT}"


def test_the_kernel_runs_other_cells_while_rendering(session):
    view = session.view
    assert view.status() == "running"
    before = view.step()
    index = find_cell(session.path, "1 + 1")
    assert session.lab.run_cell(index, timeout_ms=60_000).strip() == "2"
    assert session.lab.run_code("w.running, w.objective").strip() == f"(True, '{ALIAS}:{UNIT}')"
    assert view.status() == "running"
    view.wait_step_above(before)


def test_stop_halts_the_frames(session):
    view, lab = session.view, session.lab
    view.by_testid("lw-stop").click()
    poll(lambda: view.status() not in ("running", ""), 60, message="the run to stop")
    # The kernel blocks until its worker is idle and every frame is published (w.wait): after
    # that no frame can be in flight, so the page must settle on the kernel's last step.
    idle, step = ast.literal_eval(lab.run_code("w.wait(60), w.step").strip())
    assert idle is True

    def settled() -> dict | None:
        now = view.preview()
        return now if now and now["step"] == str(step) and view.step() == step else None

    frame = poll(settled, 60, message=f"the page to show the kernel's last step {step}")
    # the worker stays idle: a second round trip through the kernel sees the same step, and the
    # page has not moved
    assert lab.run_code("w.wait(0), w.running, w.step").strip() == f"(True, False, {step})"
    assert view.step() == step
    assert view.preview() == frame
    assert view.by_testid("lw-resume").is_visible()
    assert not view.by_testid("lw-stop").is_visible()


# Decoded sizes of the images under a selector (0 until an image is decoded).
_DECODED_JS = """([root, selector]) => [...root.querySelectorAll(selector)].map(
  (img) => (img.complete ? img.naturalWidth : 0))"""


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), (120, 130, 140)).save(buffer, "PNG")
    return buffer.getvalue()


def decoded_widths(view: MicroscopeView, selector: str) -> list[int]:
    return list(view.page.evaluate(_DECODED_JS, [view.root.element_handle(), selector]))


def test_unit_examples_and_the_sample_panel(session, screenshot):
    view, lab = session.view, session.lab
    lab.run_cell(find_cell(session.path, "skimage.data.chelsea(),"), timeout_ms=120_000)
    states = lab.run_code(
        "w.set_dataset(dataset, k=6)\nw.sample = skimage.data.chelsea()\nw.wait(timeout=300)\n"
        "w.examples_status['state'], w.sample_info['state']",
        timeout_ms=360_000,
    )
    assert states.strip() == "('done', 'done')"
    examples = view.by_testid("lw-examples")
    examples.wait_for(state="visible", timeout=30_000)
    for which in ("top", "bottom"):
        cards = f'[data-testid="lw-examples-row"][data-which="{which}"] [data-testid="lw-example"]'
        poll(lambda cards=cards: view.root.locator(cards).count() == 6, 30, message=which)
        poll(
            lambda cards=cards: all(w > 0 for w in decoded_widths(view, f"{cards} img")),
            30,
            message=f"decoded {which} example images",
        )
    assert len(decoded_widths(view, '[data-testid="lw-example-crop"]')) == 12
    sample = view.by_testid("lw-sample")
    assert sample.get_attribute("data-state") == "done"
    poll(lambda: view.by_testid("lw-prediction").count() == 5, 30, message="5 predictions")
    assert "cat" in view.by_testid("lw-predictions").inner_text().lower()
    poll(lambda: view.by_testid("lw-sample-unit").count() == 8, 30, message="top units")
    poll(lambda: decoded_widths(view, '[data-testid="lw-sample-image"]')[0] > 0, 30,
         message="the sample image")  # fmt: skip
    assert view.by_testid("lw-unit-view-deepdream").is_enabled()  # a sample image exists now
    upload = {"name": "grey.png", "mimeType": "image/png", "buffer": _png_bytes()}
    view.by_testid("lw-sample-upload").set_input_files(upload)  # the file goes to Python
    poll(lambda: view.by_testid("lw-sample-name").inner_text() == "grey.png", 60, message="upload")
    poll(lambda: sample.get_attribute("data-state") == "done", 60, message="the upload's forward")
    assert view.by_testid("lw-prediction").count() == 5
    view.by_testid("lw-grid-view-example").click()
    poll(lambda: view.rendered_count() == PARAMETERS["PAGE_SIZE"], 30, message="top examples")
    poll(lambda: all(tile["width"] > 0 for tile in view.thumbs()), 30, message="decoded tiles")
    screenshot(lab.page, "-examples")
    view.by_testid("lw-grid-view-visualization").click()
    poll(lambda: view.root.locator('[data-testid="lw-grid"][data-view="visualization"]').count(),
         30, message="the visualizations back")  # fmt: skip


def test_static_html_export_works_offline(session, browser, tmp_path, screenshot):
    session.lab.run_code(f"w.save_html({str(tmp_path / 'export.html')!r})", timeout_ms=120_000)
    page = new_page(browser)
    try:
        with serve_folder(tmp_path) as base_url:
            aborted = block_other_hosts(page, base_url)
            page.goto(f"{base_url}/export.html", wait_until="load")
            page.wait_for_selector("body[data-ready='true']", timeout=60_000)
            view = MicroscopeView(page)
            view.wait_visible(60_000)
            page._e2e_focus = ROOT
            screenshot(page, "-static")
            assert view.by_testid("lw-readonly-badge").is_visible()
            assert view.root.locator(RENDERED_THUMB).count() == PARAMETERS["PAGE_SIZE"]
            poll(lambda: all(tile["width"] > 0 for tile in view.thumbs()), 30, message="tiles")
            assert view.preview() is not None
            assert view.objective_input().get_attribute("readonly") is not None
            assert view.by_testid("lw-example").count() == 12  # dataset examples, top and bottom
            assert view.by_testid("lw-prediction").count() == 5  # the sample panel
        assert aborted == [], f"the static page tried to reach the network: {aborted}"
    finally:
        page.context.close()


def test_the_rest_of_the_notebook_runs(session, lab_server):
    lab = session.lab
    for index in range(session.widget_cell + 1, lab.cell_count()):
        lab.run_cell(index, timeout_ms=300_000)
    images = find_cell(session.path, "lw.show(w.images)")
    assert any("image/png" in output.get("data", {}) for output in lab.outputs(images))
    render_vis = find_cell(session.path, "lw.render_vis(")
    assert any("image/png" in output.get("data", {}) for output in lab.outputs(render_vis))
    assert (lab_server.root_dir / "microscope.html").stat().st_size > 10_000
    assert session.view.layer_item("_blocks.10").get_attribute("data-selected") is not None
