"""The malloc settings: applied once on Linux/glibc, skipped when the user opts out."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import lucid_widgets.optvis.fast.cpu_allocator as allocator
print(allocator.tune_cpu_allocator(), allocator.tune_cpu_allocator())
"""


def _run(env_value: str | None) -> str:
    import os

    env = dict(os.environ)
    env.pop("LUCID_WIDGETS_TUNE_MALLOC", None)
    if env_value is not None:
        env["LUCID_WIDGETS_TUNE_MALLOC"] = env_value
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_tuned_once_on_linux_and_skipped_when_opted_out():
    expected = "True True" if sys.platform.startswith("linux") else "False False"
    assert _run(None) == expected
    assert _run("0") == "False False"
