"""The exported atlas site in Chromium, opened from ``file://`` with every other request blocked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_harness import block_other_hosts, new_page  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class FakeConnections:
    """What ``blocks.connections`` returns, for a site test that needs no blocks engine."""

    def __init__(self, units, strength, source):
        self.units, self.strength, self.source, self.method = units, strength, source, "test"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from tiny_models import tiny_net

    from lucid_widgets import atlas
    from lucid_widgets.atlas import links

    root = tmp_path_factory.mktemp("atlas")
    data = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def connections(model, layer, units, source=None, k=10, direction="in"):
        return [FakeConnections([unit, (unit + 1) % 4], [1.0, 0.5], source) for unit in units]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(links, "connections_function", lambda: connections)
        atlas.build(
            tiny_net(),
            root / "store",
            units=range(4),
            size=32,
            steps=2,
            batch_size=4,
            dataset=data,
            k=3,
            progress=False,
        )
    return atlas.export_site(root / "store", root / "site").out


@pytest.fixture
def page(browser, site):
    page = new_page(browser)
    base = site.as_uri()
    page._blocked = block_other_hosts(page, base)
    yield page
    page.context.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"atlas-site-{name}.png"), full_page=True)


def _all_loaded(page, selector: str) -> bool:
    return page.eval_on_selector_all(
        selector, "els => els.length > 0 && els.every(e => e.complete && e.naturalWidth > 0)"
    )


def test_model_page_lists_layers_in_order_with_pictures(page, site):
    page.goto((site / "index.html").as_uri())
    page.wait_for_selector(".layer-row")
    names = page.eval_on_selector_all(".layer-row .name", "els => els.map(e => e.textContent)")
    assert names == ["early", "late"]
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert _all_loaded(page, ".strip img")
    page.fill("#filter", "lat")
    visible = page.eval_on_selector_all(
        ".layer-row", "els => els.filter(e => e.style.display !== 'none').length"
    )
    assert visible == 1
    _shot(page, "model")
    assert page._blocked == [] and not [m for m in page._e2e_console if "pageerror" in m]


def test_layer_grid_shows_every_thumbnail_and_switches_views(page, site):
    page.goto((site / "index.html").as_uri() + "#/layer/early")
    page.wait_for_selector("#grid .cell img")
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert page.locator("#grid .cell").count() == 4 and _all_loaded(page, "#grid img")
    first = page.get_attribute("#grid img", "src")
    page.click("button[data-view=negative]")
    page.wait_for_function(f"() => document.querySelector('#grid img').src.indexOf({first!r}) < 0")
    assert "negative" in page.get_attribute("#grid img", "src")
    _shot(page, "layer")
    assert page._blocked == []


def test_unit_page_by_url_has_examples_boxes_and_keyboard_navigation(page, site):
    page.goto((site / "index.html").as_uri() + "#/layer/late/unit/1")
    page.wait_for_selector("#examples .example img")
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert page.locator("#examples .example").count() == 6  # k=3 top + 3 bottom
    assert _all_loaded(page, "#examples img") and page.locator(".example .box").count() == 6
    assert "Connections" in page.inner_text("#unit-body")
    inputs = page.eval_on_selector_all("#connections a.link", "els => els.map(e => e.hash)")
    assert "#/layer/early/unit/1" in inputs and "#/layer/early/unit/2" in inputs
    assert _all_loaded(page, "#connections img")
    _shot(page, "unit")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => location.hash === '#/layer/late/unit/2'")
    assert "late unit 2" in page.inner_text("h1")
    assert page._blocked == []
