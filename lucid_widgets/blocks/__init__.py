"""The building blocks of interpretability (Olah et al., 2018) on any ``nn.Module``.

- :func:`attribution` (:mod:`.attribution`): activation x gradient (or integrated gradients) of
  a layer to a class, a pair of classes, a unit, a later position or any objective.
- :func:`neuron_groups` (:mod:`.groups`): NMF of a layer's ``(positions, units)`` map into
  groups of units that fire together, each with its spatial map and direction objective.
- :func:`connections` (:mod:`.connections`): the units of another layer most strongly connected
  to a unit (expanded weights on linear paths, attribution elsewhere).

Everything takes the images the rest of the package accepts (path, PIL image, array, tensor) and
leaves the model exactly as found.
"""

from lucid_widgets.blocks.attribution import Attribution, attribution
from lucid_widgets.blocks.connections import Connections, connections, layer_connections
from lucid_widgets.blocks.groups import NeuronGroups, neuron_groups

__all__ = [
    "Attribution",
    "Connections",
    "NeuronGroups",
    "attribution",
    "connections",
    "layer_connections",
    "neuron_groups",
]
