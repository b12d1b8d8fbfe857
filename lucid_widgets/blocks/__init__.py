"""The building blocks of interpretability (Olah et al., 2018) on any ``nn.Module``.

- :func:`attribution` (:mod:`.attribution`): activation x gradient (or integrated gradients) of
  a layer to a class, a pair of classes, a unit, a later position or any objective.
- :func:`connections` (:mod:`.connections`): the units of another layer most strongly connected
  to a unit (expanded weights on linear paths, attribution elsewhere).

Everything takes the images the rest of the package accepts (path, PIL image, array, tensor) and
leaves the model exactly as found.
"""

from lucid_widgets.blocks.attribution import Attribution, attribution
from lucid_widgets.blocks.connections import Connections, connections, layer_connections

__all__ = ["Attribution", "Connections", "attribution", "connections", "layer_connections"]
