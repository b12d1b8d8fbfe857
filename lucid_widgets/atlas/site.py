"""``export_site``: a static Microscope website of an atlas, opened from ``file://`` or any host.

The site is plain files: ``index.html``, ``app.js`` and ``style.css`` (copied from
``site_assets/``), ``data/index.js`` (the model, its layers and image paths, as
``window.ATLAS = {...}``: browsers do not ``fetch`` JSON from ``file://``), one
``data/layer-<layer>.js`` per layer (dataset examples and connections, loaded on a unit page),
and WebP images. Only files whose checksums verify are published; the rest show as "missing".
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lucid_widgets.atlas.files import atomic_write
from lucid_widgets.atlas.merge import thumbnail_path
from lucid_widgets.atlas.plan import slug
from lucid_widgets.atlas.store import Atlas, AtlasCorruptError
from lucid_widgets.atlas.tasks import image_path

__all__ = ["SiteReport", "estimate_site_bytes", "export_site", "site_image"]

ASSETS = Path(__file__).resolve().parent / "site_assets"
QUALITY = 80
_FACTS = ("name", "alias", "type", "kind", "shape", "units", "group", "order")


@dataclass(frozen=True)
class SiteReport:
    """What ``export_site`` wrote: the folder, its size, and the size per unit."""

    out: Path
    total_bytes: int
    units: int

    @property
    def bytes_per_unit(self) -> float:
        return self.total_bytes / max(self.units, 1)

    def __str__(self) -> str:
        return (
            f"site {self.out}: {self.total_bytes / 1e6:.2f} MB for {self.units} units "
            f"({self.bytes_per_unit / 1e3:.1f} KB per unit)"
        )


def site_image(data: bytes, quality: int = QUALITY) -> bytes:
    """A stored PNG as the site's WebP."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=quality, method=4)
    return buffer.getvalue()


def _script(variable: str, value) -> bytes:
    return f"{variable}{json.dumps(value, separators=(',', ':'))});\n".encode()


class _Writer:
    def __init__(self, atlas: Atlas, out: Path, quality: int) -> None:
        self.atlas, self.out, self.quality, self.written = atlas, out, quality, 0

    def write(self, relative: str, data: bytes) -> str:
        atomic_write(self.out / relative, data)
        self.written += len(data)
        return relative

    def image(self, source: str, relative: str, convert: bool) -> str | None:
        """Publish a stored file; ``None`` when it is missing or fails its checksum."""
        try:
            data = self.atlas.read(source)
        except AtlasCorruptError:
            return None
        return self.write(relative, site_image(data, self.quality) if convert else data)


def _layer_entry(atlas: Atlas, writer: _Writer, entry: dict, catalog: dict) -> dict:
    name = entry["name"]
    images = {}
    for view in atlas.views:
        images[view] = {}
        for unit in entry["units"]:
            target = f"img/{slug(name)}/{view}/{unit}.webp"
            published = writer.image(image_path(name, view, unit), target, convert=True)
            if published:
                images[view][unit] = published
    info = catalog.get(entry["path"], {})
    facts = {key: info.get(key) for key in _FACTS if info.get(key) is not None}
    facts.update(path=entry["path"], units_in_layer=entry["count"])
    return {
        "name": name, "path": entry["path"], "count": entry["count"], "units": entry["units"],
        "type": info.get("type", ""), "shape": entry["shape"], "images": images, "facts": facts,
        "data": f"data/layer-{slug(name)}.js",
    }  # fmt: skip


def _layer_data(atlas: Atlas, entry: dict) -> dict:
    """Examples and connections of a layer's units (what a unit page shows)."""
    name, data = entry["name"], {"examples": {}, "links": {}, "input_size": [1, 1]}
    for unit in entry["units"]:
        try:
            top, bottom = atlas.examples(name, unit, "top"), atlas.examples(name, unit, "bottom")
            links = atlas.connections(name, unit)
        except AtlasCorruptError:
            continue
        if top or bottom:
            data["examples"][unit] = {"top": top, "bottom": bottom}
        if links is not None:
            data["links"][unit] = links
    path = f"layers/{slug(name)}/examples.json"
    if atlas.has(path):
        data["input_size"] = json.loads(atlas.read(path))["input_size"]
    return data


def export_site(
    folder: str | os.PathLike | Atlas, out: str | os.PathLike, quality: int = QUALITY
) -> SiteReport:
    """Write a static website of the atlas in ``folder`` to the folder ``out``.

    Pages: the model (layers in forward order, unit counts, each layer's first units), a layer
    (its unit grid, views switchable), a unit (every view, dataset examples with their
    receptive-field boxes, connected units, catalog facts). URLs: ``#/layer/NAME/unit/3``.

    Returns
    -------
    SiteReport
        The total bytes written and the bytes per unit.
    """
    atlas = folder if isinstance(folder, Atlas) else Atlas.load(folder)
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    writer = _Writer(atlas, out, quality)
    for asset in ("index.html", "app.js", "style.css"):
        writer.write(asset, (ASSETS / asset).read_bytes())
    catalog = {info["name"]: info for info in atlas.manifest["catalog"]}
    entries = atlas.manifest["layers"]
    layers = [_layer_entry(atlas, writer, entry, catalog) for entry in entries]
    examples: dict[int, str] = {}
    for entry in entries:
        data = _layer_data(atlas, entry)
        for unit in data["examples"].values():
            for item in unit["top"] + unit["bottom"]:
                index = item["index"]
                if index not in examples:
                    published = writer.image(thumbnail_path(index), f"ex/{index}.webp", False)
                    if published:
                        examples[index] = published
        name = json.dumps(entry["name"])
        writer.write(f"data/layer-{slug(entry['name'])}.js", _script(f"ATLAS_LAYER({name},", data))
    units = int(np.sum([len(entry["units"]) for entry in entries]))
    index = {"model": atlas.manifest["model"], "views": list(atlas.views), "layers": layers,
             "examples": examples, "total_units": units, "settings": atlas.settings}  # fmt: skip
    text = f"window.ATLAS = {json.dumps(index, separators=(',', ':'))};\n"
    writer.write("data/index.js", text.encode())
    return SiteReport(out, writer.written, units)


def estimate_site_bytes(atlas: Atlas, sample: int = 8) -> float:
    """Bytes per unit of the exported site, from up to ``sample`` units per view as WebP.

    Counts the unit's pictures and its share of the dataset thumbnails and page data.
    """
    per_view = []
    for view in atlas.views:
        sizes = []
        for entry in atlas.manifest["layers"]:
            for unit in entry["units"][:sample]:
                try:
                    sizes.append(len(site_image(atlas.read(image_path(entry["name"], view, unit)))))
                except AtlasCorruptError:
                    continue
        per_view.append(float(np.mean(sizes)) if sizes else 0.0)
    units = max(1, sum(len(entry["units"]) for entry in atlas.manifest["layers"]))
    shared = sum(
        record["files"][path]["bytes"]
        for record in atlas.records.values()
        for path in record["files"]
        if path.startswith("dataset/") or path.endswith((".json",)) and "/links/" in path
    )
    return sum(per_view) + shared / units
