"""Static, offline HTML snapshots of a widget: ``w.save_html("microscope.html")``.

The page is one self-contained file: the widget's own bundled front end (``static/widget.js`` and
``widget.css``) and its current state (images included, base64) are inlined, and a small read-only
model object stands in for the kernel. It needs no server, no CDN and no network: open it from
disk, mail it, or attach it to a report. It shows the same DOM as the live widget, with the
controls disabled.

(The alternative, ``ipywidgets.embed.embed_data`` + the html-manager, needs require.js,
``@jupyter-widgets/html-manager`` and anywidget's AMD front end as local files next to the page;
one file is more robust.)
"""

from __future__ import annotations

import base64
import html
import json
import pathlib
from typing import Any

__all__ = ["save_html", "to_html", "widget_state"]

_STATIC = pathlib.Path(__file__).parent.parent / "static"

_BOOT = """
const data = JSON.parse(document.getElementById("lw-state").textContent);
const values = data.values;
for (const [name, encoded] of Object.entries(data.buffers)) {
  const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
  values[name] = new DataView(bytes.buffer);
}
values.readonly = true;
const model = {
  get: (name) => values[name],
  set() {}, save_changes() {}, on() {}, off() {}, send() {},
};
const url = URL.createObjectURL(new Blob([data.module], { type: "text/javascript" }));
const widget = await import(url);
widget.default.render({ model, el: document.getElementById("lw-app") });
document.body.dataset.ready = "true";
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="generator" content="lucid_widgets">
<title>{title}</title>
<style>{css}</style>
<style>
body {{ margin: 16px; font-family: system-ui, sans-serif; background: Canvas; color: CanvasText; }}
.lw-export-title {{ font-size: 14px; margin: 0 0 10px; opacity: 0.75; }}
</style>
</head>
<body>
<h1 class="lw-export-title">{title}</h1>
<div id="lw-app"></div>
<noscript>This snapshot of a lucid_widgets widget needs JavaScript.</noscript>
<script type="application/json" id="lw-state">{state}</script>
<script type="module">{boot}</script>
</body>
</html>
"""


def widget_state(widget: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The widget's synced trait values as JSON (binary traits returned separately)."""
    values: dict[str, Any] = {}
    buffers: dict[str, bytes] = {}
    for name in widget.keys:
        if name.startswith("_"):
            continue
        value = getattr(widget, name)
        if isinstance(value, (bytes, bytearray, memoryview)):
            buffers[name] = bytes(value)
            continue
        to_json = widget.trait_metadata(name, "to_json", widget._trait_to_json)
        values[name] = to_json(value, widget)
    return values, buffers


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no "</script>", no "<!--")."""
    return (
        json.dumps(value, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def to_html(widget: Any, title: str | None = None) -> str:
    """The snapshot page as a string (see :func:`save_html`)."""
    values, buffers = widget_state(widget)
    module = (_STATIC / "widget.js").read_text(encoding="utf-8")
    css = (_STATIC / "widget.css").read_text(encoding="utf-8")
    payload = {
        "values": values,
        "buffers": {name: base64.b64encode(data).decode("ascii") for name, data in buffers.items()},
        "module": module,
    }
    if title is None:
        kind = "Microscope" if values.get("mode") == "microscope" else "Live preview"
        title = f"{kind}: {values.get('model_name', '')}".rstrip(": ")
    return _PAGE.format(
        title=html.escape(title),
        css=css.replace("</", "<\\/"),
        state=_script_json(payload),
        boot=_BOOT,
    )


def save_html(widget: Any, path: str | pathlib.Path, title: str | None = None) -> pathlib.Path:
    """Write a self-contained offline HTML snapshot of ``widget`` to ``path``.

    Parameters
    ----------
    widget
        A :class:`~lucid_widgets.widget.LivePreview` or :class:`~lucid_widgets.widget.Microscope`.
    path
        Output file (``.html``); parent folders must exist.
    title
        Page title; default names the widget and the model.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = pathlib.Path(path)
    path.write_text(to_html(widget, title), encoding="utf-8")
    return path
