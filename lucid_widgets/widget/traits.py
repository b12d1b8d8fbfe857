"""Trait types the widget classes share (kept apart, as lonboard keeps its trait types)."""

from __future__ import annotations

from typing import Any

import traitlets

__all__ = ["SettingsError", "binary_trait", "bytes_from_json"]


class SettingsError(traitlets.TraitError, ValueError):
    """A bad widget setting (a ``TraitError`` for traitlets, a ``ValueError`` for callers)."""


def bytes_from_json(value: Any, widget: Any) -> bytes:
    """Binary trait values from the front end arrive as memoryview (or None)."""
    return b"" if value is None else bytes(value)


def binary_trait() -> traitlets.Bytes:
    """A synced ``Bytes`` trait (images, packed thumbnails), empty by default."""
    return traitlets.Bytes(b"").tag(sync=True, from_json=bytes_from_json)
