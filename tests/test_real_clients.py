"""Real coding agents, unchanged, through one whole turn against the server.

Each test installs a pinned client from npm (once, into a cache; see ``real_clients``), points it
at a server in front of the test Ollama, and scripts two model answers: a tool call, then a
streamed final answer. The client must really run the tool (a shell command that writes a file),
send its output back, and print the final answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import ShimFactory
from .fake_ollama import FakeOllama, LoopThread, Reply
from .real_clients import (
    CODEX,
    CONTINUE,
    base_env,
    npm_client,
    refusing_proxy,
    run_client,
)

GUARD = Path(__file__).with_name("offline_guard.cjs")
MARKER = "tool-ran-7f3a"
COMMAND = f"echo written > out.txt && echo {MARKER}"
THINKING = "The user wants a file; I will run a shell command."
FINAL = "I wrote out.txt for you."

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="session")
def codex() -> Path:
    return npm_client(*CODEX)


@pytest.fixture(scope="session")
def continue_cli() -> Path:
    return npm_client(*CONTINUE)


def chat_bodies(ollama: FakeOllama) -> list[dict[str, Any]]:
    return [r.body for r in ollama.requests if r.path == "/api/chat" and r.body]


def check_round_trip(ollama: FakeOllama, tool: str, argument: str, work: Path) -> None:
    """What reached Ollama: two streamed requests, the second carrying the call and its
    output; and the file the command wrote."""
    bodies = chat_bodies(ollama)
    assert len(bodies) == 2, [b.get("messages", [])[-1:] for b in bodies]
    assert all(b["stream"] is True for b in bodies)
    assert tool in [t["function"]["name"] for t in bodies[0]["tools"]]
    messages = bodies[1]["messages"]
    calls = [m for m in messages if m["role"] == "assistant" and m.get("tool_calls")]
    assert len(calls) == 1
    (call,) = calls[0]["tool_calls"]
    assert call["function"]["name"] == tool
    assert call["function"]["arguments"][argument] == COMMAND
    assert call["id"] == "call_turn1"  # the id the model gave, kept by server and client
    results = [m for m in messages if m["role"] == "tool"]
    assert len(results) == 1
    assert results[0]["tool_call_id"] == call["id"]
    assert results[0]["tool_name"] == tool
    assert MARKER in results[0]["content"]
    assert messages.index(results[0]) == messages.index(calls[0]) + 1
    assert (work / "out.txt").read_text() == "written\n"


def script_turn(ollama: FakeOllama, tool: str, argument: str, thinking: str = "") -> None:
    ollama.queue(
        Reply(
            content="",
            thinking=thinking,
            tool_calls=[
                {"id": "call_turn1", "function": {"name": tool, "arguments": {argument: COMMAND}}}
            ],
        ),
        Reply(content=FINAL, chunk_delay=0.01),
    )


def test_codex_completes_a_turn_with_a_shell_call(
    codex: Path,
    ollama: FakeOllama,
    make_shim: ShimFactory,
    loop_thread: LoopThread,
    tmp_path: Path,
) -> None:
    """``codex exec`` with its default configuration apart from the model provider; the
    sandbox lets it write in its working directory, as ``codex exec --sandbox workspace-write``
    is used to let it edit files."""
    base_url = make_shim()
    home, codex_home, work = tmp_path / "home", tmp_path / "codex", tmp_path / "work"
    for d in (home, codex_home, work):
        d.mkdir()
    (codex_home / "config.toml").write_text(
        'model = "llama3.2"\n'
        'model_provider = "local"\n\n'
        "[model_providers.local]\n"
        'name = "oai2ollama"\n'
        f'base_url = "{base_url}"\n'
        'wire_api = "responses"\n'
    )
    script_turn(ollama, "exec_command", "cmd", THINKING)
    with refusing_proxy(loop_thread) as refusals:
        env = {
            **base_env(home, refusals),
            "CODEX_HOME": str(codex_home),
            "NODE_OPTIONS": f"--require={GUARD}",
            "OAI2OLLAMA_TEST_REFUSED_LOG": str(tmp_path / "refused.log"),
        }
        done = run_client(
            [
                codex,
                "exec",
                "--json",
                "--skip-git-repo-check",
                "--sandbox",
                "workspace-write",
                "Write a file",
            ],
            cwd=work,
            env=env,
        )
    report = f"exit {done.returncode}\nstdout: {done.stdout[-4000:]}\nstderr: {done.stderr[-4000:]}"
    assert done.returncode == 0, report
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    kinds = [e["type"] for e in events]
    assert "turn.completed" in kinds, report
    assert "turn.failed" not in kinds, report
    assert "error" not in kinds, report
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    reasoning = [i for i in items if i["type"] == "reasoning"]
    assert reasoning, report
    assert THINKING in reasoning[0]["text"]
    commands = [i for i in items if i["type"] == "command_execution"]
    assert len(commands) == 1, report
    assert COMMAND in commands[0]["command"]
    assert commands[0]["exit_code"] == 0
    assert MARKER in commands[0]["aggregated_output"]
    answers = [i["text"] for i in items if i["type"] == "agent_message"]
    assert answers == [FINAL], report
    check_round_trip(ollama, "exec_command", "cmd", work)
    # The default tools were offered: the sub-agent namespace's functions reached the model.
    names = [t["function"]["name"] for t in chat_bodies(ollama)[0]["tools"]]
    assert any(n.startswith("multi_agent") and n.endswith("spawn_agent") for n in names), names


def test_continue_completes_a_turn_with_a_bash_call(
    continue_cli: Path,
    ollama: FakeOllama,
    make_shim: ShimFactory,
    loop_thread: LoopThread,
    tmp_path: Path,
) -> None:
    """``cn -p`` (headless) with the OpenAI provider and ``--auto`` so that tools run without
    asking."""
    base_url = make_shim()
    home, work = tmp_path / "home", tmp_path / "work"
    for d in (home, work):
        d.mkdir()
    # No update check or self-update, whatever the network.
    state = home / ".continue" / "index"
    state.mkdir(parents=True)
    (state / "globalContext.json").write_text('{"autoUpdateCli": false}')
    config = tmp_path / "config.yaml"
    config.write_text(
        "name: oai2ollama\n"
        "version: 1.0.0\n"
        "schema: v1\n"
        "models:\n"
        "  - name: Local\n"
        "    provider: openai\n"
        "    model: llama3.2\n"
        f"    apiBase: {base_url}\n"
        "    apiKey: local\n"
        "    roles: [chat]\n"
    )
    script_turn(ollama, "Bash", "command")
    with refusing_proxy(loop_thread) as refusals:
        env = {
            **base_env(home, refusals),
            "NODE_OPTIONS": f"--require={GUARD}",
            "OAI2OLLAMA_TEST_REFUSED_LOG": str(tmp_path / "refused.log"),
            "CONTINUE_CLI_ENABLE_TELEMETRY": "0",
            "CONTINUE_METRICS_ENABLED": "0",
            "CONTINUE_API_BASE": refusals.url + "/",
        }
        done = run_client(
            [continue_cli, "-p", "--auto", "--config", config, "Write a file"], cwd=work, env=env
        )
    report = f"exit {done.returncode}\nstdout: {done.stdout[-4000:]}\nstderr: {done.stderr[-4000:]}"
    assert done.returncode == 0, report
    assert done.stdout.strip() == FINAL, report
    check_round_trip(ollama, "Bash", "command", work)
    first = chat_bodies(ollama)[0]
    assert first["messages"][-1] == {"role": "user", "content": "Write a file"}
