"""ImageNet-1k class names (offline) and label lookup by name."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["LabelNotFoundError", "find_label", "imagenet_labels"]


class LabelNotFoundError(KeyError, ValueError):
    """A class name is not in a label list (or matches several entries)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@lru_cache(maxsize=1)
def _imagenet_labels() -> tuple[str, ...]:
    # torchvision ships the names with its weight metadata: no download needed.
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, index = class index (torchvision's spelling).

    Returns a new list each call, so callers may modify it.
    """
    return list(_imagenet_labels())


def find_label(labels: Sequence[str], name: str) -> int:
    """Index of class ``name`` in ``labels``, ignoring case and surrounding spaces.

    Parameters
    ----------
    labels
        Class names, index = logit index (e.g. ``model.lucid_labels``).
    name
        The class to look up, e.g. ``"Egyptian cat"``.

    Raises
    ------
    LabelNotFoundError
        When no label matches (the message lists the closest names) or several do.
    """
    if not isinstance(name, str):
        raise TypeError(f"label name must be a str, got {type(name).__name__}")
    wanted = name.strip().casefold()
    matches = [index for index, label in enumerate(labels) if label.strip().casefold() == wanted]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise LabelNotFoundError(
            f"label {name!r} is ambiguous: it matches indices {matches}; use the index instead"
        )
    folded = {label.casefold(): label for label in labels}
    close = difflib.get_close_matches(wanted, list(folded), n=5, cutoff=0.5)
    contains = [label for label in labels if wanted and wanted in label.casefold()]
    suggestions = list(dict.fromkeys([folded[c] for c in close] + contains))[:8]
    hint = f"; closest: {', '.join(repr(s) for s in suggestions)}" if suggestions else ""
    raise LabelNotFoundError(f"unknown label {name!r} ({len(labels)} labels){hint}")
