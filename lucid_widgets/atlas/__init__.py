"""The atlas: a whole model precomputed into a folder of plain files, browsed from the store.

>>> import lucid_widgets as lw                                                # doctest: +SKIP
>>> atlas = lw.atlas.build(model, "atlases/tiny", units=range(16), steps=64)  # doctest: +SKIP
>>> atlas.layers, atlas.units("early"), atlas.image("early", 3).shape         # doctest: +SKIP
>>> lw.atlas.export_site("atlases/tiny", "site/")                              # doctest: +SKIP

- :func:`build` (:mod:`.build`): plan, resume, run locally or on Ray (:mod:`.distributed`);
  :func:`shutdown_workers` ends the Ray actors that later builds would reuse.
- :func:`open` / :class:`Atlas` (:mod:`.store`): read images, examples, connections; check
  completeness; write pictures back. Format: docs/ATLAS_FORMAT.md.
- :func:`export_site` (:mod:`.site`): a static Microscope website of an atlas.
"""

from lucid_widgets.atlas.build import build, open_atlas
from lucid_widgets.atlas.distributed import shutdown_workers
from lucid_widgets.atlas.files import AtlasLockedError
from lucid_widgets.atlas.site import export_site
from lucid_widgets.atlas.store import (
    FORMAT_VERSION,
    Atlas,
    AtlasCorruptError,
    AtlasError,
    AtlasSettingsError,
    AtlasWeightsError,
    Problem,
)

open = open_atlas  # noqa: A001  lw.atlas.open(folder): the store, for reading

__all__ = [
    "FORMAT_VERSION",
    "Atlas",
    "AtlasCorruptError",
    "AtlasError",
    "AtlasLockedError",
    "AtlasSettingsError",
    "AtlasWeightsError",
    "Problem",
    "build",
    "export_site",
    "open",
    "open_atlas",
    "shutdown_workers",
]
