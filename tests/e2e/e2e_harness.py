"""Browser side of the end-to-end tests: Chromium, JupyterLab notebooks, offline pages.

Nothing here imports lucid_widgets; the tests drive it through notebooks run by a real kernel.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from e2e_server import JupyterLabServer

# the system Chromium; LUCID_WIDGETS_CHROMIUM points elsewhere (test_ci_policy.py: a missing one)
CHROMIUM_PATH = Path(os.environ.get("LUCID_WIDGETS_CHROMIUM", "/usr/bin/chromium"))
BROWSER_MODULES = ("playwright", "jupyterlab", "anywidget")


def on_ci() -> bool:
    """``CI=true``, as CI runners set it: browser tests that cannot run fail, not skip."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def browser_unavailable(modules: Iterable[str] = ()) -> str | None:
    """Why browser tests cannot run here (Chromium or a Python module missing), or None."""
    if not CHROMIUM_PATH.exists():
        return f"{CHROMIUM_PATH} is missing (install it with `apt-get install -y chromium`)"
    for module in (*BROWSER_MODULES, *modules):
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:  # a dotted name whose parent package is missing
            found = None
        if found is None:
            return f"the Python module {module!r} is not installed (`pip install -e '.[test]'`)"
    return None


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}

_KERNEL_IDLE_JS = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  const ctx = panel && panel.sessionContext;
  const kernel = ctx && ctx.session && ctx.session.kernel;
  return !!(ctx && ctx.isReady && kernel && kernel.status === 'idle'
            && kernel.connectionStatus === 'connected');
}"""

_START_CELL_JS = """([index, key]) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  const notebook = panel.content;
  window.__lwRuns = window.__lwRuns || {};
  const run = { done: false, ok: null, error: null };
  window.__lwRuns[key] = run;
  notebook.activeCellIndex = index;
  notebook.deselectAll();
  const command = index < 0 ? 'notebook:run-all-cells' : 'notebook:run-cell';
  Promise.resolve(app.commands.execute(command)).then(
    (ok) => { run.ok = ok; run.done = true; },
    (err) => { run.error = String(err); run.done = true; });
  return notebook.widgets.length;
}"""

_OUTPUTS_JS = """(index) => {
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
  return { outputs: cell.model.outputs ? cell.model.outputs.toJSON() : [],
           count: cell.model.executionCount ?? null };
}"""


class CellError(AssertionError):
    """A notebook cell raised; the message holds the traceback text."""


def output_text(outputs: list[dict]) -> str:
    """Readable text of a cell's outputs (stream, plain-text results, error tracebacks)."""
    parts = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(output.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            parts.append(str(data.get("text/plain", "")))
        elif kind == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}")
            traceback = "\n".join(output.get("traceback", []))
            parts.append(re.sub(r"\x1b\[[0-9;]*m", "", traceback))
    return "\n".join(parts)


class LabNotebook:
    """A notebook opened in JupyterLab in a Playwright page.

    Parameters
    ----------
    page
        A Playwright ``Page``.
    server
        The running server.
    """

    def __init__(self, page: Any, server: JupyterLabServer) -> None:
        self.page = page
        self.server = server
        self._runs = 0

    def open(self, relative_path: str, timeout_ms: int = 120_000, attempts: int = 2) -> LabNotebook:
        """Open the notebook (fresh workspace) and wait until its kernel is idle.

        A first JupyterLab load on a busy machine occasionally stalls: it is retried.
        """
        from playwright.sync_api import Error as PlaywrightError

        for attempt in range(attempts):
            try:
                self._open_once(relative_path, timeout_ms)
                return self
            except PlaywrightError:
                if attempt == attempts - 1:
                    raise
        return self

    def _open_once(self, relative_path: str, timeout_ms: int) -> None:
        self.page.goto(
            f"{self.server.url}/lab/tree/{relative_path}?reset",
            wait_until="domcontentloaded",
            timeout=timeout_ms,
        )
        self.page.wait_for_function(
            """(name) => { const app = window.jupyterapp; const w = app && app.shell.currentWidget;
                 return !!(w && w.context && w.context.path.endsWith(name)
                           && w.content && w.content.widgets.length > 0); }""",
            arg=relative_path.rsplit("/", 1)[-1],
            timeout=timeout_ms,
        )
        # More room for the notebook (and the widget) in screenshots.
        self.page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
        self.wait_kernel_idle(timeout_ms)

    def wait_kernel_idle(self, timeout_ms: int = 180_000) -> None:
        """Wait until the kernel is connected and idle."""
        self.page.wait_for_function(_KERNEL_IDLE_JS, timeout=timeout_ms, polling=250)

    def start_cell(self, index: int) -> str:
        """Start running cell ``index`` (``-1``: all cells) without waiting; returns a run key."""
        self._runs += 1
        key = f"run{self._runs}"
        count = self.page.evaluate(_START_CELL_JS, [index, key])
        if index >= count:
            raise IndexError(f"cell {index} does not exist; the notebook has {count} cells")
        return key

    def wait_run(self, key: str, timeout_ms: int = 240_000) -> None:
        """Wait until a run started by :meth:`start_cell` finished."""
        self.page.wait_for_function(
            "(key) => window.__lwRuns[key].done", arg=key, timeout=timeout_ms, polling=200
        )
        result = self.page.evaluate("(key) => window.__lwRuns[key]", key)
        if result["error"]:
            raise CellError(f"running the cell failed in the browser: {result['error']}")

    def run_cell(self, index: int, timeout_ms: int = 240_000, check: bool = True) -> str:
        """Run cell ``index``, wait for it and return its output text.

        Raises
        ------
        CellError
            When ``check`` and the cell produced an error output.
        """
        self.wait_run(self.start_cell(index), timeout_ms)
        return self.output_text(index, check=check)

    def run_all(self, timeout_ms: int = 300_000) -> None:
        """Run every cell and wait; raise :class:`CellError` naming the first failing cell."""
        self.wait_run(self.start_cell(-1), timeout_ms)
        for index in range(self.cell_count()):
            self.output_text(index, check=True)

    def append_cell(self, source: str) -> int:
        """Add a code cell at the end of the notebook (not saved to disk); returns its index."""
        return int(
            self.page.evaluate(
                """(source) => {
                  const model = window.jupyterapp.shell.currentWidget.content.model;
                  model.sharedModel.insertCell(model.cells.length,
                                               { cell_type: 'code', source });
                  return model.cells.length - 1;
                }""",
                source,
            )
        )

    def run_code(self, source: str, timeout_ms: int = 240_000, check: bool = True) -> str:
        """Append a code cell with ``source``, run it and return its output text."""
        return self.run_cell(self.append_cell(source), timeout_ms, check)

    def cell_count(self) -> int:
        return int(
            self.page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length")
        )

    def outputs(self, index: int) -> list[dict]:
        """The cell's outputs as nbformat JSON."""
        return list(self.page.evaluate(_OUTPUTS_JS, index)["outputs"])

    def execution_count(self, index: int) -> int | None:
        return self.page.evaluate(_OUTPUTS_JS, index)["count"]

    def output_text(self, index: int, check: bool = True) -> str:
        outputs = self.outputs(index)
        text = output_text(outputs)
        if check and any(output.get("output_type") == "error" for output in outputs):
            raise CellError(f"cell {index} raised:\n{text}")
        return text

    def cell(self, index: int) -> Any:
        """Locator of the cell's DOM node."""
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def output_area(self, index: int) -> Any:
        """Locator of the cell's output area."""
        return self.cell(index).locator(".jp-Cell-outputArea")


class NotebookPage(LabNotebook):
    """A notebook opened in Jupyter Notebook 7 (``/notebooks/<path>``) in a Playwright page.

    Notebook 7 is built from JupyterLab's components and exposes the same ``window.jupyterapp``
    (``shell.currentWidget`` is the notebook panel), so every :class:`LabNotebook` method works.
    """

    def _open_once(self, relative_path: str, timeout_ms: int) -> None:
        self.page.goto(
            f"{self.server.url}/notebooks/{relative_path}",
            wait_until="domcontentloaded",
            timeout=timeout_ms,
        )
        self.page.wait_for_function(
            """(name) => { const app = window.jupyterapp; const w = app && app.shell.currentWidget;
                 return !!(app && app.name === 'Jupyter Notebook' && w && w.context
                           && w.context.path.endsWith(name)
                           && w.content && w.content.widgets.length > 0); }""",
            arg=relative_path.rsplit("/", 1)[-1],
            timeout=timeout_ms,
        )
        self.wait_kernel_idle(timeout_ms)


def poll(predicate: Any, timeout: float, interval: float = 0.5, message: str = "") -> Any:
    """Call ``predicate`` until it returns something truthy; raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s: {message} (last value: {last!r})")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP from 127.0.0.1 in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def block_other_hosts(page: Any, base_url: str) -> list[str]:
    """Abort every request of ``page`` not under ``base_url``; returns the list of aborted URLs."""
    aborted: list[str] = []

    def _route(route: Any) -> None:
        url = route.request.url
        if url.startswith(base_url + "/") or url == base_url or url.startswith("data:"):
            route.continue_()
        else:
            aborted.append(url)
            route.abort()

    page.route("**/*", _route)
    return aborted


def new_page(browser: Any) -> Any:
    """A fresh browser context and page that records console errors as ``page._e2e_console``."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    page = context.new_page()
    page._e2e_console = []
    page.on(
        "console",
        lambda message: (
            page._e2e_console.append(f"[{message.type}] {message.text}")
            if message.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda error: page._e2e_console.append(f"[pageerror] {error}"))
    return page


@contextlib.contextmanager
def chromium_browser(headless: bool = True) -> Iterator[Any]:
    """Launch the system Chromium with Playwright; yields a ``Browser``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS, headless=headless
        )
        try:
            yield browser
        finally:
            browser.close()
