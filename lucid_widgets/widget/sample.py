"""A sample image through the network, in the Microscope: ``w.sample = image`` or an upload.

The forward pass (:func:`lucid_widgets.dataset.sample.sample_view`) runs in the widget's worker
thread.
The panel shows the image as the network sees it, the top predictions, and for the selected layer
the units the image excites most: their activation values, an activation-map overlay per unit and
their grid thumbnail when it has been rendered. Everything is in synced traits (binary images
included), so ``save_html`` shows it.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import traitlets

from lucid_widgets.widget.examples import ExamplesMixin
from lucid_widgets.widget.frames import encode
from lucid_widgets.widget.media import BlobWriter, heat_overlay
from lucid_widgets.widget.traits import binary_trait

__all__ = ["SampleMixin", "decode_upload"]

TOP_UNITS = 8


def decode_upload(data: bytes | memoryview) -> Any:
    """Image file bytes (PNG, JPEG, WebP, GIF, BMP...) from the browser -> an RGB PIL image."""
    from PIL import Image, UnidentifiedImageError

    raw = bytes(data)
    if not raw:
        raise ValueError("the uploaded file is empty")
    try:
        with Image.open(io.BytesIO(raw)) as opened:
            return opened.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"could not read the uploaded file ({len(raw)} bytes) as an image; "
            "upload a PNG, JPEG, WebP, GIF or BMP file"
        ) from error


class SampleMixin(ExamplesMixin):
    """Sample-image state of :class:`~lucid_widgets.widget.Microscope` (not used alone)."""

    sample_image = binary_trait()
    sample_info = traitlets.Dict().tag(sync=True)
    sample_blob = binary_trait()

    def _init_sample(self) -> None:
        self._sample_source: Any = None
        self._sample_name = ""
        self._sample_generation = 0
        self._sample_views: dict[str, Any] = {}  # layer ("" = default layers) -> SampleView

    # ---- public API -------------------------------------------------------------------------
    @property
    def sample(self) -> np.ndarray | None:
        """The sample image as the network sees it, ``(H, W, 3)`` uint8 (None before it ran).

        Assign a path, PIL image, numpy array ``(H, W[, C])`` or tensor ``(C, H, W)`` to run it
        through the network (in the widget's worker); ``None`` clears it.
        """
        view = self.sample_view
        return None if view is None else view.image

    @sample.setter
    def sample(self, image: Any) -> None:
        self.set_sample(image)

    @property
    def sample_view(self) -> Any:
        """The :class:`~lucid_widgets.dataset.sample.SampleView` of the current layer (or None)."""
        views = self._sample_views
        return views.get(self.layer) or (next(iter(views.values())) if views else None)

    def set_sample(self, image: Any, name: str | None = None) -> None:
        """Run ``image`` through the network and show it in the Sample panel (see ``sample``)."""
        if isinstance(image, (str, os.PathLike)) and not os.path.isfile(image):
            raise FileNotFoundError(f"sample image {os.fspath(image)!r} does not exist")
        if isinstance(image, (bytes, bytearray, memoryview)):
            image = decode_upload(image)
        self._sample_source = image
        self._sample_name = name if name is not None else _describe(image)
        self._sample_generation += 1
        self._sample_views = {}
        if image is None:
            self._publish(sample_image=b"", sample_info={}, sample_blob=b"")
            return
        self._publish(sample_info={"state": "running", "name": self._sample_name})
        self._request_sample()

    def sample_from_example(self, index: int) -> None:
        """Use the dataset image ``index`` (e.g. a dataset example) as the sample image."""
        if self._dataset is None:
            raise ValueError("no dataset: call w.set_dataset(dataset) first")
        self.set_sample(_dataset_item(self._dataset, self.examples, int(index)), f"#{index}")

    # ---- computing --------------------------------------------------------------------------
    def _request_sample(self) -> None:
        if self._sample_source is None:
            return
        if self.layer in self._sample_views:
            self._publish_sample()
            return
        self._worker.submit("call", self._compute_sample, self.layer, self._sample_generation)

    def _compute_sample(self, layer: str, generation: int) -> None:
        """Worker thread: one forward pass of the sample image, hooked at ``layer``."""
        if generation != self._sample_generation or layer in self._sample_views:
            return
        from lucid_widgets.dataset.sample import sample_view

        try:
            view = sample_view(
                self._model, self._sample_source, layers=[layer] if layer else None,
                top_units=TOP_UNITS,
            )  # fmt: skip
        except Exception as error:  # noqa: BLE001 (shown in the widget)
            message = f"{type(error).__name__}: {error}"
            self._publish(
                sample_info={"state": "error", "name": self._sample_name, "message": message}
            )
            return
        if generation != self._sample_generation:
            return
        self._sample_views[layer] = view
        self._publish_sample()

    # ---- publishing -------------------------------------------------------------------------
    def _publish_sample(self) -> None:
        with self._trait_lock:
            view = self._sample_views.get(self.layer)
            if view is None:
                return
            image = encode(view.image, "jpeg", quality=90)
            info, blob = self._sample_payload(view)
            self._publish(sample_image=image, sample_info=info, sample_blob=blob)

    def _sample_payload(self, view: Any) -> tuple[dict[str, Any], bytes]:
        height, width = view.image.shape[:2]
        predictions = [
            {"index": p.index, "label": p.label, "probability": p.probability, "logit": p.logit}
            for p in view.predictions
        ]
        info: dict[str, Any] = {
            "state": "done", "name": self._sample_name, "width": width, "height": height,
            "predictions": predictions, "layer": self.layer, "units": [],
        }  # fmt: skip
        blob = BlobWriter()
        if not self.layer or self.layer not in view.layers:
            return info, blob.blob()
        layer_sample = view[self.layer]
        thumbnails = self._rendered_thumbnails()
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

    def _rendered_thumbnails(self) -> dict[int, bytes]:
        """Encoded grid thumbnails of the current layer's units (current grid settings)."""
        key = self._grid_key(self.layer, self.grid_kind, self.grid_negative)
        return {unit: data for unit, (data, _) in self._cache.units(key).items()}

    def _refresh_sample_thumbnails(self) -> None:
        info = self.sample_info
        if info.get("state") != "done" or info.get("layer") != self.layer:
            return
        thumbnails = self._rendered_thumbnails()
        if any(entry["unit"] in thumbnails and not entry.get("thumb") for entry in info["units"]):
            self._publish_sample()

    def _grid_key(self, layer: str, kind: str, negative: bool) -> tuple:  # noqa: D102
        raise NotImplementedError  # Microscope defines it


def _describe(image: Any) -> str:
    if isinstance(image, (str, os.PathLike)):
        return os.path.basename(os.fspath(image))
    shape = getattr(image, "shape", None)
    if shape is not None:
        return f"{type(image).__name__} {tuple(shape)}"
    size = getattr(image, "size", None)
    return f"image {size[0]}×{size[1]}" if isinstance(size, tuple) else type(image).__name__


def _dataset_item(dataset: Any, examples: Any, index: int) -> Any:
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
