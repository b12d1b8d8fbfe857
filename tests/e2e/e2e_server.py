"""The JupyterLab server of the end-to-end tests, and helpers that write notebooks."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

# JupyterLab settings that keep pop-ups (news, update checks) out of the screenshots.
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False,
        "fetchNews": "false",
        "doNotDisturbMode": True,
    },
}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first found, via /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces or parentheses: split after the last ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _kill(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


@dataclass
class JupyterLabServer:
    """A ``jupyter lab`` process serving ``root_dir`` on 127.0.0.1 without a token.

    Parameters
    ----------
    root_dir
        Folder the server serves (notebooks are opened relative to it).
    log_path
        File that receives the server's stdout and stderr.
    extra_env
        Environment variables added for the server and its kernels.
    """

    root_dir: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None
    _config_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 3, timeout: float = 90.0) -> None:
        """Start the server, retrying on another port when it does not answer in time."""
        errors = []
        for _attempt in range(attempts):
            self.port = free_port()
            self._launch()
            if self._wait_ready(timeout):
                return
            errors.append(f"port {self.port}: no answer in {timeout:.0f} s")
            self.stop()
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        raise RuntimeError(f"JupyterLab did not start ({'; '.join(errors)}). Log tail:\n{tail}")

    def _launch(self) -> None:
        self._config_dir = Path(tempfile.mkdtemp(prefix="lw-e2e-jupyter-"))
        settings_dir = self._config_dir / "lab-settings"
        for name, values in _LAB_SETTINGS.items():
            path = settings_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ)
        env.pop("ANYWIDGET_HMR", None)
        env.update(
            {
                "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
                "JUPYTERLAB_WORKSPACES_DIR": str(self._config_dir / "workspaces"),
                "JUPYTER_RUNTIME_DIR": str(self._config_dir / "runtime"),
                "IPYTHONDIR": str(self._config_dir / "ipython"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        command = self._command()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=self.root_dir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    app = "lab"

    def _app_flags(self) -> list[str]:
        """Flags of the front end itself (subclasses start another Jupyter front end)."""
        return ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url="]

    def _command(self) -> list[str]:
        """The server's command line: no token, no password, no xsrf, this port only."""
        return [
            sys.executable,
            "-m",
            "jupyter",
            self.app,
            "--no-browser",
            f"--port={self.port}",
            "--port-retries=0",
            "--ServerApp.ip=127.0.0.1",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            "--ServerApp.disable_check_xsrf=True",
            "--allow-root",
            *self._app_flags(),
            f"--ServerApp.root_dir={self.root_dir}",
        ]

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/api/status", timeout=5) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        return False

    def api(self, method: str, path: str) -> Any:
        """Call the server's REST API and return the decoded JSON (or None)."""
        request = urllib.request.Request(f"{self.url}{path}", method=method)
        with urllib.request.urlopen(request, timeout=20) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Ask the server to shut down every kernel it runs."""
        with contextlib.suppress(Exception):
            for kernel in self.api("GET", "/api/kernels"):
                with contextlib.suppress(Exception):
                    self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def stop(self) -> None:
        """Stop the server and every process it started (kernels run in their own sessions)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.shutdown_kernels()
            descendants = _descendants(self.process.pid)
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            _kill(descendants, signal.SIGKILL)
            self.process = None
        if self._config_dir is not None:
            shutil.rmtree(self._config_dir, ignore_errors=True)
            self._config_dir = None


class NotebookServer(JupyterLabServer):
    """A Jupyter Notebook 7 (``jupyter notebook``) server, with the same flags as the lab one.

    Notebooks open at ``{url}/notebooks/<path>``; ``window.jupyterapp`` is exposed as in the lab.
    """

    app = "notebook"

    def _app_flags(self) -> list[str]:
        return ["--JupyterNotebookApp.expose_app_in_browser=True"]


# ----------------------------------------------------------------------------- notebooks


def write_notebook(path: Path, cells: list[str | tuple[str, str]]) -> Path:
    """Write a Python 3 notebook; a cell is code source, or ``("markdown", source)``."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    for cell in cells:
        if isinstance(cell, tuple):
            kind, source = cell
            assert kind == "markdown", kind
            notebook.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            notebook.cells.append(nbformat.v4.new_code_cell(cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def set_parameters(path: Path, **values: Any) -> None:
    """Rewrite ``NAME = ...`` lines of the notebook's parameters cell.

    That is the code cell tagged ``parameters`` (as papermill does), else the first code cell.

    Raises
    ------
    KeyError
        When a name is not assigned in that cell (the example changed; update the test).
    """
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    cell = (tagged or code)[0]
    source = cell.source
    for name, value in values.items():
        pattern = re.compile(rf"^{re.escape(name)}\s*=.*$", re.MULTILINE)
        if not pattern.search(source):
            raise KeyError(f"{name!r} is not assigned in the parameters cell of {path.name}")
        source = pattern.sub(f"{name} = {value!r}", source, count=1)
    cell.source = source
    nbformat.write(notebook, path)


def find_cell(path: Path, needle: str) -> int:
    """Index of the first cell whose source contains ``needle``."""
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if needle in cell.source:
            return index
    raise KeyError(f"no cell of {path.name} contains {needle!r}")
