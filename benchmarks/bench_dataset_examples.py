"""Throughput of dataset_examples against a bare no_grad forward over the same images.

Not run by CI. Usage::

    python3 benchmarks/bench_dataset_examples.py                # cuda if available, 2048 images
    python3 benchmarks/bench_dataset_examples.py --device cpu --images 64 --batch-size 16

The data are scikit-image photos (random crops and flips) and generated images (noise,
gradients, stripes), resized to the model's input size and held as a uint8 ``(N, H, W, C)``
tensor in CPU memory. The bare forward moves each batch to the device, scales it to [0, 1],
normalizes it and runs the whole model; the dataset pass does the same plus hooks that reduce
each activation to per-(image, unit) max / min on the spot, the running top-k / bottom-k merge
and thumbnails. Setup (probe forward, receptive fields) is timed separately, on a warm-up pass
over the first batch. The two are timed alternately (bare, pass, bare, pass, ...) in the same
process and the best of each is kept, so that load from other processes hits both alike.
Goal: ratio >= 0.8 with all browsable layers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lucid_widgets.dataset.examples import dataset_examples  # noqa: E402
from lucid_widgets.dataset.sample import default_layers  # noqa: E402
from lucid_widgets.optvis.preprocess import resolve  # noqa: E402


def load_model(device: torch.device) -> tuple[torch.nn.Module, str]:
    try:
        from lucid_widgets import zoo

        model, name = zoo.load("efficientnet_lite0"), "efficientnet_lite0"
    except Exception as error:  # noqa: BLE001 - any failure falls back
        import torchvision

        print(f"zoo.load('efficientnet_lite0') failed ({error}); using resnet18, random weights")
        model, name = torchvision.models.resnet18(), "resnet18 (random weights)"
    return model.to(device).eval(), name


def make_images(count: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """``(count, H, W, 3)`` uint8: photo crops and generated patterns."""
    import skimage.data

    from lucid_widgets.dataset.sources import load_image

    photos = [
        getattr(skimage.data, name)()
        for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
    ]
    photos += [np.stack([skimage.data.camera()] * 3, -1), skimage.data.colorwheel()]
    rng = np.random.default_rng(seed)
    height, width = size
    images = torch.empty(count, height, width, 3, dtype=torch.uint8)
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    for index in range(count):
        kind = index % 3
        if kind < 2:
            photo = photos[rng.integers(len(photos))]
            scale = rng.uniform(0.4, 1.0)
            crop_h, crop_w = int(photo.shape[0] * scale), int(photo.shape[1] * scale)
            top = rng.integers(photo.shape[0] - crop_h + 1)
            left = rng.integers(photo.shape[1] - crop_w + 1)
            patch = photo[top : top + crop_h, left : left + crop_w]
            patch = patch[:, ::-1] if rng.random() < 0.5 else patch
            image = load_image(np.ascontiguousarray(patch), size, 3).permute(1, 2, 0)
        else:
            frequency, angle = rng.uniform(2, 30), rng.uniform(0, np.pi)
            stripes = np.sin(frequency * (np.cos(angle) * xs + np.sin(angle) * ys))
            colour = rng.uniform(0, 1, 3)
            pattern = 0.5 + 0.5 * stripes[..., None] * colour + rng.normal(0, 0.05, (*size, 3))
            image = torch.from_numpy((np.clip(pattern, 0, 1) * 255).astype(np.uint8))
        images[index] = image
    return images


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_forward(model, images: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Seconds for a plain no_grad forward over ``images`` (N, H, W, C) uint8."""
    pre = resolve(model)
    dtype = next(model.parameters()).dtype
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        for first in range(0, len(images), batch_size):
            batch = images[first : first + batch_size].permute(0, 3, 1, 2)
            batch = batch.to(device, non_blocking=True).to(dtype).div_(255)
            model(pre(batch))
    sync(device)
    return time.perf_counter() - start


def examples_pass(model, images, layers, batch_size, k) -> tuple[float, dict]:
    device = next(model.parameters()).device
    sync(device)
    start = time.perf_counter()
    result = dataset_examples(
        model, images, layers, k=k, batch_size=batch_size, cache_dir=False, progress=False
    )
    sync(device)
    return time.perf_counter() - start, result.info


def check_against_cpu(model, images: torch.Tensor, layers: list[str], k: int) -> None:
    """The device's result (positions from max-with-indices) against the CPU's (located later)."""
    import copy

    options = {"k": k, "cache_dir": False, "progress": False}
    device_result = dataset_examples(model, images, layers, **options)
    cpu_result = dataset_examples(copy.deepcopy(model).cpu(), images, layers, **options)
    for layer in layers:
        for which in ("top", "bottom"):
            a, b = device_result[layer], cpu_result[layer]
            same = getattr(a, f"indices_{which}") == getattr(b, f"indices_{which}")
            where = (getattr(a, f"positions_{which}") == getattr(b, f"positions_{which}")).all(-1)
            gap = np.abs(getattr(a, f"values_{which}") - getattr(b, f"values_{which}")).max()
            boxes = np.array_equal(a.box_map, b.box_map)
            print(
                f"check {layer} {which}: same index {same.mean():.4f}, same position where same "
                f"index {where[same].mean():.4f}, max value gap {gap:.2e}, boxes equal {boxes}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=None, help="default: automatic")
    parser.add_argument("-k", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--check", type=int, default=0, help="compare N images with the CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--all-only", action="store_true", help="only the all-layers row")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, name = load_model(device)
    pre = resolve(model)
    images = make_images(args.images, pre.input_size)
    all_layers = default_layers(model)
    presets = {
        "one mid layer": [all_layers[len(all_layers) // 2]],
        "last conv layer": [all_layers[-3] if len(all_layers) > 3 else all_layers[-1]],
        f"all {len(all_layers)} browsable layers": all_layers,
    }
    if args.all_only:
        presets = {key: value for key, value in presets.items() if key.startswith("all")}
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"model: {name} on {device} ({card})")
    print(f"images: {len(images)} x {tuple(pre.input_size)}, k={args.k}")
    if args.check:
        check_against_cpu(model, images[: args.check], [all_layers[1], all_layers[-3]], args.k)
    rows = []
    for label, layers in presets.items():
        first = min(len(images), args.batch_size or 64)
        setup, info = examples_pass(model, images[:first], layers, args.batch_size, args.k)
        batch_size = info["batch_size"]
        bares, passes = [], []
        for _ in range(args.repeats):  # alternated: drifting load hits both sides alike
            bares.append(bare_forward(model, images, batch_size, device))
            passes.append(examples_pass(model, images, layers, batch_size, args.k)[0])
        bare, timed = min(bares), min(passes)
        paired = sorted(b / t for b, t in zip(bares, passes, strict=True))
        print(f"{label}: round-by-round ratios {[round(r, 2) for r in paired]}", flush=True)
        rows.append(
            {
                "layers": label,
                "batch_size": batch_size,
                "setup_s": round(setup, 2),
                "bare_img_per_s": round(len(images) / bare, 1),
                "examples_img_per_s": round(len(images) / timed, 1),
                "ratio": round(bare / timed, 3),
                "paired_median": round(float(np.median(paired)), 3),
            }
        )
    columns = ("batch", "setup s", "bare img/s", "pass img/s", "ratio")
    header = f"{'layers':<28} " + " ".join(
        f"{c:>{w}}" for c, w in zip(columns, (5, 8, 11, 11, 6), strict=True)
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['layers']:<28} {row['batch_size']:>5} {row['setup_s']:>8} "
            f"{row['bare_img_per_s']:>11} {row['examples_img_per_s']:>11} {row['ratio']:>6}"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"model": name, "device": str(device), "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
