"""The :class:`Microscope` widget: layer browser + unit grid + live unit detail (with its
per-unit views and dataset examples) + a sample image through the network."""

from __future__ import annotations

import difflib
import math
import os
from typing import Any

import numpy as np
import torch
import traitlets
from torch import nn

from lucid_widgets.widget import engine
from lucid_widgets.widget.atlas_source import AtlasSource
from lucid_widgets.widget.base import WidgetBase
from lucid_widgets.widget.blocks_api import BlocksMixin
from lucid_widgets.widget.blocks_panel import BlocksPanel
from lucid_widgets.widget.connections import ConnectionsPanel, UnitConnections
from lucid_widgets.widget.examples import GRID_VIEWS, ExamplesPanel
from lucid_widgets.widget.jobs import GridRequest, PreviewRequest
from lucid_widgets.widget.sample import SamplePanel, dataset_item, decode_upload
from lucid_widgets.widget.traits import binary_trait
from lucid_widgets.widget.views import (
    IMAGE_VIEWS,
    UNIT_VIEWS,
    UnitView,
    build_view,
    run_config,
    view_for_grid,
)

__all__ = ["Microscope"]


class Microscope(BlocksMixin, WidgetBase):
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
    # the Microscope on an atlas (AtlasSource)
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
        self._atlas: AtlasSource | None = None
        self._grid_config = engine.GridConfig()  # the grid_settings validator merges into it
        self._syncing_view = False
        self._view: UnitView | None = None  # the open unit's view (None before a unit opened)
        self._rows: dict[str, dict] = {}  # layer name or alias -> catalog row
        self._examples = ExamplesPanel(self, model)
        self._sample = SamplePanel(self, model)
        self._connections = ConnectionsPanel(self, model, self._sample)
        self._blocks = BlocksPanel(self, model, self._sample)
        super().__init__(
            model, catalog=_catalog, settings=settings, grid_settings=grid_settings or {},
            page_size=page_size, **kwargs,
        )  # fmt: skip
        for row in self.layers:
            self._rows.setdefault(row["name"], row)
            if row.get("alias"):
                self._rows.setdefault(row["alias"], row)
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
        self._actions.update(self._blocks_actions())
        with self._constructing():  # a bad layer, dataset or sample leaves no thread behind
            if atlas is not None:
                self._open_atlas(atlas, write_back, grid_settings or {})
            if layer:
                self.layer = layer
            if dataset is not None:
                self.set_dataset(dataset, k=examples_k)
            if sample is not None:
                self.set_sample(sample)

    # ---- layer and grid ---------------------------------------------------------------------
    def _row(self, layer: str) -> dict:
        row = self._rows.get(layer)
        if row is None:
            close = difflib.get_close_matches(layer, list(self._rows), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise traitlets.TraitError(f"unknown layer {layer!r}{hint}")
        return row

    @traitlets.validate("layer")
    def _valid_layer(self, proposal: dict) -> str:
        return self._row(proposal["value"])["name"] if proposal["value"] else ""

    @traitlets.validate("page_size")
    def _valid_page_size(self, proposal: dict) -> int:
        if not 1 <= proposal["value"] <= 1024:
            raise traitlets.TraitError(f"page_size must be 1..1024, got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("grid_kind")
    def _valid_kind(self, proposal: dict) -> str:
        try:
            engine.unit_kind(proposal["value"], False)
        except ValueError as error:
            raise traitlets.TraitError(f"grid_kind: {error}") from None
        return proposal["value"]

    @traitlets.validate("grid_view")
    def _valid_grid_view(self, proposal: dict) -> str:
        if proposal["value"] not in GRID_VIEWS:
            raise traitlets.TraitError(
                f"grid_view must be one of {GRID_VIEWS}, got {proposal['value']!r}"
            )
        return proposal["value"]

    @traitlets.observe("layer")
    def _on_layer(self, change: dict) -> None:
        if self.page != 0:
            self.page = 0  # its observer requests the grid
        else:
            self._request_grid()
            self._examples.publish_grid()
        self._examples.request()
        self._sample.request()
        self._blocks.request()

    @traitlets.observe("page", "page_size", "grid_kind", "grid_negative")
    def _on_grid_view(self, change: dict) -> None:
        self._request_grid()
        if change["name"] in ("page", "page_size"):
            self._examples.publish_grid()
        else:  # the unit detail's view follows the grid's channel / neuron / negative toggles
            view = view_for_grid(self.unit_view, self.grid_kind, self.grid_negative)
            self._syncing_view = True
            try:
                self.unit_view = view
            finally:
                self._syncing_view = False

    @traitlets.observe("grid_progress")
    def _on_grid_progress(self, change: dict) -> None:
        if change["new"].get("state") == "done":
            self._sample.refresh_thumbnails()

    @traitlets.validate("grid_settings")
    def _valid_grid_settings(self, proposal: dict) -> dict:
        return self._merged(proposal["value"], self._grid_config, "grid settings").to_dict()

    @traitlets.observe("grid_settings")
    def _on_grid_settings(self, change: dict) -> None:
        config = engine.GridConfig.from_dict(change["new"])
        if config != self._grid_config:
            self._grid_config = config
            self._request_grid()

    def _grid_key(self, layer: str, kind: str, negative: bool) -> tuple:
        return (layer, engine.unit_kind(kind, negative), self._grid_config.cache_key())

    def page_units(self) -> list[int]:
        """Unit indices on the current page of the current layer."""
        if not self.layer:
            return []
        count = self._row(self.layer).get("units") or 0
        start = self.page * self.page_size
        return list(range(start, min(count, start + self.page_size)))

    def _request_grid(self) -> None:
        if not self.layer:
            return
        count = self._row(self.layer).get("units") or 0
        if count == 0:
            self.message = f"layer {self.layer!r} has no units to render"
            return
        pages = math.ceil(count / self.page_size)
        if not 0 <= self.page < pages:
            self.page = min(max(self.page, 0), pages - 1)
            return
        kind = engine.unit_kind(self.grid_kind, self.grid_negative)
        key = self._grid_key(self.layer, self.grid_kind, self.grid_negative)
        request = GridRequest(
            key, self.layer, self.page_units(), kind, self._grid_config, self.page
        )
        if self._atlas is not None:  # stored thumbnails go into the cache: no rendering
            row = self._row(self.layer)
            self._atlas.fill(self._cache, request, row)
            examples = (
                {}
                if self._examples.dataset is not None
                else self._atlas.grid_examples(row, request.units, self.page)
            )  # a dataset given to set_dataset wins
            self.publish(atlas_info=self._atlas.info(), **examples)
        self._worker.submit("grid", request)

    def grid_images(
        self, layer: str | None = None, kind: str | None = None, negative: bool | None = None
    ) -> dict[int, np.ndarray]:
        """Rendered thumbnails of ``layer`` (default: the current one), unit -> ``(H, W, C)``.

        Only units already rendered with the current grid settings are included; arrays are
        float32 in [0, 1].
        """
        name = self._row(layer)["name"] if layer else self.layer
        if not name:
            raise ValueError("no layer selected: pass layer= or set w.layer first")
        kind = self.grid_kind if kind is None else kind
        negative = self.grid_negative if negative is None else negative
        cached = self._cache.units(self._grid_key(name, kind, negative))
        return {unit: pixels.astype(np.float32) / 255.0 for unit, (_, pixels) in cached.items()}

    # ---- units ------------------------------------------------------------------------------
    def grid_thumbnails(self) -> dict[int, bytes]:
        """Encoded (JPEG) thumbnails of the current layer's rendered units, current settings."""
        key = self._grid_key(self.layer, self.grid_kind, self.grid_negative)
        return {unit: data for unit, (data, _) in self._cache.units(key).items()}

    @traitlets.validate("unit_view")
    def _valid_unit_view(self, proposal: dict) -> str:
        view = proposal["value"]
        if view not in UNIT_VIEWS:
            raise traitlets.TraitError(f"unit_view must be one of {UNIT_VIEWS}, got {view!r}")
        if view in IMAGE_VIEWS and self._sample.source is None:
            raise traitlets.TraitError(
                f"the {view} view needs a sample image: set w.sample = image (a path, PIL "
                "image, array or tensor) or upload one in the Sample panel first"
            )
        return view

    @traitlets.observe("unit_view")
    def _on_unit_view(self, change: dict) -> None:
        if not self._syncing_view and not self._opening and self.unit >= 0 and self.layer:
            self.open_unit(self.unit)

    def _preview_request(self, objective: Any) -> PreviewRequest:
        request = super()._preview_request(objective)
        view = self._view
        if view is None or self.unit < 0 or not self.layer or self.objective != view.text:
            return request  # an edited objective runs as written, with the plain settings
        request.overrides.update(view.overrides)
        request.prepare = view.prepare
        return request

    def _run_config(self, config: engine.PreviewConfig) -> engine.PreviewConfig:
        return run_config(config, self._view.name if self._view is not None else "channel")

    def open_unit(self, unit: int, layer: str | None = None) -> None:
        """Select ``unit`` (of ``layer``, default the current layer) and start optimizing it."""
        self._unit_row(int(unit), layer or self.layer)
        self._opening = True
        try:
            with self.hold_sync():
                if layer:
                    self.layer = layer
                self.unit = int(unit)
                size = self._config.size
                self._view = build_view(
                    self.unit_view, self._row(self.layer), int(unit), self.grid_kind,
                    self._sample.source, (size, size),
                )  # fmt: skip
                self._set_objective(self._view.objective or self._view.text)
        finally:
            self._opening = False
        self._examples.publish_unit()
        if self._atlas is None or not self._show_stored_unit():
            self.restart()
        self._connections.request(self._stored_connections())  # after the preview: it goes first

    def _unit_row(self, unit: int, layer: str) -> dict:
        """The catalog row of ``layer``, after checking that it has a unit ``unit``."""
        if not layer:
            raise ValueError("no layer selected: set w.layer first or pass layer=")
        row = self._row(layer)
        count = row.get("units") or 0
        if not 0 <= unit < count:
            raise ValueError(
                f"unit {unit} is out of range for layer {row['name']!r} (0..{count - 1})"
            )
        return row

    @traitlets.validate("unit")
    def _valid_unit(self, proposal: dict) -> int:
        unit = proposal["value"]
        if unit != -1:  # -1: no unit open
            try:
                self._unit_row(unit, self.layer)
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
        if self.unit_connections.get("state") == "stopped":
            self._connections.request(self._stored_connections())
        if self.sample_blocks.get("state") == "stopped":
            self._blocks.request()
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
        self._atlas = AtlasSource(
            folder, self._model, write_back, lambda: self.publish(atlas_info=self._atlas.info())
        )
        self.grid_settings = {**self._atlas.grid_settings(), **grid}  # the atlas's, unless asked
        self.atlas_info = self._atlas.info()

    def _show_stored_unit(self) -> bool:
        """Show the open unit's stored view, examples and connections; False: not stored."""
        traits, image = self._atlas.unit_traits(
            self._row(self.layer), self.unit, self.unit_view, self.grid_kind,
            examples=self._examples.dataset is None,  # a dataset given to set_dataset wins
        )  # fmt: skip
        self.publish(**traits)
        if image is None:
            return False
        self._has_run = False  # Start / Restart optimize this unit live
        self._worker.stop()  # any live run ends first; its last frame comes before this one
        self.run_in_worker(self._post_stored, image)
        self._worker.submit("grid_resume")
        return True

    def _stored_connections(self) -> UnitConnections | None:
        """The open unit's connections from the atlas (None: not stored, or no atlas), the
        connected units' stored thumbnails put into the thumbnail cache."""
        if self._atlas is None or self.unit < 0 or not self.layer:
            return None
        stored = self._atlas.connections(self._row(self.layer), self.unit)
        for conn in (stored.inputs, stored.outputs) if stored is not None else ():
            if conn is not None:
                row = self._row(conn.source)
                key = self._grid_key(row["name"], self.grid_kind, False)
                units = [int(unit) for unit in conn.units]
                self._atlas.fill_units(
                    self._cache, key, row, units, self.thumbnail_kind, self._grid_config
                )
        self.publish(atlas_info=self._atlas.info())
        return stored

    def _post_stored(self, image: torch.Tensor) -> None:  # worker thread
        self.post_frame(image, final=True, status="done", running=False, step=0,
                        total_steps=0, losses=[], message="")  # fmt: skip

    @property
    def atlas(self) -> Any:
        """The :class:`~lucid_widgets.atlas.Atlas` this Microscope reads (None without one)."""
        return None if self._atlas is None else self._atlas.atlas

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
        self._blocks.reset()
        self._blocks.request()

    def sample_from_example(self, index: int) -> None:
        """Use the dataset image ``index`` (e.g. a dataset example) as the sample image."""
        if self._examples.dataset is None:
            raise ValueError("no dataset: call w.set_dataset(dataset) first")
        item = dataset_item(self._examples.dataset, self._examples.result, int(index))
        self.set_sample(item, f"#{index}")


def _catalog(model: nn.Module) -> tuple[list[dict], str]:
    """The layer catalog (the layer browser needs it: errors propagate)."""
    return engine.catalog(model), ""
