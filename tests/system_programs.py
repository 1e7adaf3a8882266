"""Programs from Debian's packages that some tests run for real (redis-server, nginx,
systemd-analyze): found on the machine, or installed once with apt-get when the tests run as
root, so that the README's test command needs no step of its own. Without them a test skips,
saying why, except in CI (``CI=true``), where it fails."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


def find(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SBIN)


def need(name: str, package: str) -> str:
    """The path of ``name``, installing Debian's ``package`` first if it is missing."""
    found = find(name)
    if found is None and _can_install():
        _install(package)
        found = find(name)
    if found is None:
        reason = f"{name} is not installed (Debian: apt-get install -y {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _can_install() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def _install(package: str) -> None:
    """One install at a time across test processes; an old package list is refreshed once."""
    lock = Path(tempfile.gettempdir()) / "oai2ollama-tests-apt.lock"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        command = ["apt-get", "install", "-y", "--no-install-recommends", package]
        for attempt in range(2):
            done = subprocess.run(command, env=env, capture_output=True, timeout=600, check=False)
            if done.returncode == 0 or attempt:
                return
            subprocess.run(
                ["apt-get", "update"], env=env, capture_output=True, timeout=600, check=False
            )
