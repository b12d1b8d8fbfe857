"""Notebook widgets: :class:`Microscope` (layer browser, unit grid, live unit detail) and
:class:`LivePreview` (a live optimization with its objective editor).

The widget holds no math: it asks the engine (:mod:`lucid_widgets.optvis`), the zoo and the
dataset package for every number and image, in one worker thread per widget.
"""

from lucid_widgets.widget.live import LiveCallback, live_render
from lucid_widgets.widget.microscope import Microscope
from lucid_widgets.widget.preview import LivePreview

__all__ = ["LiveCallback", "LivePreview", "Microscope", "live_render"]
