"""The harness itself: a minimal inline anywidget renders and syncs in a live JupyterLab."""

from __future__ import annotations

import pytest
from e2e_harness import CellError, block_other_hosts, new_page, serve_folder
from e2e_server import write_notebook

pytestmark = pytest.mark.e2e

TINY_WIDGET = '''
import anywidget
import traitlets


class Tiny(anywidget.AnyWidget):
    _esm = """
    export default {
      render({ model, el }) {
        const box = document.createElement("div");
        box.dataset.testid = "tiny";
        const show = () => { box.textContent = "count=" + model.get("count"); };
        show();
        model.on("change:count", show);
        box.addEventListener("click", () => {
          model.set("clicks", model.get("clicks") + 1);
          model.save_changes();
        });
        el.appendChild(box);
      },
    };
    """
    count = traitlets.Int(0).tag(sync=True)
    clicks = traitlets.Int(0).tag(sync=True)


tiny = Tiny(count=7)
tiny
'''


def test_tiny_anywidget_renders_and_syncs(lab_server, open_notebook):
    write_notebook(
        lab_server.root_dir / "harness_smoke.ipynb",
        [
            TINY_WIDGET,
            "tiny.count = 41",
            "tiny.clicks",
            "1 + 1",
            "raise ValueError('boom')",
        ],
    )
    lab = open_notebook("harness_smoke.ipynb")
    lab.run_cell(0)
    widget = lab.page.locator('[data-testid="tiny"]')
    widget.wait_for(state="visible", timeout=120_000)
    assert widget.inner_text() == "count=7"

    lab.run_cell(1)  # Python -> browser
    lab.page.wait_for_function(
        "() => document.querySelector('[data-testid=\"tiny\"]').textContent === 'count=41'"
    )

    widget.click()  # browser -> Python
    widget.click()
    lab.page.wait_for_timeout(500)
    assert lab.run_cell(2).strip() == "2"
    assert lab.run_cell(3).strip() == "2"

    with pytest.raises(CellError, match="ValueError: boom"):
        lab.run_cell(4)


def test_offline_page_blocks_other_hosts(browser, tmp_path, screenshot):
    (tmp_path / "local.js").write_text("document.body.dataset.local = 'yes';")
    (tmp_path / "index.html").write_text(
        "<html><body><p id='hello'>hello</p>"
        "<script src='local.js'></script>"
        "<script src='https://cdn.example.com/require.js'></script></body></html>"
    )
    page = new_page(browser)
    try:
        with serve_folder(tmp_path) as base_url:
            aborted = block_other_hosts(page, base_url)
            page.goto(f"{base_url}/index.html", wait_until="load")
            assert page.inner_text("#hello") == "hello"
            assert page.evaluate("() => document.body.dataset.local") == "yes"
        assert aborted == ["https://cdn.example.com/require.js"]
        screenshot(page)
    finally:
        page.context.close()
