"""A widget run: an engine Optimization with the image parameters and the recipe it came from.

The worker steps it like an Optimization; the images it hands out are the pictures shown (MACO's
canvas's centre, with its transparency as alpha when asked).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["LiveRun"]


class LiveRun:
    """A preview (or grid batch) :class:`~lucid_widgets.optvis.render.Optimization` together with
    its image parameters ``(params, image_f)`` (what its ``param_f`` returned), which
    :func:`resume_preview` carries on from.

    What the worker calls (``step``, ``image``, ``close``, ``objective``, ``optimizer``, ...) is
    the optimization's, except that the images of ``step()`` and ``image()`` are the pictures
    shown: when ``image_f`` has a ``picture`` method (MACO's canvas) they are
    ``image_f.picture(image, alpha=alpha)``: the centre at the requested size, with the transparency
    as alpha when asked.

    Parameters
    ----------
    optimization, image_param
        The run and what its ``param_f`` returned.
    standard_transforms
        The transforms the ``transforms`` setting turns on (``None``: the standard ones).
    redirected_relu_steps
        Redirected-ReLU steps of the run from step 0 (a resumed run takes the rest).
    alpha
        Pictures carry the transparency as alpha (parameterizations with a ``picture`` method).
    follows_lr
        Whether the ``lr`` setting applies to the optimizer (not to a user's own optimizer).
    """

    def __init__(
        self,
        optimization: Any,
        image_param: tuple,
        standard_transforms: Any = None,
        redirected_relu_steps: int = 16,
        alpha: bool = False,
        follows_lr: bool = True,
    ) -> None:
        self.optimization = optimization
        self.image_param = image_param  # (list of tensors, image_f), what param_f returned
        self.standard_transforms = standard_transforms
        self.redirected_relu_steps = redirected_relu_steps
        self.alpha = alpha
        self.follows_lr = follows_lr

    def picture(self, image: Any) -> Any:
        """A ``(B, C, H, W)`` image of this run as shown (see the class docstring)."""
        picture = getattr(self.image_param[1], "picture", None)
        return image if picture is None else picture(image, alpha=self.alpha)

    @property
    def params(self) -> list:
        """The image parameters (tensors) being optimized."""
        return self.image_param[0]

    @property
    def objective(self) -> Any:
        return self.optimization.objective

    @objective.setter
    def objective(self, value: Any) -> None:
        self.optimization.objective = value

    @property
    def transforms(self) -> Any:
        return self.optimization.transforms

    @transforms.setter
    def transforms(self, value: Any) -> None:
        self.optimization.transforms = value

    @property
    def optimizer(self) -> Any:
        return self.optimization.optimizer

    @property
    def step_count(self) -> int:
        return self.optimization.step_count

    @property
    def closed(self) -> bool:
        return self.optimization.closed

    def step(self) -> Any:
        step = self.optimization.step()
        return dataclasses.replace(step, image=self.picture(step.image))

    def image(self) -> Any:
        return self.picture(self.optimization.image())

    def close(self) -> None:
        self.optimization.close()
