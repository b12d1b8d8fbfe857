"""The Microscope is composed of parts (no mixin): their checks answer through its traits, and
its public names reach the part that holds the state."""

from __future__ import annotations

import re

import numpy as np
import pytest
import traitlets

from lucid_widgets.widget import Microscope
from lucid_widgets.widget.base import WidgetBase

TIMEOUT = 60


@pytest.fixture
def widget(tiny_net, fake_engine, recording_comm, close_widgets) -> Microscope:
    scope = Microscope(tiny_net, layer="early", page_size=4, grid_settings={"size": 8, "steps": 2})
    close_widgets.append(scope)
    assert scope.wait(TIMEOUT)
    return scope


def test_the_microscope_inherits_only_the_widget_base():
    assert Microscope.__bases__ == (WidgetBase,)
    assert not any("Mixin" in cls.__name__ for cls in Microscope.__mro__)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("layer", "erly", "unknown layer 'erly'; did you mean early"),
        ("page_size", 0, "page_size must be 1..1024, got 0"),
        ("grid_kind", "pixel", "grid_kind: "),
        ("grid_view", "both", "grid_view must be one of"),
        ("unit_view", "sideways", "unit_view must be one of"),
        ("unit_view", "deepdream", "the deepdream view needs a sample image"),
        ("sample_view", "tiles", "sample_view must be one of"),
        ("sample_target", -2, "sample_target must be -1 (the top prediction) or a class index"),
        ("unit", 99, "unit 99 is out of range for layer 'relu1' (0..7)"),
    ],
)
def test_each_part_checks_its_traits_with_a_clear_error(widget, name, value, message):
    before = getattr(widget, name)
    with pytest.raises(traitlets.TraitError, match=re.escape(message)):
        setattr(widget, name, value)
    assert getattr(widget, name) == before


def test_the_public_names_reach_the_grid_and_the_blocks(widget):
    assert widget.layer == "relu1"  # the alias, stored as the dotted name
    assert widget.layer_name("late") == "relu2" and widget.layer_units("late") == 16
    assert widget.page_units() == [0, 1, 2, 3]
    assert sorted(widget.grid_thumbnails()) == [0, 1, 2, 3]
    assert widget.grid_config.size == 8 and widget.thumbnail_kind == "channel"
    pixels = np.full((2, 8, 8, 3), 200, np.uint8)  # (n, H, W, 3)
    widget.put_thumbnails("late", [5, 6], pixels)
    assert sorted(widget.layer_thumbnails("relu2")) == [5, 6]
    assert np.allclose(widget.grid_images("late")[5], 200 / 255, atol=0.02)  # JPEG round trip
    widget.page_size = 3
    assert widget.wait(TIMEOUT) and widget.page_units() == [0, 1, 2]
    assert widget.connections is None and widget.sample_block is None  # no unit, no sample
    with pytest.raises(ValueError, match="no neuron groups yet"):
        widget.open_group(0)
