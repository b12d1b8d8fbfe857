"""A sample image through the network, in the Microscope: ``w.sample = image`` or an upload.

The forward pass (:func:`lucid_widgets.dataset.sample.sample_view`) runs in the widget's worker
thread. The panel shows the image as the network sees it, the top predictions, and for the
selected layer the units the image excites most: their activation values, an activation-map
overlay per unit and their grid thumbnail when it has been rendered. Everything is in synced
traits (binary images included), so ``save_html`` shows it.
"""

from __future__ import annotations

import os
from typing import Any

from lucid_widgets.dataset.images import ImageLoadError, decode_image_bytes
from lucid_widgets.widget.frames import encode
from lucid_widgets.widget.media import BlobWriter, heat_overlay

__all__ = ["TOP_UNITS", "SamplePanel", "dataset_item", "decode_upload"]

TOP_UNITS = 8


def decode_upload(data: bytes | memoryview) -> Any:
    """Image file bytes (PNG, JPEG, WebP, GIF, BMP...) from the browser -> an RGB PIL image.

    Decoded by :func:`lucid_widgets.dataset.images.decode_image_bytes` (the file-path route's
    conversion), with its limits: 64 MiB of file, 50 million pixels.

    Raises
    ------
    ValueError
        What is wrong with the file (empty, too large, too many pixels, not an image).
    """
    try:
        return decode_image_bytes(data, 3)
    except ImageLoadError as error:
        raise ValueError(f"sample upload: {error}") from None


class SamplePanel:
    """The Microscope's Sample panel: a sample image, one forward pass per layer, its traits.

    Owned by a :class:`~lucid_widgets.widget.Microscope` (``widget``), whose ``sample_image``,
    ``sample_info`` and ``sample_blob`` traits it publishes; the passes run in the widget's
    worker thread.
    """

    def __init__(self, widget: Any, model: Any) -> None:
        self._widget = widget
        self._model = model
        self.source: Any = None  # what was given: path, PIL image, array, tensor (None: no sample)
        self._name = ""
        self._generation = 0
        self._views: dict[str, Any] = {}  # layer ("" = default layers) -> SampleView

    @property
    def view(self) -> Any:
        """The :class:`~lucid_widgets.dataset.sample.SampleView` of the current layer (or None)."""
        views = self._views
        return views.get(self._widget.layer) or (next(iter(views.values())) if views else None)

    def set(self, image: Any, name: str | None = None) -> None:
        """Run ``image`` through the network and show it in the Sample panel."""
        if isinstance(image, (str, os.PathLike)) and not os.path.isfile(image):
            raise FileNotFoundError(f"sample image {os.fspath(image)!r} does not exist")
        if isinstance(image, (bytes, bytearray, memoryview)):
            image = decode_upload(image)
        self.source = image
        self._name = name if name is not None else _describe(image)
        self._generation += 1
        self._views = {}
        if image is None:
            self._widget.publish(sample_image=b"", sample_info={}, sample_blob=b"")
            return
        self._widget.publish(sample_info={"state": "running", "name": self._name})
        self.request()

    def show_error(self, name: str, message: str) -> None:
        """Answer a failed upload inline, in the panel (the previous sample stays)."""
        self._widget.publish(sample_info={"state": "error", "name": name, "message": message})

    # ---- computing --------------------------------------------------------------------------
    def request(self) -> None:
        """Show the sample at the current layer: from memory, else a pass in the worker."""
        if self.source is None:
            return
        if self._widget.layer in self._views:
            self.publish()
            return
        self._widget.run_in_worker(self._compute, self._widget.layer, self._generation)

    def _compute(self, layer: str, generation: int) -> None:
        """Worker thread: one forward pass of the sample image, hooked at ``layer``."""
        if generation != self._generation or layer in self._views:
            return
        from lucid_widgets.dataset.sample import sample_view

        try:
            view = sample_view(
                self._model, self.source, layers=[layer] if layer else None, top_units=TOP_UNITS
            )
        except Exception as error:  # noqa: BLE001 (shown in the widget)
            self.show_error(self._name, f"{type(error).__name__}: {error}")
            return
        if generation != self._generation:
            return
        self._views[layer] = view
        self.publish()

    # ---- publishing -------------------------------------------------------------------------
    def publish(self) -> None:
        """The current layer's view of the sample, in one message."""
        with self._widget.trait_lock:
            view = self._views.get(self._widget.layer)
            if view is None:
                return
            image = encode(view.image, "jpeg", quality=90)
            info, blob = self._payload(view)
            self._widget.publish(sample_image=image, sample_info=info, sample_blob=blob)

    def _payload(self, view: Any) -> tuple[dict[str, Any], bytes]:
        layer = self._widget.layer
        height, width = view.image.shape[:2]
        predictions = [
            {"index": p.index, "label": p.label, "probability": p.probability, "logit": p.logit}
            for p in view.predictions
        ]
        info: dict[str, Any] = {
            "state": "done", "name": self._name, "width": width, "height": height,
            "predictions": predictions, "layer": layer, "units": [],
        }  # fmt: skip
        blob = BlobWriter()
        if not layer or layer not in view.layers:
            return info, blob.blob()
        layer_sample = view[layer]
        thumbnails = self._widget.grid_thumbnails()
        units, values = layer_sample.units.tolist(), layer_sample.values.tolist()
        for unit, value in zip(units, values, strict=True):
            entry = {"unit": int(unit), "value": float(value), "thumb": None}
            entry["map"] = blob.add_image(
                heat_overlay(view.image, layer_sample.activation_map(unit))
            )
            if unit in thumbnails:
                entry["thumb"] = blob.add(thumbnails[unit])
            info["units"].append(entry)
        return info, blob.blob()

    def refresh_thumbnails(self) -> None:
        """Add grid thumbnails rendered since the panel was published."""
        info = self._widget.sample_info
        if info.get("state") != "done" or info.get("layer") != self._widget.layer:
            return
        thumbnails = self._widget.grid_thumbnails()
        if any(entry["unit"] in thumbnails and not entry.get("thumb") for entry in info["units"]):
            self.publish()


def _describe(image: Any) -> str:
    if isinstance(image, (str, os.PathLike)):
        return os.path.basename(os.fspath(image))
    shape = getattr(image, "shape", None)
    if shape is not None:
        return f"{type(image).__name__} {tuple(shape)}"
    size = getattr(image, "size", None)
    return f"image {size[0]}×{size[1]}" if isinstance(size, tuple) else type(image).__name__


def dataset_item(dataset: Any, examples: Any, index: int) -> Any:
    """Dataset image ``index``: its file, the dataset's item, else the kept thumbnail."""
    sources = getattr(examples, "sources", None) or {}
    source = sources.get(index)
    if isinstance(source, str) and os.path.isfile(source):
        return source
    if not isinstance(dataset, (str, os.PathLike)) and hasattr(dataset, "__getitem__"):
        try:
            item = dataset[index]
        except (IndexError, KeyError, TypeError):
            item = None
        if isinstance(item, (tuple, list)) and item:
            item = item[0]  # (image, label)
        if item is not None:
            return item
    thumbnails = getattr(examples, "thumbnails", None) or {}
    if index in thumbnails:
        return thumbnails[index]
    raise ValueError(f"dataset image {index} is not available (not indexable, not kept)")
