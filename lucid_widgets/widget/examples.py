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

from lucid_widgets.widget.media import BlobWriter, enlarge, example_items

__all__ = ["GRID_VIEWS", "ExamplesPanel"]

GRID_VIEWS = ("visualization", "example")


class ExamplesPanel:
    """The Microscope's dataset examples: the dataset, one pass per layer, what the traits show.

    Owned by a :class:`~lucid_widgets.widget.Microscope` (``widget``), whose traits
    (``examples_status``, ``unit_examples``, ``grid_examples`` and their blobs) it publishes; the
    passes run in the widget's worker thread.
    """

    def __init__(self, widget: Any, model: Any) -> None:
        self._widget = widget
        self._model = model
        self.dataset: Any = None
        self._options: dict[str, Any] = {}
        self._generation = 0
        self._results: dict[str, Any] = {}  # layer (dotted name) -> ExamplesResult

    # ---- public API -------------------------------------------------------------------------
    def set_dataset(self, dataset: Any, k: int, options: dict[str, Any]) -> None:
        """Use ``dataset`` (None: no examples), ``k`` per unit and direction; ``options`` go to
        ``dataset_examples`` (see :meth:`Microscope.set_dataset`)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if isinstance(dataset, (str, os.PathLike)) and not os.path.isdir(dataset):
            raise FileNotFoundError(f"dataset folder {os.fspath(dataset)!r} does not exist")
        self.dataset = dataset
        self._options = dict(options)
        self._generation += 1
        self._results = {}
        state = "idle" if dataset is None else "waiting"
        self._widget.publish(
            examples_k=k, examples_status={"state": state, "size": _length(dataset)},
            unit_examples={}, unit_examples_blob=b"", grid_examples={}, grid_examples_blob=b"",
        )  # fmt: skip
        self.request()

    @property
    def result(self) -> Any:
        """The current layer's :class:`~lucid_widgets.dataset.examples.ExamplesResult`, or None
        (no dataset, no layer, or still computing)."""
        layer = self._widget.layer
        return self._results.get(layer) if layer else None

    # ---- computing --------------------------------------------------------------------------
    def request(self) -> None:
        """Show the current layer's examples: from memory, else a pass in the worker."""
        layer = self._widget.layer
        if self.dataset is None or not layer:
            return
        if layer in self._results:
            self.publish()
            return
        self._widget.run_in_worker(self._compute, layer, self._generation)

    def _compute(self, layer: str, generation: int) -> None:
        """Worker thread: one pass for ``layer`` (unless the dataset changed meanwhile)."""
        if generation != self._generation or layer in self._results:
            return
        from lucid_widgets.dataset.examples import dataset_examples

        widget = self._widget
        size = _length(self.dataset)
        widget.publish(examples_status={"state": "running", "layer": layer, "size": size})
        try:
            result = dataset_examples(
                self._model, self.dataset, layers=[layer], k=widget.examples_k, progress=False,
                stop=widget.stop_event, **self._options,
            )  # fmt: skip
        except Exception as error:  # noqa: BLE001 (shown in the widget)
            message = f"{type(error).__name__}: {error}"
            widget.publish(
                examples_status={"state": "error", "layer": layer, "message": message},
                message=f"dataset examples: {message}",
            )  # fmt: skip
            return
        if generation != self._generation:
            return
        if not result.complete:  # Stop pressed: kept on disk; opening the layer again resumes
            status = {"state": "stopped", "layer": layer, "size": size, "done": result.num_images}
            widget.publish(examples_status=status)
            return
        self._results[layer] = result
        if layer == widget.layer:
            self.publish()

    # ---- publishing -------------------------------------------------------------------------
    def publish(self) -> None:
        """Status, open unit's examples and the grid page's top examples, in one message."""
        widget = self._widget
        with widget.trait_lock:
            result = self.result
            if result is None:
                return
            status = {
                "state": "done", "layer": widget.layer, "size": result.num_images, "k": result.k,
                "skipped": len(result.skipped), "complete": bool(result.complete),
            }  # fmt: skip
            widget.publish(examples_status=status, **self._unit_payload(), **self._grid_payload())

    def publish_unit(self) -> None:
        """The open unit's examples (after a unit was opened)."""
        if self.result is not None:
            with self._widget.trait_lock:
                self._widget.publish(**self._unit_payload())

    def publish_grid(self) -> None:
        """The grid page's top examples (after the page changed)."""
        if self.result is not None:
            with self._widget.trait_lock:
                self._widget.publish(**self._grid_payload())

    def _unit_payload(self) -> dict[str, Any]:
        result, unit, layer = self.result, self._widget.unit, self._widget.layer
        if result is None or unit < 0 or unit >= result[layer].units:
            return {"unit_examples": {}, "unit_examples_blob": b""}
        blob = BlobWriter()
        items = example_items(_WithSources(result[layer], result.sources), unit, blob)
        info = {"layer": layer, "unit": unit, "k": result.k, "items": items}
        return {"unit_examples": info, "unit_examples_blob": blob.blob()}

    def _grid_payload(self) -> dict[str, Any]:
        result, layer = self.result, self._widget.layer
        if result is None:
            return {"grid_examples": {}, "grid_examples_blob": b""}
        examples = result[layer]
        blob, items = BlobWriter(), []
        for unit in self._widget.page_units():
            if unit >= examples.units or examples.values_top.shape[1] == 0:
                continue
            entry = blob.add_image(enlarge(examples.crop(unit, 0, "top"), 64))
            items.append({"unit": unit, "value": examples.value(unit, 0, "top"), **entry})
        info = {"layer": layer, "page": self._widget.page, "items": items}
        return {"grid_examples": info, "grid_examples_blob": blob.blob()}


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
