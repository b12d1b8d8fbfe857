"""The building blocks of interpretability (Olah et al., 2018) on any ``nn.Module``.

- :func:`attribution` (:mod:`.attribution`): activation x gradient (or integrated gradients) of
  a layer to a class, a pair of classes, a unit, a later position or any objective.
- :func:`neuron_groups` (:mod:`.groups`): NMF of a layer's ``(positions, units)`` map into
  groups of units that fire together, each with its spatial map and direction objective.
- :func:`semantic_dictionary`, :func:`activation_grid` / :func:`iter_activation_grid`
  (:mod:`.grid`): per position of a layer, its top units, or a feature visualization of its
  whole activation vector (all positions as one batch, streamed).
- :func:`connections` (:mod:`.connections`): the units of another layer most strongly connected
  to a unit (expanded weights on linear paths, attribution elsewhere).
- :func:`heatmap_overlay`, :func:`groups_overlay`, :func:`as_seen` (:mod:`.overlays`): the
  maps over the photo, as ``(H, W, 3)`` uint8 pictures.

Everything takes the images the rest of the package accepts (path, PIL image, array, tensor) and
leaves the model exactly as found.
"""

from lucid_widgets.blocks.attribution import Attribution, attribution
from lucid_widgets.blocks.connections import Connections, connections, layer_connections
from lucid_widgets.blocks.grid import (
    GridCells,
    SemanticDictionary,
    activation_grid,
    iter_activation_grid,
    semantic_dictionary,
)
from lucid_widgets.blocks.groups import NeuronGroups, neuron_groups
from lucid_widgets.blocks.overlays import as_seen, group_colors, groups_overlay, heatmap_overlay

__all__ = [
    "Attribution",
    "Connections",
    "GridCells",
    "NeuronGroups",
    "SemanticDictionary",
    "activation_grid",
    "as_seen",
    "attribution",
    "connections",
    "group_colors",
    "groups_overlay",
    "heatmap_overlay",
    "iter_activation_grid",
    "layer_connections",
    "neuron_groups",
    "semantic_dictionary",
]
