"""Fixtures for the end-to-end tests: one JupyterLab server and one Chromium per session.

Every test leaves a screenshot (and the browser console log) in ``test-artifacts/``; a failing
test's files end in ``-failed``.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also under --import-mode=importlib

from e2e_harness import LabNotebook, browser_unavailable, chromium_browser, new_page, on_ci
from e2e_server import JupyterLabServer

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "examples"
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"

_E2E_DIR = Path(__file__).resolve().parent
# Pages alive across tests (module-scoped fixtures); the autouse fixture screenshots them.
_SHARED_PAGES: list[Any] = []


_BROWSER_FIXTURES = {"browser", "lab_server", "open_notebook", "shared_notebook"}
_CANNOT_RUN_ON_CI = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test here that needs the browser ``e2e``; when it cannot run, skip it locally
    and fail it under ``CI=true`` (a green CI run means the browser tests ran)."""
    for item in items:
        in_here = _E2E_DIR in Path(str(item.path)).resolve().parents
        if not in_here or not _BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
            continue
        item.add_marker(pytest.mark.e2e)
        needs = [module for marker in item.iter_markers("requires") for module in marker.args]
        reason = browser_unavailable(needs)
        if reason and on_ci():
            item.stash[_CANNOT_RUN_ON_CI] = reason
        elif reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    reason = item.stash.get(_CANNOT_RUN_ON_CI, None)
    if reason:
        pytest.fail(f"CI=true but this browser test cannot run: {reason}", pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    setattr(item, f"_e2e_report_{report.when}", report)
    return report


def _failed(node: pytest.Item) -> bool:
    return any(
        getattr(getattr(node, f"_e2e_report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


def _artifact_stem(node: pytest.Item, suffix: str = "") -> str:
    name = f"{Path(str(node.path)).stem}__{node.name}{suffix}"
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name)


def save_screenshot(page: Any, node: pytest.Item, suffix: str = "") -> Path | None:
    """Screenshot ``page`` into ``test-artifacts/`` and write its console log beside it."""
    if page.is_closed():
        return None
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    stem = _artifact_stem(node, suffix + ("-failed" if _failed(node) else ""))
    path = ARTIFACTS_DIR / f"{stem}.png"
    focus = getattr(page, "_e2e_focus", None)  # a selector to bring into view first
    try:
        if focus and page.locator(focus).count():
            page.locator(focus).first.scroll_into_view_if_needed(timeout=10_000)
            page.locator(focus).first.screenshot(
                path=str(path.with_suffix(".widget.png")), timeout=30_000
            )
        page.screenshot(path=str(path), timeout=30_000)
    except Exception as error:  # a screenshot must never hide the test's own result
        path.with_suffix(".screenshot-error.txt").write_text(repr(error))
        return None
    console = getattr(page, "_e2e_console", None)
    if console:
        path.with_suffix(".console.txt").write_text("\n".join(console))
    return path


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLabServer]:
    """A JupyterLab server whose root holds copies of ``examples/*.ipynb``."""
    root = tmp_path_factory.mktemp("lab-root")
    for notebook in sorted(EXAMPLES_DIR.glob("*.ipynb")):
        shutil.copy(notebook, root / notebook.name)
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    server = JupyterLabServer(
        root_dir=root,
        log_path=ARTIFACTS_DIR / "jupyterlab.log",
        extra_env={"PYTHONPATH": str(REPO_ROOT)},
    )
    server.log_path.unlink(missing_ok=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def widget_bundle() -> Path:
    """The built front end; a clear failure (not a kernel traceback) when it was not built."""
    bundle = REPO_ROOT / "lucid_widgets" / "static" / "widget.js"
    if not bundle.is_file():
        pytest.fail(f"{bundle} is missing: build it with `npm ci && npm run build` first")
    return bundle


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """The system Chromium driven by Playwright."""
    with chromium_browser() as launched:
        yield launched


@pytest.fixture(autouse=True)
def _screenshot_shared_pages(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for index, page in enumerate(list(_SHARED_PAGES)):
        save_screenshot(page, request.node, "" if index == 0 else f"-{index}")


@pytest.fixture
def open_notebook(
    browser: Any, lab_server: JupyterLabServer, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], LabNotebook]]:
    """Factory: ``open_notebook("name.ipynb")`` opens it in a new page for this test only."""
    opened: list[LabNotebook] = []

    def _open(relative_path: str) -> LabNotebook:
        lab = LabNotebook(new_page(browser), lab_server)
        opened.append(lab)
        return lab.open(relative_path)

    yield _open
    for index, lab in enumerate(opened):
        save_screenshot(lab.page, request.node, "" if index == 0 else f"-{index}")
        _shutdown_and_close(lab)


def _shutdown_and_close(lab: LabNotebook) -> None:
    # The server's teardown shuts down whatever kernels remain if this fails.
    with contextlib.suppress(Exception):
        lab.page.evaluate(
            """() => { const w = window.jupyterapp.shell.currentWidget;
                       return w && w.sessionContext ? w.sessionContext.shutdown() : null; }"""
        )
    lab.page.context.close()


@pytest.fixture(scope="module")
def shared_notebook(
    browser: Any, lab_server: JupyterLabServer
) -> Iterator[Callable[[str], LabNotebook]]:
    """Factory like ``open_notebook``, but the page lives for the whole test module."""
    opened: list[LabNotebook] = []

    def _open(relative_path: str) -> LabNotebook:
        lab = LabNotebook(new_page(browser), lab_server)
        opened.append(lab)
        _SHARED_PAGES.append(lab.page)
        return lab.open(relative_path)

    yield _open
    for lab in opened:
        _SHARED_PAGES.remove(lab.page)
        _shutdown_and_close(lab)


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Any, str], Path | None]:
    """``screenshot(page, "-step")`` saves an extra screenshot named after the test."""
    return lambda page, suffix="": save_screenshot(page, request.node, suffix)
