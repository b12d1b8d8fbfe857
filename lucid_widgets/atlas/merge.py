"""The driver's last dataset step: merge the shards' top-k into each unit's exact top-k.

Each shard holds, per layer and unit, the ``k`` strongest images of its range (ties to the
earlier image). Concatenating the shards in dataset order and taking a *stable* sort keeps
exactly what one pass over the whole dataset keeps, ties included.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import numpy as np
from PIL import Image

from lucid_widgets.atlas.plan import LayerPlan, Task, slug
from lucid_widgets.atlas.tasks import ARRAYS, WHICH, TaskOutput

__all__ = ["merge_shards", "thumbnail_path"]

THUMB_QUALITY = 85


def thumbnail_path(index: int) -> str:
    return f"dataset/{int(index):08d}.webp"


def _webp(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="WEBP", quality=THUMB_QUALITY, method=4)
    return buffer.getvalue()


def _merged(shards: list[dict], position: int, which: str, k: int) -> dict[str, np.ndarray]:
    parts = {
        name: np.concatenate([s[f"{position}.{name}_{which}"] for s in shards], axis=1)
        for name in ARRAYS
    }  # (U, shards * k), (U, shards * k, 2)
    values = parts["values"]
    order = np.argsort(-values if which == "top" else values, axis=1, kind="stable")[:, :k]
    return {
        "values": np.take_along_axis(values, order, 1),
        "indices": np.take_along_axis(parts["indices"], order, 1),
        "positions": np.take_along_axis(parts["positions"], order[..., None], 1),
    }


def _boxes(box_map: np.ndarray | None, positions: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``(U, k, 4)`` receptive-field boxes; the whole image for a layer without space."""
    if box_map is None:
        return np.broadcast_to(np.array([0, 0, size[0], size[1]]), positions.shape[:-1] + (4,))
    return box_map[positions[..., 0], positions[..., 1]]


def merge_shards(
    task: Task, shards: list[tuple[dict, dict]], plans: Sequence[LayerPlan], k: int
) -> TaskOutput:
    """``task`` (kind ``examples``) from ``[(arrays, meta)]`` of every shard, in dataset order."""
    arrays = [a for a, _ in shards]
    metas = [m for _, m in shards]
    input_size = metas[0]["input_size"]
    sources: dict[int, str] = {}
    thumbs: dict[int, np.ndarray] = {}
    for shard, meta in shards:
        for row, index in enumerate(shard["thumb_index"].tolist()):
            sources[index] = meta["sources"][row]
            thumbs[index] = shard["thumbs"][row]
    files: dict[str, bytes] = {}
    used: set[int] = set()
    by_path = {plan.path: plan for plan in plans}
    for position, path in enumerate(task.layers):
        plan = by_path[path]
        box_map = arrays[0].get(f"{position}.box_map")
        table = {}
        for which in WHICH:
            merged = _merged(arrays, position, which, k)
            boxes = _boxes(box_map, merged["positions"], input_size)
            used.update(merged["indices"].reshape(-1).tolist())
            table[which] = (merged, boxes)
        units = {}
        for unit in range(plan.count):
            units[str(unit)] = {
                which: [
                    {
                        "index": int(index),
                        "value": round(float(value), 5),
                        "box": [int(b) for b in box],
                        "source": sources.get(int(index), ""),
                    }
                    for index, value, box in zip(
                        m["indices"][unit], m["values"][unit], boxes[unit], strict=True
                    )
                ]
                for which, (m, boxes) in table.items()
            }
        body = {"layer": plan.name, "input_size": list(input_size), "k": k, "units": units}
        files[f"layers/{slug(plan.name)}/examples.json"] = json.dumps(body).encode()
    for index in sorted(used):
        files[thumbnail_path(index)] = _webp(thumbs[index])
    skipped = [item for meta in metas for item in meta.get("skipped", [])]
    return TaskOutput(task, files, {"images": len(used), "skipped": skipped})
