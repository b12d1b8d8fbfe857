"""README pictures from the transfer benchmark's saved images (run by hand after bench_fidelity).

    python3 benchmarks/fidelity_pictures.py --budget 64

Writes ``docs/fidelity_lucent_vs_ours.jpg`` (rows: Lucent's defaults, ours, MACO; the same
classes, seed and step budget) and ``docs/maco_transparency.jpg`` (MACO images rendered here on
Lite0, then the same with the accumulated-gradient transparency as alpha).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import lucid_widgets as lw  # noqa: E402
from lucid_widgets.display import grid  # noqa: E402
from lucid_widgets.optvis.param import maco, maco_transforms  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parent.parent / "docs"


def side_by_side(
    budget: int, seed: int, columns: int, centre: bool = False, results: Path = RESULTS
) -> Path:
    """Rows: Lucent's defaults, ours before MACO, and the defaults now (``defaults``, saved by
    the run that has them) or else the ``maco`` row."""
    rows = []
    third = "defaults" if (results / f"fidelity_defaults_{seed}.npz").is_file() else "maco"
    for method in ("lucent", "ours", third):
        saved = results / f"fidelity_{method}_{seed}.npz"
        if not saved.is_file():
            print(f"no {saved.name}: row skipped")
            continue
        images = np.load(saved)[f"b{budget}"][:columns]
        if centre and method == "maco":  # the canvas's centre at the scale it was optimized at
            side = images.shape[1] // 2
            images = images[:, side // 2 : side // 2 + side, side // 2 : side // 2 + side]
        if images.shape[1] != 128:  # MACO's canvas is larger: same size in the picture
            tensor = torch.as_tensor(images).permute(0, 3, 1, 2).float()
            tensor = torch.nn.functional.interpolate(tensor, size=128, mode="area")
            images = tensor.permute(0, 2, 3, 1).round().clamp(0, 255).byte().numpy()
        rows.append(grid(images, columns=columns))
    path = DOCS / "fidelity_lucent_vs_ours.jpg"
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, quality=85)
    return path


def transparency(classes: tuple[int, ...], steps: int, size: int) -> Path:
    model = lw.zoo.load("efficientnet_lite0")
    params, image_f = maco(2 * size, batch=len(classes), input_size=size)
    objective = lw.objectives.class_logit(classes[0], batch=0)
    for index, label in enumerate(classes[1:], start=1):
        objective = objective + lw.objectives.class_logit(label, batch=index)
    lw.render_vis(
        model, objective, param_f=lambda: (params, image_f), seed=0, progress=False,
        transforms=maco_transforms(size), optimizer=lambda p: torch.optim.NAdam(p, lr=1.0),
        thresholds=(steps,), redirected_relu_steps=0,
    )  # fmt: skip
    rgba = image_f.rgba()  # (B, H, W, 4)
    columns = len(classes)
    picture = np.concatenate([grid(rgba[..., :3], columns), grid(rgba, columns)], axis=0)
    path = DOCS / "maco_transparency.jpg"
    Image.fromarray(picture).resize((picture.shape[1] // 2, picture.shape[0] // 2)).save(
        path, quality=85
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--only", choices=("side", "maco"), default=None)
    parser.add_argument("--maco-centre", action="store_true", help="MACO row: canvas centre")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the .npz files")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.only != "maco":
        print(side_by_side(args.budget, args.seed, args.columns, args.maco_centre, args.results))
    if args.only != "side":
        print(transparency((291, 817, 950), args.budget, args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
