"""A browser test that cannot run is skipped locally and fails the run under ``CI=true``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import e2e_harness
import pytest
from e2e_harness import browser_unavailable, on_ci

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e  # part of the browser suite's tooling (runs with tests/e2e)


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("", False)])
def test_ci_is_read_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert on_ci() is expected


def test_the_reason_names_what_is_missing(monkeypatch, tmp_path):
    chromium = tmp_path / "chromium"
    chromium.touch()
    monkeypatch.setattr(e2e_harness, "CHROMIUM_PATH", chromium)
    assert browser_unavailable(["pytest"]) is None
    assert browser_unavailable(["no_such_module", "pytest"]) == (
        "the Python module 'no_such_module' is not installed (`pip install -e '.[test]'`)"
    )
    assert "'no_such_package.app' is not installed" in browser_unavailable(["no_such_package.app"])
    monkeypatch.setattr(e2e_harness, "CHROMIUM_PATH", tmp_path / "no-chromium")
    assert browser_unavailable() == (
        f"{tmp_path / 'no-chromium'} is missing (install it with `apt-get install -y chromium`)"
    )


def test_missing_chromium_fails_the_run_under_ci(tmp_path):
    env = {**os.environ, "CI": "true", "LUCID_WIDGETS_CHROMIUM": str(tmp_path / "no-chromium")}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, "--confcutdir=tests/e2e", "tests/e2e/test_harness.py"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 errors" in result.stdout
    assert "CI=true but this browser test cannot run" in result.stdout
    assert "no-chromium is missing" in result.stdout
