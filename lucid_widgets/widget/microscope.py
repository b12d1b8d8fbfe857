"""The :class:`Microscope` widget: layer browser + unit grid + live unit detail (with its
per-unit views and dataset examples) + a sample image through the network."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import traitlets
from torch import nn

from lucid_widgets.widget import engine
from lucid_widgets.widget.base import WidgetBase
from lucid_widgets.widget.blocks_api import BuildingBlocks
from lucid_widgets.widget.examples import ExamplesPanel
from lucid_widgets.widget.jobs import PreviewRequest, ThumbnailCache
from lucid_widgets.widget.sample import SamplePanel, dataset_item, decode_upload
from lucid_widgets.widget.traits import binary_trait
from lucid_widgets.widget.unit_detail import UnitDetail
from lucid_widgets.widget.unit_grid import UnitGrid

__all__ = ["Microscope"]


class Microscope(WidgetBase):
    """OpenAI Microscope for any PyTorch model, inside a notebook cell.

    Pick a layer to see one feature visualization per unit (rendered in batches, streamed in
    page by page and cached); click a unit for a live optimization whose objective you can edit
    while it runs; shift-click thumbnails to add units to the objective. With a dataset
    (:meth:`set_dataset`) the unit detail shows the unit's top and bottom dataset examples and the
    grid can show each unit's top example; with a sample image (``w.sample = image`` or an upload
    in the widget) the Sample panel shows the predictions and the units it excites most. The unit
    detail's views: channel, neuron, negative, diversity (four distinct images), and DeepDream,
    caricature or feature accentuation of the sample image. Under the preview, the unit's
    connections: the units of the previous layer that feed it and of the next layer that it feeds
    (``w.connections``); click one to open it. With a sample image, ``w.sample_view`` picks the
    Sample panel's view of the open layer: ``"units"``, ``"groups"`` (neuron groups;
    ``w.open_group(i)``), ``"dictionary"``, ``"grid"`` (activation grid) or ``"attribution"`` (to
    ``w.sample_target``, default the top prediction); ``w.sample_block`` is its result.

    Parameters
    ----------
    model
        Any ``nn.Module``; zoo models (``lw.zoo.load``) have readable layer aliases.
    layer
        Layer to open at once (dotted path or alias); ``None`` shows only the layer list.
    settings
        Live preview settings (see :class:`LivePreview`).
    grid_settings
        Thumbnail settings: size, steps, param, decorrelate, transforms, batch_size, seed.
    page_size
        Units per grid page (rendered on demand).
    dataset, examples_k
        Dataset whose top and bottom ``examples_k`` images per unit are shown (see
        :meth:`set_dataset`); computed in the widget's worker.
    sample
        A sample image (path, PIL image, array, tensor) to run through the network.
    atlas
        An atlas folder (``lucid_widgets.atlas.build``) of this model: grid pages, the stored unit
        views, dataset examples and connections come from it at once, with no rendering; only
        what it lacks (or a corrupt file) is rendered live, with its settings. The model's
        weights must be the atlas's (``AtlasWeightsError`` otherwise).
    write_back
        With ``atlas``: write the thumbnails the widget renders with the atlas's settings back
        into the atlas (``Atlas.put``), so the next Microscope finds them stored.

    Examples
    --------
    >>> w = Microscope(lw.zoo.load("inceptionv1"), layer="mixed4a")   # doctest: +SKIP
    >>> w.unit = 476              # opens the unit and starts its live optimization
    >>> w.objective = "mixed4a:476 - 0.5 * mixed4a:465"
    >>> w.stop(); w.images.shape  # (1, 128, 128, 3)
    >>> w.set_dataset(images, k=9)  # top / bottom examples of each unit, in the unit detail
    >>> w.sample = "cat.jpg"        # predictions and the units the photo excites most
    >>> w.unit_view = "caricature"  # feature inversion of the sample at the open unit's layer
    >>> w.connections.inputs.units  # the units of the previous layer that feed the open unit
    >>> w.sample_view = "groups"    # neuron groups of the open layer on the sample image
    >>> w = Microscope(model, atlas="atlases/lite0")  # doctest: +SKIP
    """

    mode = traitlets.Unicode("microscope").tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    unit = traitlets.Int(-1).tag(sync=True)
    grid_kind = traitlets.Unicode("channel").tag(sync=True)
    grid_negative = traitlets.Bool(False).tag(sync=True)
    grid_settings = traitlets.Dict().tag(sync=True)
    page = traitlets.Int(0).tag(sync=True)
    page_size = traitlets.Int(64).tag(sync=True)
    grid_blob = binary_trait()
    grid_index = traitlets.List(traitlets.Dict()).tag(sync=True)
    grid_progress = traitlets.Dict().tag(sync=True)
    unit_view = traitlets.Unicode("channel").tag(sync=True)
    # the dataset examples panel (ExamplesPanel)
    examples_k = traitlets.Int(9).tag(sync=True)
    examples_status = traitlets.Dict().tag(sync=True)
    unit_examples = traitlets.Dict().tag(sync=True)
    unit_examples_blob = binary_trait()
    grid_view = traitlets.Unicode("visualization").tag(sync=True)
    grid_examples = traitlets.Dict().tag(sync=True)
    grid_examples_blob = binary_trait()
    # the Sample panel (SamplePanel)
    sample_image = binary_trait()
    sample_info = traitlets.Dict().tag(sync=True)
    sample_blob = binary_trait()
    # the building blocks (BuildingBlocks): the unit's connections and the Sample panel's views
    unit_connections = traitlets.Dict().tag(sync=True)
    unit_connections_blob = binary_trait()
    sample_view = traitlets.Unicode("units").tag(sync=True)
    sample_target = traitlets.Int(-1).tag(sync=True)
    sample_blocks = traitlets.Dict().tag(sync=True)
    sample_blocks_blob = binary_trait()
    # the Microscope on an atlas (AtlasSource, read through the UnitGrid)
    atlas_info = traitlets.Dict().tag(sync=True)

    def __init__(
        self,
        model: nn.Module,
        layer: str | None = None,
        *,
        settings: dict | None = None,
        grid_settings: dict | None = None,
        page_size: int = 64,
        dataset: Any = None,
        examples_k: int = 9,
        sample: Any = None,
        atlas: str | os.PathLike | None = None,
        write_back: bool = False,
        **kwargs: Any,
    ) -> None:
        cache = ThumbnailCache()  # the worker renders into it, the panels read it
        self._grid = UnitGrid(self, cache)
        self._examples = ExamplesPanel(self, model)
        self._sample = SamplePanel(self, model)
        self._detail = UnitDetail(self._sample)
        self._blocks = BuildingBlocks(self, model, self._sample, self._grid)
        super().__init__(
            model, catalog=_catalog, cache=cache, settings=settings,
            grid_settings=grid_settings or {}, page_size=page_size, **kwargs,
        )  # fmt: skip
        self._grid.add_rows(self.layers)
        self._actions.update({
            "open_unit": lambda content, buffers: self.open_unit(
                int(content["unit"]), content.get("layer")
            ),
            "grid_resume": lambda content, buffers: self._worker.submit("grid_resume"),
            "unit_view": lambda content, buffers: setattr(
                self, "unit_view", str(content.get("view"))
            ),
            "sample_upload": self._on_upload,
            "sample_example": lambda content, buffers: self.sample_from_example(
                int(content["index"])
            ),
        })  # fmt: skip
        self._actions.update(self._blocks.actions())
        with self._constructing():  # a bad layer, dataset or sample leaves no thread behind
            if atlas is not None:
                self._open_atlas(atlas, write_back, grid_settings or {})
            if layer:
                self.layer = layer
            if dataset is not None:
                self.set_dataset(dataset, k=examples_k)
            if sample is not None:
                self.set_sample(sample)

    # ---- layer and grid (UnitGrid) ------------------------------------------------------------
    @traitlets.validate("layer", "page_size", "grid_kind", "grid_view")
    def _valid_grid(self, proposal: dict) -> Any:
        return self._grid.check(proposal["trait"].name, proposal["value"])

    @traitlets.validate("grid_settings")
    def _valid_grid_settings(self, proposal: dict) -> dict:
        return self._merged(proposal["value"], self._grid.config, "grid settings").to_dict()

    @traitlets.observe("layer")
    def _on_layer(self, change: dict) -> None:
        if self.page != 0:
            self.page = 0  # its observer requests the grid
        else:
            self._request_grid()
            self._examples.publish_grid()
        self._examples.request()
        self._sample.request()
        self._blocks.views.request()

    @traitlets.observe("page", "page_size", "grid_kind", "grid_negative")
    def _on_grid_view(self, change: dict) -> None:
        self._request_grid()
        if change["name"] in ("page", "page_size"):
            self._examples.publish_grid()
        else:  # the unit detail's view follows the grid's channel / neuron / negative toggles
            self._detail.follow_grid(self)

    @traitlets.observe("grid_progress")
    def _on_grid_progress(self, change: dict) -> None:
        if change["new"].get("state") == "done":
            self._sample.refresh_thumbnails()

    @traitlets.observe("grid_settings")
    def _on_grid_settings(self, change: dict) -> None:
        if self._grid.set_config(change["new"]):
            self._request_grid()

    def _request_grid(self) -> None:
        request = self._grid.request()
        if request is not None:
            self._worker.submit("grid", request)

    def page_units(self) -> list[int]:
        """Unit indices on the current page of the current layer."""
        return self._grid.page_units()

    def grid_images(
        self, layer: str | None = None, kind: str | None = None, negative: bool | None = None
    ) -> dict[int, np.ndarray]:
        """Rendered thumbnails of ``layer`` (default: the current one), unit -> ``(H, W, C)``.

        Only units already rendered with the current grid settings are included; arrays are
        float32 in [0, 1].
        """
        return self._grid.grid_images(layer, kind, negative)

    def grid_thumbnails(self) -> dict[int, bytes]:
        """Encoded (JPEG) thumbnails of the current layer's rendered units, current settings."""
        return self._grid.grid_thumbnails()

    def layer_name(self, layer: str) -> str:
        """The dotted module path of ``layer`` (a name or an alias)."""
        return self._grid.layer_name(layer)

    def layer_units(self, layer: str) -> int:
        """Number of units of ``layer``."""
        return self._grid.layer_units(layer)

    @property
    def grid_config(self) -> engine.GridConfig:
        """The thumbnail settings (``grid_settings``) as a config."""
        return self._grid.config

    @property
    def thumbnail_kind(self) -> str:
        """The objective kind thumbnails are rendered with (the grid's channel / neuron)."""
        return self._grid.thumbnail_kind

    def layer_thumbnails(self, layer: str) -> dict[int, bytes]:
        """Encoded thumbnails of ``layer``'s rendered units (grid settings, positive kind)."""
        return self._grid.layer_thumbnails(layer)

    def put_thumbnails(self, layer: str, units: list[int], pixels: np.ndarray) -> None:
        """Store rendered thumbnails ``(n, H, W, 3)`` uint8 of ``units`` in the grid's cache."""
        self._grid.put_thumbnails(layer, units, pixels)

    # ---- units ------------------------------------------------------------------------------
    @traitlets.validate("unit_view")
    def _valid_unit_view(self, proposal: dict) -> str:
        return self._detail.check(proposal["value"])

    @traitlets.observe("unit_view")
    def _on_unit_view(self, change: dict) -> None:
        if not self._detail.syncing and not self._opening and self.unit >= 0 and self.layer:
            self.open_unit(self.unit)

    def _preview_request(self, objective: Any) -> PreviewRequest:
        request = super()._preview_request(objective)
        if self.unit < 0 or not self.layer:
            return request
        return self._detail.prepare(request, self.objective)

    def _run_config(self, config: engine.PreviewConfig) -> engine.PreviewConfig:
        return self._detail.run_config(config)

    def open_unit(self, unit: int, layer: str | None = None) -> None:
        """Select ``unit`` (of ``layer``, default the current layer) and start optimizing it."""
        self._grid.unit_row(int(unit), layer or self.layer)
        self._opening = True
        try:
            with self.hold_sync():
                if layer:
                    self.layer = layer
                self.unit = int(unit)
                row, size = self._grid.row(self.layer), self._config.size
                objective = self._detail.open(self.unit_view, row, int(unit), self.grid_kind, size)
                self._set_objective(objective)
        finally:
            self._opening = False
        self._examples.publish_unit()
        if self._grid.atlas is None or not self._show_stored_unit():
            self.restart()
        self._blocks.open_unit()  # after the preview: it goes first

    @traitlets.validate("unit")
    def _valid_unit(self, proposal: dict) -> int:
        unit = proposal["value"]
        if unit != -1:  # -1: no unit open
            try:
                self._grid.unit_row(unit, self.layer)
            except ValueError as error:
                raise traitlets.TraitError(str(error)) from None
        return unit

    @traitlets.observe("unit")
    def _on_unit(self, change: dict) -> None:
        if not self._opening and change["new"] >= 0:
            self.open_unit(change["new"])

    def start(self) -> None:
        """Resume what :meth:`stop` halted: the live run (or a new one), the grid and a stopped
        dataset-examples pass (from its checkpoint)."""
        self._worker.submit("grid_resume")
        if self.examples_status.get("state") == "stopped":
            self._examples.request()
        self._blocks.resume_stopped()
        if self.objective.strip():
            super().start()

    def _on_upload(self, content: dict, buffers: list) -> None:
        name = str(content.get("name") or "upload")
        try:
            if not buffers:
                raise ValueError("sample upload: no file bytes arrived")
            image = decode_upload(buffers[0])
        except ValueError as error:
            self._sample.show_error(name, str(error))
            raise
        self.set_sample(image, name)

    # ---- the atlas (AtlasSource) -------------------------------------------------------------
    def _open_atlas(self, folder: str | os.PathLike, write_back: bool, grid: dict) -> None:
        source = self._grid.open_atlas(folder, self._model, write_back)
        self.grid_settings = {**source.grid_settings(), **grid}  # the atlas's, unless asked
        self.atlas_info = source.info()

    def _show_stored_unit(self) -> bool:
        """Show the open unit's stored view and examples; False: its view is not stored."""
        traits, image = self._grid.atlas.unit_traits(
            self._grid.row(self.layer), self.unit, self.unit_view, self.grid_kind,
            examples=self._examples.dataset is None,  # a dataset given to set_dataset wins
        )  # fmt: skip
        self.publish(**traits)
        if image is not None:
            self.show_result(image)
            self._worker.submit("grid_resume")
        return image is not None

    @property
    def atlas(self) -> Any:
        """The :class:`~lucid_widgets.atlas.Atlas` this Microscope reads (None without one)."""
        source = self._grid.atlas
        return None if source is None else source.atlas

    # ---- dataset examples (ExamplesPanel) ---------------------------------------------------
    def set_dataset(
        self,
        dataset: Any,
        k: int = 9,
        *,
        cache_dir: str | os.PathLike | bool | None = None,
        batch_size: int | None = None,
        dataset_id: str | None = None,
    ) -> None:
        """Show dataset examples: the ``k`` images that excite (and inhibit) each unit most.

        The pass runs in the widget's worker for the current layer (and again for each layer
        you open); the kernel stays free. Results are cached on disk by
        :func:`~lucid_widgets.dataset.examples.dataset_examples`.

        Parameters
        ----------
        dataset
            Anything ``dataset_examples`` accepts: an image folder, a tensor ``(N, C, H, W)`` in
            [0, 1] or uint8 ``(N, H, W, C)``, a torchvision-style dataset, a list of images.
            ``None`` removes the examples.
        k
            Examples kept per unit and direction.
        cache_dir, batch_size, dataset_id
            Passed to ``dataset_examples`` (``cache_dir=False`` disables the disk cache).
        """
        options = {"cache_dir": cache_dir, "batch_size": batch_size, "dataset_id": dataset_id}
        self._examples.set_dataset(dataset, k, options)

    @property
    def examples(self) -> Any:
        """The current layer's :class:`~lucid_widgets.dataset.examples.ExamplesResult`, or None
        (no dataset, no layer, or still computing: see ``w.examples_status``)."""
        return self._examples.result

    @property
    def dataset(self) -> Any:
        """The dataset given to :meth:`set_dataset` (None without one)."""
        return self._examples.dataset

    # ---- sample image (SamplePanel) ---------------------------------------------------------
    @property
    def sample(self) -> np.ndarray | None:
        """The sample image as the network sees it, ``(H, W, 3)`` uint8 (None before it ran).

        Assign a path, PIL image, numpy array ``(H, W[, C])`` or tensor ``(C, H, W)`` to run it
        through the network (in the widget's worker); ``None`` clears it.
        """
        view = self._sample.view
        return None if view is None else view.image

    @sample.setter
    def sample(self, image: Any) -> None:
        self.set_sample(image)

    @property
    def sample_result(self) -> Any:
        """The :class:`~lucid_widgets.dataset.sample.SampleView` of the current layer (or None);
        ``w.sample_view`` is the name of the Sample panel's view (``"units"``, ``"groups"`` ...)."""
        return self._sample.view

    def set_sample(self, image: Any, name: str | None = None) -> None:
        """Run ``image`` through the network and show it in the Sample panel (see ``sample``)."""
        self._sample.set(image, name)
        self._blocks.new_sample()

    def sample_from_example(self, index: int) -> None:
        """Use the dataset image ``index`` (e.g. a dataset example) as the sample image."""
        if self._examples.dataset is None:
            raise ValueError("no dataset: call w.set_dataset(dataset) first")
        item = dataset_item(self._examples.dataset, self._examples.result, int(index))
        self.set_sample(item, f"#{index}")

    # ---- building blocks (BuildingBlocks) ---------------------------------------------------
    @traitlets.validate("sample_view", "sample_target")
    def _valid_blocks(self, proposal: dict) -> Any:
        return self._blocks.check(proposal["trait"].name, proposal["value"])

    @traitlets.observe("sample_view", "sample_target")
    def _on_sample_view(self, change: dict) -> None:
        self._blocks.views.request()

    @traitlets.observe("status")
    def _on_status_done(self, change: dict) -> None:
        self._blocks.on_status(change["new"])

    @property
    def connections(self) -> Any:
        """The open unit's :class:`~lucid_widgets.widget.connections.UnitConnections`
        (``.inputs`` / ``.outputs``: :class:`~lucid_widgets.blocks.Connections`; ``.source``:
        ``"atlas"`` when stored, else ``"live"``), or None while they are computed (see
        ``w.unit_connections["state"]``) or without an open unit."""
        return self._blocks.unit_connections

    @property
    def sample_block(self) -> Any:
        """The result behind ``sample_view`` for the open layer: a
        :class:`~lucid_widgets.blocks.NeuronGroups`, a
        :class:`~lucid_widgets.blocks.SemanticDictionary`, the activation grid's cells (list of
        dicts) or an :class:`~lucid_widgets.blocks.Attribution`; None while computing."""
        return self._blocks.views.result

    def open_group(self, index: int) -> None:
        """Run neuron group ``index``'s direction objective (``w.sample_view = "groups"``) live
        in the preview."""
        self._set_objective(self._blocks.group_objective(index))
        self.restart()


def _catalog(model: nn.Module) -> tuple[list[dict], str]:
    """The layer catalog (the layer browser needs it: errors propagate)."""
    return engine.catalog(model), ""
