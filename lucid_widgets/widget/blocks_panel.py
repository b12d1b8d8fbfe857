"""The Sample panel's building-blocks views of the open layer (``w.sample_view``).

- ``"groups"``: :func:`~lucid_widgets.blocks.neuron_groups` (6 groups, or fewer units): each
  group's spatial map as a coloured overlay on the photo, its feature visualization (all groups
  rendered as one batch with the grid settings) and its attribution to the target class;
  :meth:`BlocksPanel.open_group` runs a group's direction objective live in the preview.
- ``"dictionary"``: :func:`~lucid_widgets.blocks.semantic_dictionary`: the top units at every
  position, with their thumbnails (grid cache, else rendered on demand).
- ``"grid"``: :func:`~lucid_widgets.blocks.iter_activation_grid`: one visualization per
  position, streamed batch by batch.
- ``"attribution"``: :func:`~lucid_widgets.blocks.attribution` to a class (``w.sample_target``,
  default the top prediction): a signed heat map over the photo and the layer's most supporting
  and most opposing units.

Everything runs in the widget's worker thread; Stop (the worker's stop event) ends a render
between two steps. Results are kept per (layer, view, target) until the sample changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lucid_widgets.blocks import groups_overlay, heatmap_overlay
from lucid_widgets.widget.blocks_media import (
    group_rgb,
    render_directions,
    render_unit_thumbnails,
    resized,
)
from lucid_widgets.widget.frames import encode
from lucid_widgets.widget.media import BlobWriter

__all__ = ["BLOCK_VIEWS", "SAMPLE_VIEWS", "BlocksPanel"]

SAMPLE_VIEWS = ("units", "groups", "dictionary", "grid", "attribution")
BLOCK_VIEWS = SAMPLE_VIEWS[1:]  # the views this panel computes ("units" is the SamplePanel's)
N_GROUPS = 6
DICTIONARY_K = 4
ATTRIBUTION_UNITS = 6
MAX_DICTIONARY_THUMBS = 64


class BlocksPanel:
    """Owned by a :class:`~lucid_widgets.widget.Microscope`; publishes ``sample_blocks`` and
    ``sample_blocks_blob`` for the view in ``sample_view``."""

    def __init__(self, widget: Any, model: Any, sample: Any) -> None:
        self._widget = widget
        self._model = model
        self._sample = sample  # the SamplePanel (its source image and predictions)
        self._generation = 0
        self._results: dict[tuple, Any] = {}  # (layer, view, target) -> engine result
        self._payloads: dict[tuple, tuple[dict, bytes]] = {}

    # ---- requests (kernel thread) -----------------------------------------------------------
    def reset(self) -> None:
        """Forget every result (a new sample image)."""
        self._generation += 1
        self._results, self._payloads = {}, {}

    def key(self) -> tuple | None:
        view, layer = self._widget.sample_view, self._widget.layer
        if view not in BLOCK_VIEWS or not layer or self._sample.source is None:
            return None
        target = self._widget.sample_target if view in ("groups", "attribution") else None
        return (layer, view, target)

    def _photo(self) -> np.ndarray:
        """The sample as the network sees it (the SamplePanel's pass ran first in the worker)."""
        view = self._sample.view
        if view is None:
            raise ValueError("the sample image did not run through the network (see its error)")
        return view.image

    def _target(self, requested: int | None) -> int | None:
        """The class attributed to: ``sample_target``, else the sample's top prediction."""
        if requested is not None and requested >= 0:
            return requested
        predictions = getattr(self._sample.view, "predictions", None) or []
        return int(predictions[0].index) if predictions else None

    def request(self) -> None:
        """Show the current view: from memory, else computed in the worker."""
        key = self.key()
        if key is None:
            self._widget.publish(sample_blocks={}, sample_blocks_blob=b"")
            return
        if key in self._payloads:
            info, blob = self._payloads[key]
            self._widget.publish(sample_blocks=info, sample_blocks_blob=blob)
            return
        self._publish(key, {"state": "running"}, b"")
        self._widget.run_in_worker(self._compute, key, self._generation)

    @property
    def result(self) -> Any:
        """The engine result behind the current view (None while computing or without one)."""
        key = self.key()
        return None if key is None else self._results.get(key)

    # ---- computing (worker thread) ----------------------------------------------------------
    def _current(self, key: tuple, generation: int) -> bool:
        return generation == self._generation and key == self.key()

    def _compute(self, key: tuple, generation: int) -> None:
        if not self._current(key, generation):
            return
        layer, view, target = key
        try:
            self._photo()
            getattr(self, f"_compute_{view}")(key, generation, layer, self._target(target))
        except (ValueError, IndexError, TypeError, RuntimeError) as error:
            if generation == self._generation:
                self._publish(key, {"state": "error", "message": str(error)}, b"")

    def _finished(self, key: tuple) -> str:
        return "stopped" if self._widget.stop_event.is_set() else "done"

    def _compute_groups(self, key: tuple, generation: int, layer: str, target: int | None) -> None:
        from lucid_widgets.blocks import attribution, neuron_groups

        source = self._sample.source
        channels = self._widget.layer_units(layer)
        groups = neuron_groups(self._model, source, layer, n_groups=min(N_GROUPS, channels))
        scores = None
        if target is not None:
            scores = attribution(self._model, source, layer, target=target).groups(groups)
        self._results[key] = groups
        if not self._current(key, generation):
            return
        self._publish_groups(key, groups, scores, target, None, "rendering")
        images = render_directions(
            self._model, layer, groups.directions, self._widget.grid_config,
            self._widget.stop_event,
        )  # fmt: skip
        if generation == self._generation:
            self._publish_groups(key, groups, scores, target, images, self._finished(key))

    def _publish_groups(self, key, groups, scores, target, images, state: str) -> None:
        photo = self._photo()
        small = resized(photo, 112)  # the per-group maps are small cards
        colors = group_rgb(groups.n_groups)
        blob = BlobWriter()
        items = []
        for index in range(groups.n_groups):
            score = None if scores is None else float(scores[index])
            top = np.argsort(-groups.directions[index])[:3].tolist()
            item = {"group": index, "color": colors[index], "attribution": score, "units": top}
            item["map"] = blob.add_image(groups_overlay(small, groups.spatial, only=index))
            item["image"] = None if images is None else blob.add_image(images[index])
            items.append(item)
        info = {"state": state, "groups": items, "target": target, "error": groups.relative_error}
        info["overlay"] = blob.add_image(groups_overlay(photo, groups.spatial, alpha=0.6))
        info["target_label"] = self._label(target)
        self._publish(key, info, blob.blob())

    def _compute_dictionary(self, key: tuple, generation: int, layer: str, target: Any) -> None:
        from lucid_widgets.blocks import semantic_dictionary

        dico = semantic_dictionary(self._model, self._sample.source, layer, k=DICTIONARY_K)
        self._results[key] = dico
        self._publish_dictionary(key, dico, "rendering")
        order = np.unique(dico.units[..., 0]).tolist() + np.unique(dico.units).tolist()
        wanted = list(dict.fromkeys(order))[:MAX_DICTIONARY_THUMBS]
        render_unit_thumbnails(self._widget, self._model, layer, wanted, self._widget.stop_event)
        if self._current(key, generation):
            self._publish_dictionary(key, dico, self._finished(key))

    def _publish_dictionary(self, key: tuple, dico: Any, state: str) -> None:
        blob = BlobWriter()
        height, width = dico.shape
        thumbs = self._thumbs(key[0], np.unique(dico.units).tolist(), blob)
        info = {
            "state": state, "height": height, "width": width,
            "units": dico.units.tolist(), "values": np.round(dico.values, 4).tolist(),
            "thumbs": thumbs, "peak": float(dico.values.max()) if dico.values.size else 0.0,
        }  # fmt: skip
        self._publish(key, info, blob.blob())

    def _compute_grid(self, key: tuple, generation: int, layer: str, target: Any) -> None:
        from lucid_widgets.blocks import iter_activation_grid

        config = self._widget.grid_config
        cells: list[dict] = []
        blob = BlobWriter()
        shape, skipped = None, []
        stream = iter_activation_grid(
            self._model, self._sample.source, layer, cell=config.size, steps=config.steps,
            batch_size=config.batch_size, seed=config.seed, stop=self._widget.stop_event,
        )  # fmt: skip
        self._publish(key, {"state": "rendering", "cells": []}, b"")
        for batch in stream:
            if not self._current(key, generation):
                return
            shape, skipped = batch.shape, batch.skipped.tolist()
            for (y, x), picture in zip(batch.positions.tolist(), batch.images, strict=True):
                cells.append({"y": y, "x": x, "image": blob.add(encode(picture, "jpeg", 85))})
            info = {"state": "rendering", "height": shape[0], "width": shape[1]}
            info.update(cells=list(cells), skipped=skipped)
            self._publish(key, info, blob.blob())
        self._results[key] = cells
        info = {"state": self._finished(key), "cells": cells, "skipped": skipped}
        if shape is not None:
            info.update(height=shape[0], width=shape[1])
        self._publish(key, info, blob.blob())

    def _compute_attribution(self, key: tuple, generation: int, layer: str, target: Any) -> None:
        from lucid_widgets.blocks import attribution

        if target is None:
            raise ValueError("attribution needs a class: the sample has no predictions yet")
        attr = attribution(self._model, self._sample.source, layer, target=target)
        self._results[key] = attr
        channels = attr.channels
        order = np.argsort(channels)
        supporting = [int(u) for u in order[::-1][:ATTRIBUTION_UNITS] if channels[u] > 0]
        opposing = [int(u) for u in order[:ATTRIBUTION_UNITS] if channels[u] < 0]
        shown = (target, supporting, opposing)
        self._publish_attribution(key, attr, shown, "rendering")
        units = supporting + opposing
        render_unit_thumbnails(self._widget, self._model, layer, units, self._widget.stop_event)
        if self._current(key, generation):
            self._publish_attribution(key, attr, shown, self._finished(key))

    def _publish_attribution(self, key, attr, shown, state: str) -> None:
        target, supporting, opposing = shown
        blob = BlobWriter()
        channels = attr.channels
        thumbs = self._thumbs(key[0], supporting + opposing, blob)

        def entry(unit: int) -> dict:
            return {"unit": unit, "value": float(channels[unit]), "thumb": thumbs.get(str(unit))}

        info = {
            "state": state, "target": target, "target_label": self._label(target),
            "score": attr.score, "total": attr.total,
            "heatmap": blob.add_image(heatmap_overlay(self._photo(), attr.spatial)),
            "supporting": [entry(u) for u in supporting],
            "opposing": [entry(u) for u in opposing],
        }  # fmt: skip
        self._publish(key, info, blob.blob())

    # ---- publishing -------------------------------------------------------------------------
    def _thumbs(self, layer: str, units: list[int], blob: BlobWriter) -> dict[str, Any]:
        cached = self._widget.layer_thumbnails(layer)
        return {str(u): blob.add(cached[u]) for u in dict.fromkeys(units) if u in cached}

    def _label(self, index: int | None) -> str:
        if index is None:
            return ""
        for prediction in getattr(self._sample.view, "predictions", None) or []:
            if prediction.index == index:
                return prediction.label
        labels = getattr(self._model, "lucid_labels", None)
        return str(labels[index]) if labels is not None and index < len(labels) else f"#{index}"

    def _publish(self, key: tuple, info: dict, blob: bytes) -> None:
        layer, view, target = key
        info = {**info, "layer": layer, "view": view}
        if info["state"] in ("done", "error"):
            self._payloads[key] = (info, blob)
        if key == self.key():
            self._widget.publish(sample_blocks=info, sample_blocks_blob=blob)
