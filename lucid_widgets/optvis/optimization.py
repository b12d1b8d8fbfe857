"""A steppable feature-visualization run, :class:`Optimization` (``render_vis`` and
``optimize`` in :mod:`lucid_widgets.optvis.render` loop over it).

One step: ``image_f()`` -> transforms -> the model's preprocessing -> a forward pass that hooks
only the layers the objective reads and stops after the last of them -> ``loss = -objective`` ->
gradients with respect to the image parameters only (``torch.autograd.grad``: no weight gradient
is computed or stored).

The user's model is left alone: a run works on a shadow copy (see
:func:`~lucid_widgets.optvis.hooks.shadow_copy`: same modules and weights, eval mode, no hooks),
made when the run starts, so the user can keep using, training or backpropagating through the
model meanwhile. A model with hooks of its own is run itself, so that its hooks see their own
modules at every step; only then, and only if it is in training mode, are its modules put in
eval mode for the length of the run (and put back by :meth:`Optimization.close`).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lucid_widgets.optvis import transforms as transforms_module
from lucid_widgets.optvis.arguments import check_seed
from lucid_widgets.optvis.fast.cpu_allocator import tune_cpu_allocator
from lucid_widgets.optvis.fast.folding import folded_network
from lucid_widgets.optvis.fast.sparse_backward import skip_zero_branches
from lucid_widgets.optvis.hooks import (
    capture,
    model_device,
    model_dtype,
    resolve_layer,
)
from lucid_widgets.optvis.objective_base import Activations, Objective, as_objective
from lucid_widgets.optvis.param import seeded
from lucid_widgets.optvis.preprocess import Preprocess, resolve
from lucid_widgets.optvis.recipes import render_options
from lucid_widgets.optvis.redirected_relu import redirected_relu
from lucid_widgets.optvis.shadow import checked_shadow, eval_mode, user_hook_paths

__all__ = [
    "DEFAULT_SIZE",
    "Optimization",
    "OptimizerFn",
    "ParamFn",
    "StopSignal",
    "Step",
    "build_transform",
]

ParamFn = Callable[[], tuple[list[torch.Tensor], Callable[[], torch.Tensor]]]
OptimizerFn = Callable[[list[torch.Tensor]], torch.optim.Optimizer]
StopSignal = threading.Event | Callable[[], bool] | None


@dataclass
class Step:
    """One optimization step.

    Attributes
    ----------
    step
        1-based count of optimizer steps taken.
    loss
        The minimized value, ``-objective``.
    image
        The image this step evaluated, ``(B, C, H, W)`` in ``[0, 1]``, detached (for MACO the
        whole canvas; :meth:`Optimization.image` gives the picture: its centre, requested size).
    objective
        The name of the objective in force at this step.
    """

    step: int
    loss: float
    image: torch.Tensor
    objective: str


DEFAULT_SIZE = 128  # side of the image a render without a param_f makes


def _check_objective_layers(model: nn.Module, objective: Objective) -> None:
    for layer in objective.layers:
        resolve_layer(model, layer)  # raises with the closest names


def build_transform(transforms: Sequence[Callable] | Callable | None) -> Callable:
    """One ``transform(image, generator)`` from a list, a callable, or ``None`` (the standard)."""
    if transforms is None:
        transforms = transforms_module.standard_transforms
    if callable(transforms) and not isinstance(transforms, (list, tuple)):
        transforms = [transforms]
    if len(transforms) == 0:
        return lambda image, generator: image
    return transforms_module.compose(list(transforms))


class Optimization:
    """A feature-visualization run that advances one step at a time.

    The objective and the transforms may be replaced between steps (the widget's live editor
    does this); the image parameters and the optimizer state carry on.

    Parameters
    ----------
    model
        Any ``nn.Module`` on a real device, in any floating dtype (the image is cast to it). It
        is not changed: the run works on a shadow copy in eval mode (see the module docstring;
        a model with hooks of its own is run itself).
    objective
        An :class:`~lucid_widgets.optvis.objectives.Objective`, a ``"layer:unit"`` string or a
        callable.
    param_f
        Zero-argument callable returning ``(params, image_f)``; default: the ``recipe``'s image
        of 128 px (MACO's, see :mod:`lucid_widgets.optvis.recipes`).
    optimizer
        ``optimizer(params) -> torch.optim.Optimizer``; default the recipe's (MACO: NAdam at
        1.0; Lucid: Adam at 0.05).
    transforms
        A list of transforms, ``[]`` for none; default the recipe's (MACO: its crops of the
        canvas; Lucid: ``transforms.standard_transforms``).
    seed
        Seeds the parameter initialisation (drawn through :func:`lucid_widgets.optvis.param.randn`)
        and every random transform: same seed, same pixels. Torch's global random state is not
        touched.
    preprocess
        Overrides the model's preprocessing (see :mod:`lucid_widgets.optvis.preprocess`);
        ``False`` feeds the image as is.
    redirected_relu_steps
        Steps during which ReLUs pass Lucid's redirected gradient (0 turns it off); default the
        recipe's (MACO: 0; Lucid: 16).
    recipe
        ``None`` (default): MACO's recipe when no ``param_f`` is given, Lucid's defaults for
        whatever is not given when one is (a Lucid image never gets MACO's crops).
        ``"lucid"``: the classic Lucid defaults (``param.image(128)``, standard transforms, Adam
        0.05, 16 redirected-ReLU steps). ``"maco"``: MACO's (no ``param_f`` then). Arguments
        given always win.
    channels_last
        Feed the network channels-last tensors (default: on CPU). A model that cannot take
        them (a ``.view`` on a feature map) is detected at the first step and fed contiguous
        tensors instead.
    fold_batchnorm
        Run a copy of the model with each batch norm folded into the convolution before it (see
        :mod:`lucid_widgets.optvis.fast.folding`), built afresh when the run starts; same math,
        less work per step. Objectives that read a raw convolution output run the unfolded copy,
        and a model with hooks of its own is never folded.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective | str | Callable,
        param_f: ParamFn | None = None,
        optimizer: OptimizerFn | None = None,
        transforms: Sequence[Callable] | Callable | None = None,
        seed: int | None = None,
        preprocess: Preprocess | bool | None = None,
        redirected_relu_steps: int | None = None,
        channels_last: bool | None = None,
        fold_batchnorm: bool = True,
        recipe: str | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        self.model = model
        self.device = model_device(model)
        if self.device.type == "meta":
            raise ValueError(
                f"{type(model).__name__} is on the meta device: it has shapes but no weights to "
                "render. Load it on a real device (model.to_empty(device='cpu') then "
                "load_state_dict(...), or build it without device='meta')."
            )
        self.dtype = model_dtype(model)
        seed = check_seed(seed)
        self.preprocess = resolve(model, preprocess)
        self.labels = getattr(model, "lucid_labels", None)
        self.objective = objective
        chosen = render_options(
            recipe, DEFAULT_SIZE, self.preprocess.channels, param_f=param_f,
            transforms=transforms, optimizer=optimizer,
            redirected_relu_steps=redirected_relu_steps,
        )  # fmt: skip
        self.transforms = chosen["transforms"]
        self.redirected_relu_steps = int(chosen["redirected_relu_steps"])
        # oneDNN's channels-last convolutions are much faster on CPU; the math is the same
        self.channels_last = self.device.type == "cpu" if channels_last is None else channels_last
        if self.device.type == "cpu":
            tune_cpu_allocator()  # freed activations stay for the next step (see cpu_allocator)
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.params, self._image_f = self._init_params(chosen["param_f"], seed)
        self.optimizer = chosen["optimizer"](self.params)
        self.step_count = 0
        self.closed = False
        self._eval: contextlib.ExitStack = contextlib.ExitStack()
        self.fold_batchnorm = fold_batchnorm
        self._base: nn.Module | None = None  # chosen at the first step (see _start)
        self._modules: dict[str, nn.Module] = {}
        self._folded = None  # the FoldedNetwork of this run, if any
        self._layout_checked = False
        self._network_for_objective: tuple = (None, model, {})

    def _start(self, network_input: torch.Tensor) -> None:
        """Choose what the run reads, from the model as it is now (nothing is cached).

        A checked shadow copy, folded when that is exact; the model itself when it has hooks
        of its own or cannot be copied faithfully (in eval mode until :meth:`close`).
        """
        sample = network_input[:1].detach().contiguous()
        shadow = None if user_hook_paths(self.model) else checked_shadow(self.model, sample)
        if shadow is None:
            if any(module.training for module in self.model.modules()):
                self._eval.enter_context(eval_mode(self.model))  # put back by close()
            self._base = self.model
        else:
            self._base = shadow
            if self.fold_batchnorm:
                self._folded = folded_network(shadow, sample)
        self._modules = dict(self._base.named_modules())

    def _init_params(self, param_f: ParamFn, seed: int | None):
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        with seeded(generator), torch.device(self.device):
            params, image_f = param_f()
        params = list(params)
        if not params:
            raise ValueError("param_f returned no parameters to optimize.")
        return params, image_f

    @property
    def objective(self) -> Objective:
        """The objective in force; assigning one takes effect at the next step."""
        return self._objective

    @objective.setter
    def objective(self, value: Objective | str | Callable) -> None:
        objective = as_objective(value)
        _check_objective_layers(self.model, objective)
        self._objective = objective

    @property
    def transforms(self) -> Callable:
        """The composed transform; assign a list (or ``[]``) to replace it."""
        return self._transform

    @transforms.setter
    def transforms(self, value: Sequence[Callable] | Callable | None) -> None:
        self._transform = build_transform(value)

    @property
    def network(self) -> nn.Module:
        """The module the current objective runs: a shadow copy (folded or not) or the model."""
        return self._network_for_objective[1]

    def image(self) -> torch.Tensor:
        """The current image, ``(B, C, H, W)`` in ``[0, 1]``, detached: ``image_f()``, or
        ``image_f.picture()`` when it has one (MACO's: the canvas's centre at the scale the
        network saw it, ``output_size`` px)."""
        picture = getattr(self._image_f, "picture", None)
        with torch.no_grad():
            return picture() if callable(picture) else self._image_f().detach()

    def _network_input(self, image: torch.Tensor) -> torch.Tensor:
        network_input = self._transform(image, self.generator)
        if network_input.shape[1] == self.preprocess.channels + 1:  # alpha: random background
            network_input = transforms_module.collapse_alpha_random()(network_input, self.generator)
        return self.preprocess(network_input).to(self.dtype)  # the model's dtype

    def _forward(self, run: Callable, network_input: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the hooked model, in channels-last layout when that is on and the model allows.

        The layout is checked by the run's first forward pass: if the channels-last pass fails
        and a contiguous one succeeds, the run goes on contiguous (a ``.view`` on a feature map
        needs it); a contiguous pass that fails too raises its own error.
        """
        if not self.channels_last:
            return run(network_input)
        if self._layout_checked:
            return run(network_input.contiguous(memory_format=torch.channels_last))
        try:
            values = run(network_input.contiguous(memory_format=torch.channels_last))
        except Exception:  # noqa: BLE001 (decided below by what a contiguous pass does)
            values = run(network_input)
            self.channels_last = False
        self._layout_checked = True
        return values

    def _network(self, objective: Objective, network_input: torch.Tensor) -> tuple:
        """``(module, its named_modules)`` to run: the folded shadow when it reads the same."""
        if self._base is None:
            self._start(network_input)
        if self._folded is None:
            self._network_for_objective = (objective, self._base, self._modules)
            return self._base, self._modules
        cached_objective, network, modules = self._network_for_objective
        if cached_objective is not objective:
            network, modules = self._base, self._modules
            paths = [resolve_layer(self.model, layer) for layer in objective.layers]
            if self._folded.can_read(paths):
                network, modules = self._folded.network, self._folded.modules
            self._network_for_objective = (objective, network, modules)
        return network, modules

    def _activations(self, objective: Objective, image: torch.Tensor, redirect: bool = False):
        hooked = [layer for layer in objective.layers if layer != "input"]
        values: dict[str, torch.Tensor] = {}
        if hooked:
            network_input = self._network_input(image)
            network, modules = self._network(objective, network_input)
            with (
                redirected_relu(network, enabled=redirect),
                capture(network, hooked, modules=modules) as run,
            ):
                values.update(self._forward(run, network_input))
            for tensor in values.values():
                skip_zero_branches(tensor)
        if "input" in objective.layers:
            values["input"] = image
        return Activations(values, self.labels)

    def _backward(self, loss: torch.Tensor) -> None:
        """Gradients of ``loss`` into the image parameters only (no weight gradient)."""
        leaves = [param for param in self.params if param.requires_grad]
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        for param, grad in zip(leaves, grads, strict=True):
            param.grad = grad

    def step(self) -> Step:
        """Take one optimizer step and report it."""
        if self.closed:
            raise RuntimeError("This Optimization is closed; start a new one.")
        objective = self._objective
        redirect = self.step_count < self.redirected_relu_steps
        self.optimizer.zero_grad(set_to_none=True)
        image = self._image_f()  # (B, C, H, W) in [0, 1]
        value = objective(self._activations(objective, image, redirect))
        if value.dim() != 0:
            value = value.sum()
        loss = -value
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"The objective {objective.name} became {-loss_value} at step "
                f"{self.step_count + 1}; lower the learning rate or check the objective "
                "(a division by a value near zero?)."
            )
        if not loss.requires_grad:
            raise RuntimeError(
                f"The objective {objective.name} does not depend on the image: it reads "
                f"{sorted(objective.layers) or 'no layers'}; did it detach its tensors?"
            )
        self._backward(loss)
        self.optimizer.step()
        self.step_count += 1
        return Step(self.step_count, loss_value, image.detach(), objective.name)

    def close(self) -> None:
        """End the run (a model run itself gets its training flags back); safe to call twice."""
        if not self.closed:
            self.closed = True
            self._eval.close()

    def __enter__(self) -> Optimization:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:  # a dropped run must not leave the model in eval mode
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()
