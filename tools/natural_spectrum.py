"""Estimate the natural-image magnitude spectrum that ``param.maco`` ships with.

Run once, by hand (no network: the photos are scikit-image's bundled ones)::

    python3 tools/natural_spectrum.py   # -> lucid_widgets/optvis/param/natural_spectrum.npy

The result is ``estimate_spectrum(PHOTOS, size=128)``: the mean rfft magnitude of 128 x 128 tiles
of the photos in decorrelated colour space, ``(3, 128, 65)`` float16 (~50 KB).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from lucid_widgets.optvis.param.maco import SPECTRUM_FILE, estimate_spectrum  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")  # bundled with scikit-image, colour
SIZE = 128


def photos() -> list[np.ndarray]:
    """scikit-image's bundled colour photographs, as ``(H, W, 3)`` uint8."""
    from skimage import data

    return [getattr(data, name)() for name in PHOTOS]


def main() -> int:
    spectrum = estimate_spectrum(photos(), size=SIZE)
    np.save(SPECTRUM_FILE, spectrum.astype(np.float16))
    print(f"wrote {SPECTRUM_FILE} {spectrum.shape} from {', '.join(PHOTOS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
