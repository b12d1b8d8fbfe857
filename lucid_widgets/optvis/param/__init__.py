"""Image parameterizations (Lucid's `optvis.param`), in PyTorch.

A parameterization returns `(params, image_f)`: `params` is a list of leaf tensors to optimize and
`image_f()` returns `(B, C, H, W)` images. :func:`image`, :func:`from_image` and :func:`cppn` return
images in `[0, 1]`; the building blocks (:func:`pixel_image`, :func:`fft_image`,
:func:`lowres_tensor`, :func:`laplacian_pyramid`) return raw values to wrap with
:func:`to_valid_rgb`. :func:`maco` (with :func:`maco_transforms`) is MACO's phase-only
parameterization. Every tensor is created on the current default device, so calling a
parameterization inside `with torch.device(device):` creates it there.
"""

from lucid_widgets.optvis.param.color import decorrelate_color, to_valid_rgb
from lucid_widgets.optvis.param.cppn import CPPN, composite_activation, cppn
from lucid_widgets.optvis.param.images import from_image, image
from lucid_widgets.optvis.param.lowres import laplacian_pyramid, lowres_tensor
from lucid_widgets.optvis.param.maco import MacoImage, load_spectrum, maco, maco_transforms
from lucid_widgets.optvis.param.spatial import fft_image, pixel_image, rfft2d_freqs

__all__ = [
    "CPPN",
    "MacoImage",
    "composite_activation",
    "cppn",
    "decorrelate_color",
    "fft_image",
    "from_image",
    "image",
    "laplacian_pyramid",
    "load_spectrum",
    "lowres_tensor",
    "maco",
    "maco_transforms",
    "pixel_image",
    "rfft2d_freqs",
    "to_valid_rgb",
]
