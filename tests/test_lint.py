"""The code base stays ruff clean: lint and format are checked with the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    assert RUFF, "ruff is a test dependency: pip install -e '.[test]'"
    return subprocess.run([RUFF, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_ruff_check() -> None:
    done = ruff("check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format() -> None:
    done = ruff("format", "--check", ".")
    assert done.returncode == 0, done.stdout + done.stderr
