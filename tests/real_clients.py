"""Real client programs for the integration tests: installed once from npm, run in a sandbox.

Each program is installed, at a pinned version, into a cache directory shared between runs
(``$OAI2OLLAMA_TEST_CACHE``, else ``~/.cache/oai2ollama-tests``); a file lock keeps concurrent
runs from installing it twice, and the install lands in a temporary directory that is renamed
into place only when complete. With ``CI=true`` a failed install fails the test; elsewhere the
test is skipped with the reason.

A client runs in a process group of its own (its launcher may leave a native child behind) with
a temporary ``HOME``, no inherited environment, a timeout, and every outbound connection that is
not to loopback sent to a local proxy that refuses it and records what was asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .fake_ollama import LoopThread

# Pinned versions: what the integration tests were written against.
CODEX = ("@openai/codex", "0.169.0", "codex")
CONTINUE = ("@continuedev/cli", "1.5.47", "cn")

INSTALL_TIMEOUT = 600
CLIENT_TIMEOUT = 120


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def cache_dir() -> Path:
    configured = os.environ.get("OAI2OLLAMA_TEST_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "oai2ollama-tests"


def unavailable(reason: str) -> None:
    """In CI a missing client is a failure; elsewhere the test is skipped, saying why."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def npm_client(package: str, version: str, command: str) -> Path:
    """The path of ``command`` from ``package@version``, installed into the cache if needed."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        unavailable("node and npm are needed to install the real clients")
    assert npm is not None
    root = cache_dir()
    name = package.strip("@").replace("/", "-")
    target = root / f"{name}-{version}"
    binary = target / "node_modules" / ".bin" / command
    if binary.exists():
        return binary
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        shutil.rmtree(target, ignore_errors=True)  # an incomplete copy from an older layout
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            done = subprocess.run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--no-save",
                    "--prefix",
                    str(staging),
                    f"{package}@{version}",
                ],
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                env={**os.environ, "npm_config_update_notifier": "false"},
            )
            if done.returncode != 0:
                unavailable(f"npm install {package}@{version} failed: {done.stderr[-2000:]}")
            staging.chmod(0o755)  # mkdtemp made it private; the cache is shared
            os.replace(staging, target)
        except subprocess.TimeoutExpired:
            unavailable(f"npm install {package}@{version} took over {INSTALL_TIMEOUT}s")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not binary.exists():
        unavailable(f"{package}@{version} did not install a '{command}' command")
    return binary


@dataclass
class Refusals:
    """A local HTTP proxy that refuses every request and remembers what was asked for."""

    url: str = ""
    asked: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        out = {}
        for name in ("http_proxy", "https_proxy", "all_proxy"):
            out[name] = out[name.upper()] = self.url
        out["no_proxy"] = out["NO_PROXY"] = "127.0.0.1,localhost,::1"
        return out


@contextlib.contextmanager
def refusing_proxy(loop_thread: LoopThread) -> Iterator[Refusals]:
    refusals = Refusals()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            refusals.asked.append(line.decode(errors="replace").strip())
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def open_server() -> asyncio.Server:
        return await asyncio.start_server(handle, "127.0.0.1", 0)

    server = loop_thread.run(open_server())
    refusals.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield refusals
    finally:

        async def close() -> None:
            server.close()

        loop_thread.run(close())


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


def run_client(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float = CLIENT_TIMEOUT,
) -> Finished:
    """Run a client to completion in its own process group, and kill the whole group after."""
    proc = subprocess.Popen(
        [str(a) for a in argv],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        pytest.fail(
            f"{argv[0]} did not finish within {timeout}s\nstdout: {out.decode()[-3000:]}\n"
            f"stderr: {err.decode()[-3000:]}"
        )
    finally:
        _kill_group(proc.pid)
    return Finished(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def base_env(home: Path, refusals: Refusals) -> dict[str, str]:
    """A minimal environment: the system PATH, a temporary home, outbound traffic refused."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        **refusals.env(),
    }
