"""Shared helpers for the benchmarks: models, layer lists, timing statistics and tables.

Benchmarks are run by hand (``python3 benchmarks/<script>.py``), never by pytest or CI.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GRID_UNITS = 16
TARGETS = {"step": 3.0, "grid": 6.0, "overhead": 0.10}  # the issue's targets vs Lucent

GOOGLENET_LAYERS = (
    "conv1",
    "conv2",
    "conv3",
    "inception3a",
    "inception3b",
    "inception4a",
    "inception4b",
    "inception4c",
    "inception4d",
    "inception4e",
    "inception5a",
    "inception5b",
)
GOOGLENET_QUICK = ("conv2", "inception3b", "inception4c", "inception5b")

LITE0_LAYERS = ("stem", *(f"block{index}" for index in range(16)), "head")
LITE0_QUICK = ("block2", "block8", "block15")


@dataclass
class ModelCase:
    """A model to benchmark and the layers to render.

    Attributes
    ----------
    name
        Display name.
    model
        The network, in eval mode with frozen weights.
    layers
        Layer names as lucid_widgets takes them (aliases or dotted paths).
    grid_layer
        The layer whose first 16 units make the grid benchmark.
    paths
        Layer name -> dotted module path (aliases resolved).
    channels_last
        Whether our engine fed the network channels-last tensors (set by the benchmark).
    """

    name: str
    model: nn.Module
    layers: tuple[str, ...]
    grid_layer: str
    paths: dict[str, str] = field(default_factory=dict)
    channels_last: bool = False  # the layout our engine used last (the bare loop copies it)
    network: nn.Module | None = None  # the module our engine ran last (the bare loop runs it)

    def path(self, layer: str) -> str:
        """Dotted module path of ``layer``."""
        return self.paths.get(layer, layer)

    def lucent_layer(self, layer: str) -> str:
        """The name Lucent's ``hook_model`` gives the module: path parts joined by ``_``."""
        return self.path(layer).replace(".", "_")


@contextmanager
def lucent_hooks_removed(model: nn.Module) -> Iterator[None]:
    """Remove the forward hooks a Lucent ``render_vis`` call leaves on every module.

    Lucent 0.1.8's ``hook_model`` registers a ``ModuleHook`` per module and never calls its
    ``close()``: each call leaves one more hook per module (each holding its last output).
    Left in place they slow every later forward pass of the model, Lucent's and ours alike,
    more with each run, so timings would depend on the order of the runs.
    """
    try:
        yield
    finally:
        for module in model.modules():
            for key, hook in list(module._forward_hooks.items()):
                if type(getattr(hook, "__self__", None)).__name__ == "ModuleHook":
                    del module._forward_hooks[key]


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode; the weights keep ``requires_grad`` as users load them (see ``--lucent-frozen``).

    Our engine freezes the weights itself for a run and the bare loop does the same; Lucent 0.1.8
    does not, so as its users run it, it also computes every weight's gradient.
    """
    model.eval()
    return model


def googlenet_case(quick: bool) -> ModelCase:
    """torchvision GoogLeNet with random weights (no download)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    layers = GOOGLENET_QUICK if quick else GOOGLENET_LAYERS
    return ModelCase("googlenet (random weights)", freeze(model), layers, "inception4c")


def lite0_case(quick: bool) -> ModelCase | str:
    """The zoo's EfficientNet-Lite0, or a message saying why it is unavailable."""
    try:
        import lucid_widgets.zoo as zoo

        model = zoo.load("efficientnet_lite0")
    except Exception as error:  # noqa: BLE001 (any failure means: skip this model)
        return f"efficientnet_lite0 skipped: {type(error).__name__}: {error}"
    aliases = dict(getattr(model, "lucid_aliases", {}) or {})
    layers = tuple(layer for layer in (LITE0_QUICK if quick else LITE0_LAYERS) if layer in aliases)
    if not layers:
        return "efficientnet_lite0 skipped: none of the expected aliases (stem, blockN, head)"
    grid = "block8" if "block8" in aliases else layers[len(layers) // 2]
    return ModelCase("efficientnet_lite0", freeze(model), layers, grid, aliases)


# --------------------------------------------------------------------------- timing


def median(values: Sequence[float]) -> float:
    """Median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


Times = tuple[float, float]  # (wall, process CPU), in seconds or ms


_SYNC = {"cuda": False}


def set_cuda_sync(enabled: bool) -> None:
    """Make :func:`now` wait for queued CUDA work first (for timings on a GPU)."""
    _SYNC["cuda"] = bool(enabled)


def now() -> Times:
    """Wall-clock and process CPU seconds (CPU time is steadier on a shared machine)."""
    if _SYNC["cuda"]:
        torch.cuda.synchronize()
    return time.perf_counter(), time.process_time()


def per_step(start: Times, end: Times, steps: int) -> Times:
    """(wall, CPU) milliseconds per step between two :func:`now` readings."""
    return 1000 * (end[0] - start[0]) / steps, 1000 * (end[1] - start[1]) / steps


def timed(function: Callable[[], object]) -> Times:
    """(wall, process CPU) seconds that ``function()`` takes."""
    start = now()
    function()
    end = now()
    return end[0] - start[0], end[1] - start[1]


def alternate(sides: dict[str, Callable[[int], Times]], rounds: int, seed: int) -> dict:
    """Run every side once per round, rotating the order each round; ``{side: [(wall, cpu)]}``."""
    results: dict[str, list[Times]] = {name: [] for name in sides}
    names = list(sides)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(sides[name](seed + round_index))
    return results


def medians(runs: dict[str, list[Times]]) -> dict[str, float]:
    """``{side: median wall, side_cpu: median CPU, side_min: fastest wall}``."""
    result = {}
    for name, values in runs.items():
        result[name] = median([wall for wall, _ in values])
        result[f"{name}_cpu"] = median([cpu for _, cpu in values])
        result[f"{name}_min"] = min((wall for wall, _ in values), default=float("nan"))
    return result


def environment() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [line.split(":", 1)[1].strip() for line in info if "model name" in line]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return {
        "cpu": f"{cpu} ({os.cpu_count()} logical cores)",
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "load average (1, 5, 15 min)": load,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the report


def units_per_minute(seconds: float, steps: int, render_steps: int = 512) -> float:
    """Units per minute at ``render_steps``-step renders, from a ``steps``-step timing."""
    return 60 * GRID_UNITS / (seconds * render_steps / steps)


def _verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "MISSED"


def _ratio(row: dict, top: str, bottom: str, clock: str = "") -> float:
    return row[top + clock] / row[bottom + clock]


def _step_table(rows: list[dict], with_bare: bool) -> str:
    header = ["layer", "Lucent ms/step", "ours ms/step", "Lucent / ours", "(CPU time)"]
    if with_bare:
        header += ["bare loop ms/step", "ours vs bare", "(CPU time)"]
    table = []
    for row in rows:
        cells = [row["layer"], f"{row['lucent']:.1f}", f"{row['ours']:.1f}"]
        cells += [f"{_ratio(row, 'lucent', 'ours'):.2f}x"]
        cells += [f"{_ratio(row, 'lucent', 'ours', '_cpu'):.2f}x"]
        if with_bare:
            cells += [f"{row['bare']:.1f}", f"{100 * (_ratio(row, 'ours', 'bare') - 1):+.1f}%"]
            cells += [f"{100 * (_ratio(row, 'ours', 'bare', '_cpu') - 1):+.1f}%"]
        table.append(cells)
    return markdown_table(header, table)


def _step_summary(rows: list[dict], with_bare: bool) -> list[str]:
    ratio = median([_ratio(row, "lucent", "ours") for row in rows])
    cpu_ratio = median([_ratio(row, "lucent", "ours", "_cpu") for row in rows])
    lines = [
        f"- per-step speed-up, median over {len(rows)} layers: **{ratio:.2f}x** wall, "
        f"{cpu_ratio:.2f}x CPU time (target >= {TARGETS['step']:.0f}x: "
        f"{_verdict(ratio, TARGETS['step'])})"
    ]
    if with_bare:
        overhead = median([_ratio(row, "ours", "bare") - 1 for row in rows])
        cpu_overhead = median([_ratio(row, "ours", "bare", "_cpu") - 1 for row in rows])
        fastest = [_ratio(row, "ours", "bare", "_min") - 1 for row in rows if "ours_min" in row]
        worst = max(rows, key=lambda row: _ratio(row, "ours", "bare"))
        lines.append(
            f"- overhead vs the bare loop, median over layers: **{100 * overhead:+.1f}%** wall, "
            f"{100 * cpu_overhead:+.1f}% CPU time, {100 * median(fastest):+.1f}% comparing each "
            f"side's fastest round; worst median "
            f"{100 * (_ratio(worst, 'ours', 'bare') - 1):+.1f}% at {worst['layer']} (target "
            f"within {100 * TARGETS['overhead']:.0f}%: "
            f"{_verdict(overhead, TARGETS['overhead'], higher_is_better=False)})"
        )
    return lines


def _grid_section(grid: dict) -> list[str]:
    steps, lucent = grid["steps"], grid["lucent"]
    rows = [
        [
            "Lucent, one unit per render_vis run",
            f"{lucent:.1f}",
            f"{units_per_minute(lucent, steps):.2f}",
            "1.00x",
        ]
    ]
    for batch_size in grid["batch_sizes"]:
        name = f"ours_b{batch_size}"
        ratio, cpu_ratio = _ratio(grid, "lucent", name), _ratio(grid, "lucent", name, "_cpu")
        rows.append(
            [
                f"ours, render_units(batch_size={batch_size})",
                f"{grid[name]:.1f}",
                f"{units_per_minute(grid[name], steps):.2f}",
                f"**{ratio:.2f}x** ({cpu_ratio:.2f}x CPU time)",
            ]
        )
    header = [
        f"{GRID_UNITS}-unit grid, {grid['layer']}",
        f"s for {GRID_UNITS} units x {steps} steps",
        "units/min at 512 steps (extrapolated)",
        "units/min vs Lucent",
    ]
    headline = 16 if 16 in grid["batch_sizes"] else grid["batch_sizes"][0]
    ratio = _ratio(grid, "lucent", f"ours_b{headline}")
    return [
        "",
        markdown_table(header, rows),
        "",
        f"- grid units/min ratio (batch_size={headline}): **{ratio:.2f}x** (target >= "
        f"{TARGETS['grid']:.0f}x: {_verdict(ratio, TARGETS['grid'])})",
    ]


def _redirect_line(redirect: dict) -> str:
    extra = redirect["on"] / redirect["off"] - 1
    share = 16 * (redirect["on"] - redirect["off"]) / (512 * redirect["off"])
    return (
        f"- redirected ReLU (off in the timings above; Lucent has none) at {redirect['layer']}: "
        f"{redirect['off']:.1f} ms/step off, {redirect['on']:.1f} ms/step on "
        f"({100 * extra:+.0f}%); on for the first 16 of 512 steps it adds {100 * share:.1f}% "
        "to a render"
    )


def report(case: ModelCase, rows: list[dict], grid: dict | None, redirect: dict | None) -> str:
    """Markdown section for one model."""
    with_bare = all("bare" in row for row in rows)
    lines = [f"### {case.name}", "", _step_table(rows, with_bare), ""]
    layout = "channels-last" if getattr(case, "channels_last", False) else "contiguous (NCHW)"
    lines.append(f"- our engine fed the network {layout} tensors; the bare loop did the same")
    lines += _step_summary(rows, with_bare)
    if redirect is not None:
        lines.append(_redirect_line(redirect))
    if grid is not None:
        lines += _grid_section(grid)
    return "\n".join(lines) + "\n"


def document(
    env: dict, settings: str, notes: list[str], sections: list[str], differences: str
) -> str:
    """The markdown report: environment, settings, notes, one section per model, caveats."""
    return "\n".join(
        ["# lucid_widgets vs Lucent 0.1.8", ""]
        + [f"- {key}: {value}" for key, value in env.items()]
        + [f"- {settings}", ""]
        + [f"- {note}" for note in notes]
        + [""]
        + sections
        + ["```", differences, "```"]
    )


def write(path: Path, text: str, raw: dict) -> None:
    """The markdown report and its raw numbers (``.json`` next to it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.with_suffix(".json").write_text(json.dumps(raw, indent=1))
