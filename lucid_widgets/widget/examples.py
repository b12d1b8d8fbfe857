"""Dataset examples in the Microscope: ``w.set_dataset(dataset)`` and the traits that show them.

The pass over the dataset (:func:`lucid_widgets.dataset.examples.dataset_examples`, which uses
its disk cache) runs in the widget's worker thread, so the kernel stays free; results are kept
per layer. The open unit's top and bottom examples (thumbnail with the receptive field drawn in,
plus the crop) and the top example of every unit on the grid page are encoded into binary traits,
so a saved notebook or ``save_html`` page shows them too.
"""

from __future__ import annotations

import os
from typing import Any

import traitlets

from lucid_widgets.widget.media import BlobWriter, enlarge, example_items
from lucid_widgets.widget.preview import LivePreview
from lucid_widgets.widget.traits import binary_trait

__all__ = ["ExamplesMixin"]

GRID_VIEWS = ("visualization", "example")


class ExamplesMixin(LivePreview):
    """Dataset-example state of :class:`~lucid_widgets.widget.Microscope` (not used alone)."""

    examples_k = traitlets.Int(9).tag(sync=True)
    examples_status = traitlets.Dict().tag(sync=True)
    unit_examples = traitlets.Dict().tag(sync=True)
    unit_examples_blob = binary_trait()
    grid_view = traitlets.Unicode("visualization").tag(sync=True)
    grid_examples = traitlets.Dict().tag(sync=True)
    grid_examples_blob = binary_trait()

    def _init_examples(self) -> None:
        self._dataset: Any = None
        self._dataset_options: dict[str, Any] = {}
        self._dataset_generation = 0
        self._examples: dict[str, Any] = {}  # layer (dotted name) -> ExamplesResult

    # ---- public API -------------------------------------------------------------------------
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
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if isinstance(dataset, (str, os.PathLike)) and not os.path.isdir(dataset):
            raise FileNotFoundError(f"dataset folder {os.fspath(dataset)!r} does not exist")
        self._dataset = dataset
        self._dataset_options = {
            "cache_dir": cache_dir, "batch_size": batch_size, "dataset_id": dataset_id,
        }  # fmt: skip
        self._dataset_generation += 1
        self._examples = {}
        state = "idle" if dataset is None else "waiting"
        self._publish(
            examples_k=k, examples_status={"state": state, "size": _length(dataset)},
            unit_examples={}, unit_examples_blob=b"", grid_examples={}, grid_examples_blob=b"",
        )  # fmt: skip
        self._request_examples()

    @property
    def examples(self) -> Any:
        """The current layer's :class:`~lucid_widgets.dataset.examples.ExamplesResult`, or None
        (no dataset, no layer, or still computing: see ``w.examples_status``)."""
        return self._examples.get(self.layer) if self.layer else None

    @property
    def dataset(self) -> Any:
        """The dataset given to :meth:`set_dataset` (None without one)."""
        return self._dataset

    # ---- computing --------------------------------------------------------------------------
    def _request_examples(self) -> None:
        layer = self.layer
        if self._dataset is None or not layer:
            return
        if layer in self._examples:
            self._publish_examples()
            return
        self._worker.submit("call", self._compute_examples, layer, self._dataset_generation)

    def _compute_examples(self, layer: str, generation: int) -> None:
        """Worker thread: one pass for ``layer`` (unless the dataset changed meanwhile)."""
        if generation != self._dataset_generation or layer in self._examples:
            return
        from lucid_widgets.dataset.examples import dataset_examples

        size = _length(self._dataset)
        self._publish(examples_status={"state": "running", "layer": layer, "size": size})
        try:
            result = dataset_examples(
                self._model, self._dataset, layers=[layer], k=self.examples_k, progress=False,
                stop=self._worker.interrupt, **self._dataset_options,
            )  # fmt: skip
        except Exception as error:  # noqa: BLE001 (shown in the widget)
            message = f"{type(error).__name__}: {error}"
            self._publish(
                examples_status={"state": "error", "layer": layer, "message": message},
                message=f"dataset examples: {message}",
            )  # fmt: skip
            return
        if generation != self._dataset_generation:
            return
        if not result.complete:  # Stop pressed: kept on disk; opening the layer again resumes
            status = {"state": "stopped", "layer": layer, "size": size, "done": result.num_images}
            self._publish(examples_status=status)
            return
        self._examples[layer] = result
        if layer == self.layer:
            self._publish_examples()

    # ---- publishing -------------------------------------------------------------------------
    def _publish_examples(self) -> None:
        """Status, open unit's examples and the grid page's top examples, in one message."""
        with self._trait_lock:
            result = self.examples
            if result is None:
                return
            status = {
                "state": "done", "layer": self.layer, "size": result.num_images, "k": result.k,
                "skipped": len(result.skipped), "complete": bool(result.complete),
            }  # fmt: skip
            self._publish(examples_status=status, **self._unit_payload(), **self._grid_payload())

    def _unit_payload(self) -> dict[str, Any]:
        result, unit = self.examples, self.unit
        if result is None or unit < 0:
            return {"unit_examples": {}, "unit_examples_blob": b""}
        examples = result[self.layer]
        if unit >= examples.units:
            return {"unit_examples": {}, "unit_examples_blob": b""}
        blob = BlobWriter()
        items = example_items(_WithSources(examples, result.sources), unit, blob)
        info = {"layer": self.layer, "unit": unit, "k": result.k, "items": items}
        return {"unit_examples": info, "unit_examples_blob": blob.blob()}

    def _grid_payload(self) -> dict[str, Any]:
        result = self.examples
        if result is None:
            return {"grid_examples": {}, "grid_examples_blob": b""}
        examples = result[self.layer]
        blob, items = BlobWriter(), []
        for unit in self.page_units():
            if unit >= examples.units or examples.values_top.shape[1] == 0:
                continue
            entry = blob.add_image(enlarge(examples.crop(unit, 0, "top"), 64))
            items.append({"unit": unit, "value": examples.value(unit, 0, "top"), **entry})
        info = {"layer": self.layer, "page": self.page, "items": items}
        return {"grid_examples": info, "grid_examples_blob": blob.blob()}

    def _publish_unit_examples(self) -> None:
        if self.examples is not None:
            with self._trait_lock:
                self._publish(**self._unit_payload())

    def _publish_grid_examples(self) -> None:
        if self.examples is not None:
            with self._trait_lock:
                self._publish(**self._grid_payload())

    @traitlets.validate("grid_view")
    def _valid_grid_view(self, proposal: dict) -> str:
        if proposal["value"] not in GRID_VIEWS:
            raise traitlets.TraitError(
                f"grid_view must be one of {GRID_VIEWS}, got {proposal['value']!r}"
            )
        return proposal["value"]

    def page_units(self) -> list[int]:  # noqa: D102 (Microscope defines it)
        raise NotImplementedError


class _WithSources:
    """A ``LayerExamples`` seen together with its result's ``sources`` (file names)."""

    def __init__(self, examples: Any, sources: dict) -> None:
        self._examples = examples
        self.sources = sources

    def __getattr__(self, name: str) -> Any:
        return getattr(self._examples, name)


def _length(dataset: Any) -> int | None:
    if dataset is None or isinstance(dataset, (str, os.PathLike)):
        return None
    try:
        return len(dataset)
    except TypeError:
        return None
