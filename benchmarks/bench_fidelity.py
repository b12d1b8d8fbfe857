"""Transfer benchmark: do class visualizations made on Lite0 carry their class to other networks?

Run by hand, never by pytest or CI::

    python3 benchmarks/bench_fidelity.py --quick          # 4 classes, 1 seed, 8 steps: smoke run
    nohup python3 benchmarks/bench_fidelity.py > benchmarks/results/fidelity.log 2>&1 &

Each method renders all classes of a seed in one batched run on the generator (default
``efficientnet_lite0``) and records the images at every step budget (32 / 64 / 128 / 256) within
that one run; every image is classified by the judges (``efficientnet_lite1``,
``efficientnet_lite2``, and the generator itself as a reference). A hit is the class in a judge's
top-5. Seconds are the wall-clock time of the run until the budget (this CPU, one process,
``--threads`` threads). Results go to ``benchmarks/results/fidelity.json`` after every
(method, seed), and a rerun skips what is there (resumable); the table to ``fidelity.md``.

Methods: ``random`` (objective-free sanity floor: random FFT images), ``lucent`` (Lucent 0.1.8's
``render_vis`` defaults: ``param.image(224)``, its standard transforms, Adam 0.05, whole network,
weights keep ``requires_grad``), ``ours`` (this project's Lucid recipe, its defaults before MACO:
``param.image(224)``, standard transforms, Adam 0.05), ``defaults`` (what a render without a
``param_f`` uses now, ``recipes.make_recipe(DEFAULT_RECIPE, 224)``: MACO's recipe, returning the
canvas's central 224 px), ``maco`` (``param.maco`` canvas 448, ``maco_transforms(224)``, NAdam lr
1.0 as Horama; the saved and judged image is the whole canvas) and the variants in ``METHODS``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import lucid_widgets as lw  # noqa: E402
from lucid_widgets.optvis import objectives as obj  # noqa: E402
from lucid_widgets.optvis.param import image as lw_image  # noqa: E402
from lucid_widgets.optvis.param import maco, maco_transforms  # noqa: E402
from lucid_widgets.optvis.param.color import valid_rgb  # noqa: E402
from lucid_widgets.optvis.param.spatial import random_fft_image  # noqa: E402
from lucid_widgets.optvis.recipes import DEFAULT_RECIPE, make_recipe  # noqa: E402
from lucid_widgets.optvis.render import to_numpy  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BUDGETS = (32, 64, 128, 256)
SIZE = 224
# 30 classes spread over ImageNet-1k (animals, objects, scenes, food), by index.
CLASSES = (
    1, 9, 22, 71, 94, 130, 145, 207, 281, 291, 309, 323, 340, 386, 417,
    430, 471, 510, 531, 574, 604, 620, 671, 717, 763, 817, 850, 919, 950, 980,
)  # fmt: skip
QUICK_CLASSES = (1, 291, 817, 950)
JUDGES = ("efficientnet_lite1", "efficientnet_lite2")


class JudgeError(ValueError):
    """A judge model that cannot score ImageNet classes."""


def check_judge(name: str, model: torch.nn.Module) -> None:
    """Raise :class:`JudgeError` unless ``model`` has 1000 ImageNet labels."""
    labels = getattr(model, "lucid_labels", None)
    if labels is None or len(labels) != 1000:
        count = "no labels" if labels is None else f"{len(labels)} labels"
        raise JudgeError(
            f"judge {name!r} has {count}: a judge must classify the 1000 ImageNet-1k classes "
            "(lucid_labels of length 1000), e.g. efficientnet_lite1, efficientnet_lite2, resnet50."
        )


def top5_hits(model: torch.nn.Module, images: np.ndarray, classes: tuple[int, ...]) -> list[bool]:
    """Whether each image's class is in ``model``'s top-5.  images: (B, H, W, 3) in [0, 1]."""
    pre = model.lucid_preprocess
    batch = torch.as_tensor(images, dtype=torch.float32).permute(0, 3, 1, 2)  # (B, 3, H, W)
    batch = F.interpolate(batch, size=pre.input_size, mode="bilinear", antialias=True)
    with torch.no_grad():
        logits = model(pre(batch.clamp(0, 1)))  # (B, 1000)
    top = logits.topk(5, dim=1).indices
    return [int(label) in top[row].tolist() for row, label in enumerate(classes)]


def class_objective(classes: tuple[int, ...]) -> obj.Objective:
    """Sum over the batch of each image's own class logit (image ``i`` -> ``classes[i]``)."""
    total = obj.class_logit(classes[0], batch=0)
    for index, label in enumerate(classes[1:], start=1):
        total = total + obj.class_logit(label, batch=index)
    return total


def run_ours(model, classes, budgets, seed, size, method) -> tuple[list[np.ndarray], list[float]]:
    """lucid_widgets ``render_vis`` with ``method``'s param / transforms / optimizer."""
    stamps: list[float] = []
    options = METHODS[method](len(classes), size)
    start = time.perf_counter()
    images = lw.render_vis(
        model,
        class_objective(classes),
        thresholds=budgets,
        seed=seed,
        progress=False,
        callback=lambda step: stamps.append(time.perf_counter() - start),
        **options,
    )
    return images, [stamps[b - 1] for b in budgets]


def run_lucent(model, classes, budgets, seed, size) -> tuple[list[np.ndarray], list[float]]:
    """Lucent 0.1.8's render_vis with its defaults (standard transforms, Adam 0.05).

    ``fixed_image_size=size``: the transformed image is resized back to ``size`` (below 224 px
    Lucent would otherwise upsample every step to 224, a larger network input than ours).
    """
    from lucent.optvis import objectives as lucent_obj
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render

    stamps: list[float] = []
    start = time.perf_counter()

    class TimedAdam(torch.optim.Adam):
        def step(self, closure=None):
            result = super().step(closure)
            stamps.append(time.perf_counter() - start)
            return result

    objective = lucent_obj.channel("_fc", classes[0], batch=0)
    for index, label in enumerate(classes[1:], start=1):
        objective = objective + lucent_obj.channel("_fc", label, batch=index)
    torch.manual_seed(seed)
    np.random.seed(seed)
    for parameter in model.parameters():
        parameter.requires_grad_(True)  # as Lucent's users load models
    try:
        images = lucent_render.render_vis(
            model,
            objective,
            param_f=lambda: lucent_param.image(size, batch=len(classes)),
            optimizer=lambda params: TimedAdam(params, lr=5e-2),
            thresholds=budgets,
            fixed_image_size=size,
            show_image=False,
            progress=False,
        )
    finally:
        for module in model.modules():  # Lucent leaves a hook per module behind
            for key, hook in list(module._forward_hooks.items()):
                if type(getattr(hook, "__self__", None)).__name__ == "ModuleHook":
                    del module._forward_hooks[key]
        model.zero_grad(set_to_none=True)
    return images, [stamps[b - 1] for b in budgets]


def run_random(model, classes, budgets, seed, size) -> tuple[list[np.ndarray], list[float]]:
    """Objective-free floor: random FFT images (Lucid's spectrum scale, sd 0.25), no steps."""
    generator = torch.Generator().manual_seed(seed)
    raw = random_fft_image((len(classes), 3, size, size), generator, sd=0.25)  # (B, 3, H, W)
    image = to_numpy(valid_rgb(raw, decorrelate=True))
    return [image] * len(budgets), [0.0] * len(budgets)


def _maco_options(factor: int, crop: tuple[float, float], lr: float) -> Callable[[int, int], dict]:
    """MACO on a canvas ``factor`` times the render size, crops resized to the render size."""

    def options(batch: int, size: int) -> dict:
        params, image_f = maco(factor * size, batch=batch, input_size=size)
        return dict(
            param_f=lambda: (params, image_f),
            transforms=maco_transforms(size, crop=crop),
            optimizer=lambda p: torch.optim.NAdam(p, lr=lr),
            redirected_relu_steps=0,
        )

    return options


METHODS: dict[str, Callable[[int, int], dict]] = {
    "ours": lambda batch, size: dict(param_f=lambda: lw_image(size, batch=batch)),
    "defaults": lambda batch, size: make_recipe(DEFAULT_RECIPE, size, batch).options(),
    "maco": _maco_options(2, (0.4, 0.6), 1.0),
    "maco_1x": _maco_options(1, (0.7, 1.0), 1.0),
}
ALL_METHODS = ("random", "ours", "defaults", "maco", "lucent", "maco_1x")


def render(method, model, classes, budgets, seed, size):
    if method == "lucent":
        return run_lucent(model, classes, budgets, seed, size)
    if method == "random":
        return run_random(model, classes, budgets, seed, size)
    return run_ours(model, classes, budgets, seed, size, method)


def judge_all(judges, images, classes) -> dict[str, list[list[bool]]]:
    """judge name -> per budget, per class: hit."""
    return {name: [top5_hits(model, batch, classes) for batch in images] for name, model in judges}


def table(results: dict, budgets: tuple[int, ...], judges: tuple[str, ...]) -> str:
    """Markdown: per method and budget, hit rate per judge (over seeds), both, and seconds."""
    head = "| method | steps | " + " | ".join(judges) + " | both judges | self | seconds |"
    rows = [head, "|" + "---|" * (len(judges) + 5)]
    methods = sorted({key.split("/")[0] for key in results}, key=ALL_METHODS.index)
    for method in methods:
        runs = [value for key, value in results.items() if key.split("/")[0] == method]
        for index, budget in enumerate(budgets):
            rates = []
            for name in (*judges, "self"):
                hits = [hit for run in runs for hit in run["hits"][name][index]]
                rates.append(100.0 * sum(hits) / max(len(hits), 1))
            both = [h for run in runs for name in judges for h in run["hits"][name][index]]
            seconds = np.mean([run["seconds"][index] for run in runs])
            cells = [f"{rate:.0f} %" for rate in rates[:-1]]
            rows.append(
                f"| {method} | {budget} | " + " | ".join(cells)
                + f" | {100.0 * sum(both) / max(len(both), 1):.1f} % | {rates[-1]:.0f} % "
                f"| {seconds:.1f} |"
            )  # fmt: skip
    seeds = sorted({key.split("/")[1] for key in results})
    return "\n".join(rows) + f"\n\nseeds: {', '.join(seeds)}; {len(runs[0]['classes'])} classes"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 classes, seed 0, 4/8 steps")
    parser.add_argument("--methods", nargs="+", default=list(ALL_METHODS), choices=ALL_METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--generator", default="efficientnet_lite0")
    parser.add_argument("--judges", nargs="+", default=list(JUDGES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=SIZE, help="render size in px (224)")
    parser.add_argument("--classes", type=int, default=len(CLASSES), help="use N of the 30, spread")
    parser.add_argument("--max-steps", type=int, default=BUDGETS[-1], help="last budget")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "fidelity.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    spread = np.linspace(0, len(CLASSES) - 1, min(args.classes, len(CLASSES))).round()
    classes = QUICK_CLASSES if args.quick else tuple(CLASSES[int(i)] for i in spread)
    budgets = (4, 8) if args.quick else tuple(b for b in BUDGETS if b <= args.max_steps)
    seeds = args.seeds[:1] if args.quick else args.seeds
    generator = lw.zoo.load(args.generator)
    judges = [(name, lw.zoo.load(name)) for name in args.judges]
    for name, model in judges:
        check_judge(name, model)
    check_judge(args.generator, generator)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for seed in seeds:
        for method in args.methods:
            key = f"{method}/{seed}"
            done = results.get(key, {})
            if (done.get("classes"), done.get("size"), done.get("budgets")) == (
                list(classes),
                args.size,
                list(budgets),
            ):
                continue
            images, seconds = render(method, generator, classes, budgets, seed, args.size)
            hits = judge_all(judges, images, classes)
            hits["self"] = [top5_hits(generator, batch, classes) for batch in images]
            results[key] = {
                "classes": list(classes), "seconds": seconds, "hits": hits,
                "size": args.size, "budgets": list(budgets),
            }  # fmt: skip
            np.savez_compressed(
                args.out.with_name(f"{args.out.stem}_{method}_{seed}.npz"),
                **{
                    f"b{budget}": (image * 255).round().astype(np.uint8)
                    for budget, image in zip(budgets, images, strict=True)
                },
            )
            temporary = args.out.with_suffix(".tmp")
            temporary.write_text(json.dumps(results, indent=1))
            temporary.replace(args.out)  # atomic: an interrupted run keeps what it finished
            rate = [np.mean(hits[name][-1]) for name in args.judges]
            print(f"{key}: {seconds[-1]:.0f} s, top-5 at {budgets[-1]}: {rate}", flush=True)
    text = table(results, budgets, tuple(args.judges))
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
