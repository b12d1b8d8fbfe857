"""Shared by the dataset tests: a tiny net, random images, a brute-force oracle, a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image
from torch import nn

from lucid_widgets.optvis.hooks import capture
from lucid_widgets.optvis.preprocess import Preprocess

SIZE = 16
LAYERS = ["0", "3", "7"]  # conv 16x16 (pre-ReLU), conv 8x8 after a pool, linear (B, 5)


def make_model(seed: int = 0, widths: tuple[int, int, int] = (4, 6, 5)) -> nn.Module:
    """conv 3 -> a, ReLU, pool, conv a -> b, ReLU, global pool, linear b -> c (classes)."""
    torch.manual_seed(seed)
    first, second, classes = widths
    model = nn.Sequential(
        nn.Conv2d(3, first, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(first, second, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(second, classes),
    )
    model.lucid_preprocess = Preprocess(input_size=(SIZE, SIZE))
    return model


def make_images(count: int = 40, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, SIZE, SIZE, generator=generator)  # (N, C, H, W) in [0, 1]


class ForwardCounter:
    """Counts calls of the model and images through it."""

    def __init__(self, model: nn.Module):
        self.calls = self.images = 0
        self.handle = model.register_forward_pre_hook(self)

    def __call__(self, module, inputs) -> None:
        self.calls += 1
        self.images += inputs[0].shape[0]


def brute_force(model, images, layer, k):
    """Top / bottom (values, indices, positions) by sorting every image's activation."""
    pre = model.lucid_preprocess
    with torch.no_grad(), capture(model, [layer]) as run:
        acts = run(pre(images))[layer].float()
    if acts.dim() == 2:
        acts = acts[:, :, None, None]
    flat = acts.flatten(2).numpy()  # (N, U, HW)
    width = acts.shape[3]
    results = {}
    for which, reduce, arg, sign in (
        ("top", np.max, np.argmax, -1),
        ("bottom", np.min, np.argmin, 1),
    ):
        values, where = reduce(flat, 2), arg(flat, 2)  # (N, U)
        order = [
            np.lexsort((np.arange(len(images)), sign * values[:, u]))[:k]
            for u in range(flat.shape[1])
        ]
        order = np.stack(order)  # (U, k)
        unit = np.arange(flat.shape[1])[:, None]
        positions = np.stack([where[order, unit] // width, where[order, unit] % width], -1)
        results[which] = (values[order, unit], order, positions)
    return results


def assert_same(result_a, result_b):
    assert result_a.layers.keys() == result_b.layers.keys()
    for layer in result_a.layers:
        a, b = result_a[layer], result_b[layer]
        for which in ("top", "bottom"):
            np.testing.assert_allclose(
                getattr(a, f"values_{which}"), getattr(b, f"values_{which}"), rtol=1e-5, atol=1e-6
            )
            np.testing.assert_array_equal(
                getattr(a, f"indices_{which}"), getattr(b, f"indices_{which}")
            )
            np.testing.assert_array_equal(
                getattr(a, f"positions_{which}"), getattr(b, f"positions_{which}")
            )


def write_folder(root: Path, count: int = 10) -> dict[str, Path]:
    """Random RGB PNG / JPEG files in nested folders plus gray, RGBA and corrupt files."""
    rng = np.random.default_rng(0)
    (root / "a" / "b").mkdir(parents=True)
    for index in range(count):
        folder = root / "a" if index % 2 else root / "a" / "b"
        pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index:02d}.{'png' if index % 3 else 'jpg'}")
    special = {
        "gray": root / "gray.png",
        "rgba": root / "rgba.png",
        "corrupt": root / "a" / "corrupt.jpg",
        "photo": root / "astronaut.png",
    }
    Image.fromarray(rng.integers(0, 256, (18, 18), dtype=np.uint8), "L").save(special["gray"])
    rgba = rng.integers(0, 256, (18, 18, 4), dtype=np.uint8)
    rgba[:, :, 3] = 0  # fully transparent: composited over white
    Image.fromarray(rgba, "RGBA").save(special["rgba"])
    special["corrupt"].write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    shutil.copy(Path(skimage.data.__file__).parent / "astronaut.png", special["photo"])
    (root / "notes.txt").write_text("not an image")
    return special
