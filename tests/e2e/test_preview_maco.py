"""A MACO preview with alpha in Chromium: the frame's transparency shows the checkerboard.

No JupyterLab: the preview runs here, its static export (``save_html``) is served from
127.0.0.1 with every other request blocked, and the page reads the decoded frame's alpha.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_harness import block_other_hosts, new_page, poll, serve_folder  # noqa: E402

SIZE = 128

# The decoded preview frame's alpha and the wrap's background, read through a canvas.
_ALPHA_JS = """(img) => {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let low = 255, high = 0, clear = 0;
  for (let i = 3; i < data.length; i += 4) {
    low = Math.min(low, data[i]); high = Math.max(high, data[i]); clear += data[i] < 32;
  }
  const wrap = getComputedStyle(img.parentElement).backgroundImage;
  return { width: img.naturalWidth, low, high, clear: clear / (data.length / 4), wrap };
}"""


def test_maco_preview_shows_its_transparency_over_a_checkerboard(
    browser, tmp_path, widget_bundle, screenshot
):
    from tiny_models import tiny_net

    from lucid_widgets.widget import LivePreview

    settings = {"size": SIZE, "steps": 24, "param": "maco", "alpha": True, "seed": 0}
    widget = LivePreview(tiny_net(), "late:3", settings=settings)
    try:
        assert widget.wait(120) and widget.status == "done", widget.message
        assert widget.frame_meta["mime"] == "image/webp"
        widget.save_html(tmp_path / "preview.html")
    finally:
        widget.close()
    page = new_page(browser)
    try:
        with serve_folder(tmp_path) as base_url:
            aborted = block_other_hosts(page, base_url)
            page.goto(f"{base_url}/preview.html", wait_until="load")
            page.wait_for_selector("body[data-ready='true']", timeout=60_000)
            image = page.locator('[data-testid="lw-preview"]')
            image.wait_for(state="visible", timeout=60_000)
            poll(lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"), 30,
                 message="the frame decoded")  # fmt: skip
            seen = image.evaluate(_ALPHA_JS)
            page.locator('[data-testid="lw-settings"] summary').click()  # the settings form
            param = page.locator('[data-testid="lw-setting-param"]')
            options = param.evaluate("select => [...select.options].map((o) => o.value)")
            chosen = (
                param.input_value(),
                page.locator('[data-testid="lw-setting-alpha"]').is_checked(),
            )
            page._e2e_focus = '[data-testid="lw-root"]'
            screenshot(page, "-maco-alpha")
        assert seen["width"] == SIZE  # the 2x canvas, shown at the requested size
        assert seen["low"] < 32 and seen["high"] == 255  # transparent and opaque parts
        assert 0.02 < seen["clear"] < 0.98  # some of it clear, not all
        assert "conic-gradient" in seen["wrap"]  # the checkerboard behind the image
        assert options == ["fft", "pixel", "maco"] and chosen == ("maco", True)
        assert aborted == [], f"the page tried to reach the network: {aborted}"
    finally:
        page.context.close()
