"""Reading the Microscope widget's DOM (selectors from docs/WIDGET_DOM.md) in a Playwright page."""

from __future__ import annotations

import re
from typing import Any

from e2e_harness import poll

ROOT = '[data-testid="lw-root"]'
THUMB = '[data-testid="lw-thumb"]'
RENDERED_THUMB = '[data-testid="lw-thumb"][data-rendered]'
PREVIEW = '[data-testid="lw-preview"]'

# A cheap fingerprint of the preview's pixels (blob: URLs are same-origin, so the canvas is
# readable). Returns null until an image is decoded.
_PREVIEW_JS = """(root) => {
  const img = root.querySelector('[data-testid="lw-preview"]');
  if (!img || img.hidden || !img.complete || !img.naturalWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let hash = 0;
  for (let i = 0; i < pixels.length; i++) hash = (Math.imul(hash, 31) + pixels[i]) >>> 0;
  return { hash, src: img.src, step: img.dataset.step, width: img.naturalWidth };
}"""

_THUMBS_JS = """(root) => [...root.querySelectorAll('[data-testid="lw-thumb"]')].map((tile) => {
  const img = tile.querySelector('img');
  return { unit: Number(tile.dataset.unit), rendered: tile.hasAttribute('data-rendered'),
           width: img && img.complete ? img.naturalWidth : 0 };
})"""


class MicroscopeView:
    """The first (or ``index``-th) Microscope widget on a page.

    Parameters
    ----------
    page
        A Playwright ``Page`` showing the widget.
    index
        Which ``lw-root`` on the page (a notebook may display several).
    """

    def __init__(self, page: Any, index: int = 0) -> None:
        self.page = page
        self.root = page.locator(ROOT).nth(index)

    def by_testid(self, testid: str) -> Any:
        return self.root.locator(f'[data-testid="{testid}"]')

    def wait_visible(self, timeout_ms: int = 180_000) -> None:
        self.root.wait_for(state="visible", timeout=timeout_ms)

    # ---- layers and grid ---------------------------------------------------------------------
    def layer_item(self, layer: str) -> Any:
        return self.root.locator(f'[data-testid="lw-layer-item"][data-layer="{layer}"]')

    def thumbs(self) -> list[dict]:
        """Every tile of the grid page: unit, rendered flag and decoded image width."""
        return list(self.root.evaluate(_THUMBS_JS))

    def rendered_count(self) -> int:
        return self.root.locator(RENDERED_THUMB).count()

    def thumb(self, unit: int) -> Any:
        return self.root.locator(f'{THUMB}[data-unit="{unit}"]')

    # ---- live preview ------------------------------------------------------------------------
    def status(self) -> str:
        return self.by_testid("lw-status").get_attribute("data-status") or ""

    def step(self) -> int:
        """The step counter shown next to the preview (``step 12 / 512`` -> 12)."""
        match = re.search(r"\d+", self.by_testid("lw-step").inner_text())
        return int(match.group()) if match else -1

    def preview(self) -> dict | None:
        """``{hash, src, step, width}`` of the decoded preview image, or None."""
        return self.root.evaluate(_PREVIEW_JS)

    def objective_input(self) -> Any:
        return self.by_testid("lw-objective")

    def set_objective(self, text: str) -> None:
        """Type an expression into the editor and press Enter, as a user would."""
        field = self.objective_input()
        field.click()
        field.fill(text)
        field.press("Enter")

    def objective_error(self) -> str:
        """The inline error's text ('' when hidden)."""
        error = self.by_testid("lw-objective-error")
        return error.inner_text() if error.is_visible() else ""

    def wait_step_above(self, step: int, timeout: float = 120.0) -> int:
        """Wait until the step counter passes ``step``; return the new value."""
        found = poll(
            lambda: [value] if (value := self.step()) > step else None,
            timeout,
            message=f"step counter to pass {step}",
        )
        return int(found[0])

    def wait_new_frame(self, before: dict | None, timeout: float = 120.0) -> dict:
        """Wait until a decoded preview differs from ``before`` (source and pixels)."""

        def changed() -> dict | None:
            now = self.preview()
            if now is None:
                return None
            if before is None or (now["src"] != before["src"] and now["hash"] != before["hash"]):
                return now
            return None

        return poll(changed, timeout, message="a new preview frame")
