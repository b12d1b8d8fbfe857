"""The atlas store: one folder of plain files, read and written through :class:`Atlas`.

Format: docs/ATLAS_FORMAT.md (``FORMAT_VERSION``). ``atlas.json`` is the manifest (model,
weights hash, catalog, settings, layers); ``tasks/<task id>.json`` is a task's completion record
with the sha256 and size of every file it wrote; ``layers/<layer>/index.json`` gathers a layer's
records (written at the end of a build). A file whose checksum does not match is reported, never
returned, and its task is done again by the next build.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lucid_widgets.atlas.files import atomic_write, atomic_write_json, read_json, sha256_bytes
from lucid_widgets.atlas.plan import Task, slug
from lucid_widgets.atlas.tasks import TaskOutput, encode_png, image_path

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Atlas",
    "AtlasCorruptError",
    "AtlasError",
    "AtlasSettingsError",
    "AtlasWeightsError",
    "Problem",
]

FORMAT = "lucid_widgets.atlas"
FORMAT_VERSION = 1
MANIFEST = "atlas.json"


class AtlasError(ValueError):
    """An atlas folder that cannot be used as asked."""


class AtlasWeightsError(AtlasError):
    """The model's weights are not the ones the atlas was built with."""


class AtlasSettingsError(AtlasError):
    """A build asked for other settings than the folder holds."""


class AtlasCorruptError(AtlasError):
    """A stored file is missing or does not match its checksum."""


@dataclass(frozen=True)
class Problem:
    """A missing or corrupt file, and the task that wrote it."""

    path: str
    task: str
    reason: str  # "missing" or "checksum"


@dataclass
class _Claim:
    task: str
    sha256: str
    bytes: int


@dataclass
class Atlas:
    """An atlas folder: the manifest, the completion records and the files they list.

    Open one with :func:`lucid_widgets.atlas.open`; ``build`` returns one too.
    """

    folder: Path
    manifest: dict
    records: dict[str, dict] = field(default_factory=dict)
    # path -> claim, computed once per change of the records (a grid page reads 64 files)
    _memo: dict[str, _Claim] | None = field(default=None, init=False, repr=False, compare=False)

    # ------------------------------------------------------------------ reading

    @classmethod
    def load(cls, folder: str | Path) -> Atlas:
        folder = Path(folder)
        try:
            manifest = read_json(folder / MANIFEST)
        except FileNotFoundError:
            raise AtlasError(
                f"{str(folder)!r} is not an atlas: it has no {MANIFEST} (build one with "
                "lucid_widgets.atlas.build(model, folder))."
            ) from None
        if manifest.get("format") != FORMAT or manifest.get("version", 0) > FORMAT_VERSION:
            raise AtlasError(
                f"{str(folder / MANIFEST)!r} is format {manifest.get('format')!r} version "
                f"{manifest.get('version')!r}; this lucid_widgets reads {FORMAT!r} up to version "
                f"{FORMAT_VERSION}."
            )
        atlas = cls(folder, manifest)
        atlas.reload()
        return atlas

    def reload(self) -> None:
        """Read the completion records again (another process may have added some)."""
        records = {}
        for path in sorted((self.folder / "tasks").glob("*.json")):
            try:
                record = read_json(path)
            except (OSError, ValueError):
                continue  # unreadable record: its task is simply not done
            records[record["task"]["id"]] = record
        self.records = records
        self._memo = None

    @property
    def layers(self) -> list[str]:
        """Layer names in forward order."""
        return [layer["name"] for layer in self.manifest["layers"]]

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(self.manifest["views"])

    @property
    def settings(self) -> dict:
        return dict(self.manifest["settings"])

    def layer_info(self, layer: str) -> dict:
        """The manifest entry of ``layer`` (name, path, count, units, kind, shape)."""
        for entry in self.manifest["layers"]:
            if entry["name"] == layer or entry["path"] == layer:
                return entry
        raise KeyError(f"Layer {layer!r} is not in this atlas; it has: {', '.join(self.layers)}.")

    def units(self, layer: str) -> list[int]:
        """The units of ``layer`` the atlas covers (planned; see :meth:`missing`)."""
        return list(self.layer_info(layer)["units"])

    def _claims(self) -> dict[str, _Claim]:
        if self._memo is not None:
            return self._memo
        claims: dict[str, _Claim] = {}
        for task_id, record in sorted(self.records.items(), key=lambda item: item[1]["finished"]):
            for path, entry in record["files"].items():
                claims[path] = _Claim(task_id, entry["sha256"], entry["bytes"])
        self._memo = claims
        return claims

    def read(self, path: str) -> bytes:
        """A stored file's bytes, checked against its record.

        Raises
        ------
        AtlasCorruptError
            When no finished task wrote it, or the file is missing or corrupt.
        """
        claim = self._claims().get(path)
        if claim is None:
            raise AtlasCorruptError(f"{path!r} is not in the atlas yet (its task is not done).")
        try:
            data = (self.folder / path).read_bytes()
        except OSError:
            raise AtlasCorruptError(f"{path!r} is missing (task {claim.task}).") from None
        if sha256_bytes(data) != claim.sha256:
            raise AtlasCorruptError(
                f"{path!r} does not match its checksum (task {claim.task}); the next build "
                "renders it again."
            )
        return data

    def has(self, path: str) -> bool:
        return path in self._claims()

    def image(self, layer: str, unit: int, view: str = "channel") -> np.ndarray:
        """One unit's picture, ``(H, W, 3)`` uint8 (the diversity view: images side by side)."""
        name = self.layer_info(layer)["name"]
        if view not in self.views and not self.has(image_path(name, view, unit)):
            raise KeyError(f"View {view!r} is not in this atlas; it has: {', '.join(self.views)}.")
        data = self.read(image_path(name, view, int(unit)))
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def examples(self, layer: str, unit: int, which: str = "top") -> list[dict]:
        """Dataset examples of a unit: ``[{index, value, box, source}]``, strongest first.

        ``box`` is the receptive field ``(top, left, bottom, right)`` in input pixels (see
        ``examples_input_size``). Empty when the atlas has no dataset pass.
        """
        path = f"layers/{slug(self.layer_info(layer)['name'])}/examples.json"
        if not self.has(path):
            return []
        table = json.loads(self.read(path))
        return table["units"][str(int(unit))][which]

    def example_image(self, index: int) -> np.ndarray:
        """The thumbnail of dataset image ``index``, ``(h, w, 3)`` uint8."""
        data = self.read(f"dataset/{int(index):08d}.webp")
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def connections(self, layer: str, unit: int) -> dict | None:
        """``{"in": {layer, units, strength, method}, "out": ...}``; ``None`` when not built,
        ``{"available": False, "reason": ...}`` when the blocks engine was missing."""
        name = self.layer_info(layer)["name"]
        window = int(unit) // self.settings["batch_size"]
        path = f"layers/{slug(name)}/links/{window:05d}.json"
        if not self.has(path):
            return None
        table = json.loads(self.read(path))
        if not table["available"]:
            return {"available": False, "reason": table["reason"]}
        return table["units"].get(str(int(unit)))

    # ------------------------------------------------------------------ completeness

    def check(self) -> list[Problem]:
        """Every file listed by a record that is missing or fails its checksum."""
        problems = []
        for path, claim in self._claims().items():
            try:
                data = (self.folder / path).read_bytes()
            except OSError:
                problems.append(Problem(path, claim.task, "missing"))
                continue
            if sha256_bytes(data) != claim.sha256:
                problems.append(Problem(path, claim.task, "checksum"))
        return problems

    def done(self, task_id: str) -> bool:
        return task_id in self.records

    def missing(self) -> list[str]:
        """Ids of the planned tasks that are not done."""
        return [
            task["id"] for task in self.manifest.get("tasks", []) if task["id"] not in self.records
        ]

    @property
    def complete(self) -> bool:
        return not self.missing() and not self.check()

    def store_bytes(self) -> int:
        return sum(claim.bytes for claim in self._claims().values())

    # ------------------------------------------------------------------ writing

    def commit(self, output: TaskOutput) -> None:
        """Write a task's files (atomically, one by one), then its completion record."""
        files = {}
        for path, data in output.files.items():
            atomic_write(self.folder / path, data)
            files[path] = {"sha256": sha256_bytes(data), "bytes": len(data)}
        record = {
            "task": output.task.to_dict(),
            "files": files,
            "meta": output.meta,
            "finished": time.time(),
        }
        atomic_write_json(self.folder / "tasks" / f"{output.task.id}.json", record)
        self.records[output.task.id] = record
        self._memo = None

    def forget(self, task_ids: Iterable[str]) -> None:
        """Drop completion records, so that the next build does those tasks again."""
        for task_id in set(task_ids):
            (self.folder / "tasks" / f"{task_id}.json").unlink(missing_ok=True)
            self.records.pop(task_id, None)
        self._memo = None

    def put(
        self, layer: str, units: Sequence[int], images: np.ndarray, view: str = "channel"
    ) -> None:
        """Store pictures rendered elsewhere (e.g. by the Microscope), one record per unit.

        ``images`` is ``(U, H, W, 3)`` float in [0, 1] or uint8. A unit's newest picture wins.
        """
        name = self.layer_info(layer)["name"]
        if len(units) != len(images):
            raise ValueError(f"{len(units)} units but {len(images)} images.")
        for unit, image in zip(units, images, strict=True):
            task = Task(f"put.{slug(name)}.{view}.{int(unit):05d}", "put", name, view, (int(unit),))
            self.commit(
                TaskOutput(task, {image_path(name, view, int(unit)): encode_png(image)}, {})
            )

    def write_indexes(self) -> None:
        """``layers/<layer>/index.json``: each layer's files with their checksums."""
        claims = self._claims()
        for entry in self.manifest["layers"]:
            prefix = f"layers/{slug(entry['name'])}/"
            files = {
                path: {"sha256": c.sha256, "bytes": c.bytes, "task": c.task}
                for path, c in claims.items()
                if path.startswith(prefix)
            }
            atomic_write_json(self.folder / prefix / "index.json", {"layer": entry, "files": files})

    def __repr__(self) -> str:
        done = len(self.records)
        missing = len(self.missing())
        return (
            f"Atlas({str(self.folder)!r}, model={self.manifest.get('model')!r}, "
            f"layers={len(self.layers)}, tasks done={done}, missing={missing})"
        )
