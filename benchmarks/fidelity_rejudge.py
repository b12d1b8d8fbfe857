"""Judge saved MACO images again on their central crop, at the scale they were optimized at.

    python3 benchmarks/fidelity_rejudge.py benchmarks/results/f224/fidelity.json

``bench_fidelity.py`` saves MACO's whole canvas (2x the render size) and its judges see it
resized to their input: at 224 px that halves every feature, at 128 px (canvas 256 -> 224) it
barely changes them. This script reads the saved images (``fidelity_maco_<seed>.npz`` beside the
JSON) and judges the central ``size x size`` crop of the canvas instead (no rescaling at 224 px),
printing both views per seed: the hit rate of Lite1 and Lite2 together, and of the generator.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_fidelity as bf  # noqa: E402

import lucid_widgets as lw  # noqa: E402


def main(argv: list[str]) -> int:
    results = Path(argv[0]) if argv else bf.RESULTS_DIR / "fidelity.json"
    runs = json.loads(results.read_text())
    judges = [(name, lw.zoo.load(name)) for name in bf.JUDGES]
    generator = lw.zoo.load("efficientnet_lite0")
    for key in sorted(k for k in runs if k.startswith("maco/")):
        run, seed = runs[key], key.split("/")[1]
        classes, size = tuple(run["classes"]), run["size"]
        saved = np.load(results.with_name(f"{results.stem}_maco_{seed}.npz"))
        for view in ("whole", "centre"):
            both, own = [], []
            for budget in run["budgets"]:
                images = saved[f"b{budget}"].astype(np.float32) / 255  # (B, C, C, 3) canvas
                if view == "centre":
                    offset = (images.shape[1] - size) // 2
                    images = images[:, offset : offset + size, offset : offset + size]
                hits = [h for _, model in judges for h in bf.top5_hits(model, images, classes)]
                both.append(f"{100 * np.mean(hits):.0f} %")
                own.append(f"{100 * np.mean(bf.top5_hits(generator, images, classes)):.0f} %")
            print(f"{key} {view:6s} judges {both}  self {own}  (budgets {run['budgets']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
