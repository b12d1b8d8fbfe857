"""CUDA smoke check and timing, run by hand on a GPU machine (CI has none).

    python3 benchmarks/cuda_check.py --out DIR

Checks that the engine, the zoo and the unit grid run on CUDA with no global device, that the
model is left as found, and prints steps per second for one unit and units per minute for a grid.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import lucid_widgets as lw


def _timed(function, *args, **kwargs):
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = function(*args, **kwargs)
    torch.cuda.synchronize()
    return result, time.perf_counter() - start


def check_classify(model) -> None:
    from skimage import data

    from lucid_widgets.dataset.prepare import prepare_image

    for photo, expected in ((data.chelsea(), "Egyptian cat"), (data.coffee(), "espresso")):
        batch = prepare_image(photo, model.lucid_preprocess).to("cuda")
        with torch.no_grad():
            logits = model(model.lucid_preprocess(batch))
        label = model.lucid_labels[int(logits.argmax())]
        print(f"classify on cuda: {label!r} (expected {expected!r})")
        assert label == expected


def check_render(model, out: Path) -> None:
    state = [p.requires_grad for p in model.parameters()]
    first = lw.render_vis(model, "block11:3", thresholds=(32,), seed=0, progress=False)[0]
    again = lw.render_vis(model, "block11:3", thresholds=(32,), seed=0, progress=False)[0]
    print(
        f"render_vis on cuda: shape {first.shape}, max |diff| between seeded runs "
        f"{np.abs(first - again).max():.2e}"
    )
    assert np.isfinite(first).all()
    assert state == [p.requires_grad for p in model.parameters()]
    assert all(not m._forward_hooks for m in model.modules())
    assert next(model.parameters()).device.type == "cuda"
    run = lw.Optimization(model, "block11:3", seed=0)
    for _ in range(5):
        run.step()
    _, seconds = _timed(lambda: [run.step() for _ in range(50)])
    run.close()
    print(f"one unit, 128 px: {50 / seconds:.1f} steps/s")
    grid, seconds = _timed(
        lw.render_units, model, "block11", units=range(32), size=128, steps=256, batch_size=32,
        progress=False, seed=0,
    )  # fmt: skip
    print(f"grid of 32 units x 256 steps: {seconds:.1f} s = {32 / seconds * 60:.0f} units/min")
    lw.save(grid, out / "cuda_grid.png")


def check_inception(out: Path) -> None:
    model = lw.zoo.load("inceptionv1", pretrained=False, device="cuda")
    images = lw.render_vis(model, "mixed4a:476", thresholds=(16,), seed=0, progress=False)
    assert np.isfinite(images[0]).all()
    print("inceptionv1 (random weights) renders mixed4a:476 on cuda")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=".")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    assert torch.cuda.is_available(), "no CUDA device"
    print(torch.__version__, torch.cuda.get_device_name())
    model = lw.zoo.load("efficientnet_lite0", device="cuda")
    check_classify(model)
    check_render(model, out)
    check_inception(out)
    try:
        from skimage import data

        photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()] * 4
        result, seconds = _timed(lw.dataset_examples, model, photos, layers=["block11"], k=3,
                                 progress=False, cache_dir=out / "cache")  # fmt: skip
        print(f"dataset_examples on cuda: {len(photos) / seconds:.1f} images/s")
    except (ImportError, AttributeError) as error:
        print(f"dataset_examples skipped: {error}")
    print("CUDA CHECK PASSED")


if __name__ == "__main__":
    main()
