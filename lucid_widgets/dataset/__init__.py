"""Real images through the network: dataset examples, image readers and sample views.

- :func:`dataset_examples` (:mod:`.examples`): the top and bottom images of every unit of some
  layers over a dataset, in one streaming pass, cached on disk (:mod:`.cache`, :mod:`.keys`).
- :func:`sample_view` (:mod:`.sample`): one image's predictions, top units and activation maps.
- :mod:`.sources`, :mod:`.images`, :mod:`.prepare`: folders, tensors, datasets and single images
  read into ``(C, H, W)`` floats in ``[0, 1]``.
"""

from lucid_widgets.dataset.examples import ExamplesResult, LayerExamples, dataset_examples
from lucid_widgets.dataset.sample import SampleView, sample_view

__all__ = ["ExamplesResult", "LayerExamples", "SampleView", "dataset_examples", "sample_view"]
