"""The Responses API's tools: every shape a client sends, onto Ollama's plain function tools.

- ``function`` tools pass as they are.
- ``namespace`` tools group functions (and custom tools); each becomes a function named
  ``<namespace>__<name>``, and its calls go back as items carrying ``name`` and ``namespace``
  apart, the way the Responses API returns a call of a function inside a namespace.
- ``custom`` tools take free-form text; each becomes a function with one string argument,
  ``input`` (a grammar, if given, is shown in the description), and its calls go back as
  ``custom_tool_call`` items.
- Hosted tools (``web_search``, ``file_search``, ``mcp``, …), which a local model cannot run, are
  left out and named in :attr:`ToolTable.dropped`, unless the server refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest
from . import tools
from .validate import invalid_type

# Tool types whose calls the client runs itself, and so can come from a local model.
CALLABLE = ("function", "custom")
# A `tool_choice` type that forces a hosted tool (anything else that is not ours is too).
OURS = {"function", "custom", "allowed_tools"}


@dataclass(frozen=True, slots=True)
class ToolRef:
    """What an Ollama function name stands for in the client's terms."""

    kind: str  # "function" or "custom"
    name: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class ToolTable:
    chat_tools: list[dict[str, Any]]  # chat completions' function tools, for Ollama
    refs: dict[str, ToolRef] = field(default_factory=dict)  # Ollama name → the client's tool
    dropped: tuple[str, ...] = ()  # hosted tool types left out, in order of first appearance

    def ref(self, name: str) -> ToolRef:
        """The client's tool behind a name the model called (a namespaced function also by its
        bare name, when that is unambiguous)."""
        return (
            self.refs.get(name)
            or self.refs.get(self.resolve(name) or "")
            or ToolRef("function", name)
        )

    def resolve(self, name: Any, namespace: Any = None) -> str | None:
        """The Ollama name of the client's tool ``name`` (in ``namespace``), if there is one."""
        if not isinstance(name, str):
            return None
        if isinstance(namespace, str) and namespace:
            return flat_name(namespace, name)
        if name in {t["function"]["name"] for t in self.chat_tools}:
            return name  # a top-level tool, or a namespaced one by its flat name
        inside = [flat for flat, ref in self.refs.items() if ref.namespace and ref.name == name]
        return inside[0] if len(inside) == 1 else None


def flat_name(namespace: str, name: str) -> str:
    """A function inside a namespace, as one name (the form Codex itself falls back to)."""
    return f"{namespace.rstrip('_')}__{name.lstrip('_')}"


def build(value: Any, *, refuse_hosted: bool = False) -> ToolTable:
    """Responses ``tools`` → chat function tools, what each stands for, and what was dropped."""
    if value is None:
        return ToolTable(chat_tools=[])
    if not isinstance(value, list):
        raise invalid_type("tools", "an array", value)
    chat_tools: list[dict[str, Any]] = []
    refs: dict[str, ToolRef] = {}
    dropped: list[str] = []

    def add(tool: Any, where: str, namespace: str | None) -> None:
        if not isinstance(tool, dict):
            raise invalid_type(where, "an object", tool)
        kind = tool.get("type", "function")
        if kind == "namespace" and namespace is None:
            ns = _string(tool, "name", where, required=True)
            inner = tool.get("tools")
            if not isinstance(inner, list):
                raise invalid_type(f"{where}.tools", "an array", inner)
            for j, member in enumerate(inner):
                add(member, f"{where}.tools[{j}]", ns)
            return
        if kind not in CALLABLE:
            if refuse_hosted:
                raise InvalidRequest(
                    f"Unsupported tool type {kind!r} in '{where}.type': a local model can call "
                    "only 'function', 'custom' and 'namespace' tools (this server was started "
                    "with --refuse-hosted-tools; without it, such tools are left out).",
                    param=f"{where}.type",
                    code="unsupported_value",
                )
            label = kind if isinstance(kind, str) else repr(kind)
            if label not in dropped:
                dropped.append(label)
            return
        name = _string(tool, "name", where, required=True)
        description = _string(tool, "description", where) or ""
        if kind == "function":
            parameters = tool.get("parameters")
            if parameters is not None and not isinstance(parameters, dict):
                raise invalid_type(f"{where}.parameters", "an object", parameters)
        else:
            description = tools.custom_description(description, tool.get("format"), where)
            parameters = tools.CUSTOM_PARAMETERS
        ollama_name = name if namespace is None else flat_name(namespace, name)
        fn: dict[str, Any] = {"name": ollama_name}
        if description:
            fn["description"] = description
        if parameters is not None:
            fn["parameters"] = parameters
        chat_tools.append({"type": "function", "function": fn})
        if kind == "custom" or namespace is not None:
            refs[ollama_name] = ToolRef(kind, name, namespace)

    for i, tool in enumerate(value):
        add(tool, f"tools[{i}]", None)
    return ToolTable(chat_tools=chat_tools, refs=refs, dropped=tuple(dropped))


def _string(tool: dict[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = tool.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        if value is None:
            raise InvalidRequest(
                f"Missing required parameter: '{where}.{key}'.",
                param=f"{where}.{key}",
                code="missing_required_parameter",
            )
        raise invalid_type(f"{where}.{key}", "a non-empty string", value)
    return value


def choice(value: Any, table: ToolTable) -> Any:
    """Responses ``tool_choice`` → chat's; forcing a hosted tool is a 400."""
    if not isinstance(value, dict):
        return value
    kind = value.get("type")
    if kind in ("function", "custom"):
        name = table.resolve(value.get("name"), value.get("namespace"))
        return {"type": "function", "function": {"name": name or value.get("name")}}
    if kind == "allowed_tools":
        allowed = []
        for tool in value.get("tools") or []:
            if isinstance(tool, dict) and tool.get("type", "function") in CALLABLE:
                name = table.resolve(tool.get("name"), tool.get("namespace"))
                allowed.append({"type": "function", "function": {"name": name}})
        return {
            "type": "allowed_tools",
            "allowed_tools": {"mode": value.get("mode"), "tools": allowed},
        }
    if isinstance(kind, str) and kind not in OURS:
        raise InvalidRequest(
            f"'tool_choice' forces the hosted tool {kind!r}, which a local model cannot run.",
            param="tool_choice",
            code="unsupported_value",
        )
    return value


# --------------------------------------------------------------------------------------------
# Input items that carry calls and their outputs


def history_call(item: dict[str, Any], table: ToolTable | None = None) -> dict[str, Any]:
    """A ``function_call`` or ``custom_tool_call`` input item → a chat tool call, named as the
    model knows the tool (a namespaced one also when the item left its namespace out)."""
    name = item.get("name")
    namespace = item.get("namespace")
    if isinstance(name, str) and isinstance(namespace, str) and namespace:
        name = flat_name(namespace, name)
    elif table is not None:
        name = table.resolve(name) or name
    if item.get("type") == "custom_tool_call":
        tool_input = item.get("input")
        arguments: Any = {"input": tool_input if isinstance(tool_input, str) else ""}
    else:
        arguments = item.get("arguments")
    return {
        "id": item.get("call_id"),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
