"""Tools: OpenAI tool definitions and ``tool_choice`` → Ollama, and tool calls back.

Ollama has no ``tool_choice``. ``auto`` and ``none`` map directly; ``required`` and a named
function are *emulated*: the tools are described in a system message and the answer is
constrained with a ``format`` JSON schema, so the model must produce the call's JSON, which the
answer side turns into ``tool_calls``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import InvalidRequest
from . import common
from .common import invalid_type, new_id


@dataclass(frozen=True, slots=True)
class ForcedCall:
    """A ``tool_choice`` that Ollama cannot express, and how to read the constrained answer."""

    name: str | None  # the one function to call, or None for "any of them" (required)
    names: frozenset[str]
    parallel: bool  # required: may answer several calls

    def parse(self, content: str) -> list[dict[str, Any]] | None:
        """The constrained JSON answer → Ollama-style tool calls; None when it is not one."""
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        if self.name is not None:
            return [{"function": {"name": self.name, "arguments": data}}]
        items = data.get("tool_calls") if self.parallel else [data]
        if not isinstance(items, list) or not items:
            return None
        calls = []
        for item in items:
            if not isinstance(item, dict) or item.get("name") not in self.names:
                return None
            arguments = item.get("arguments")
            calls.append({"function": {"name": item["name"], "arguments": arguments or {}}})
        return calls


@dataclass(frozen=True, slots=True)
class ToolPlan:
    tools: list[dict[str, Any]]  # what Ollama gets as `tools`
    forced: ForcedCall | None = None
    format: dict[str, Any] | None = None  # the constraint for a forced call
    instruction: str | None = None  # the system message describing a forced call
    single: bool = False  # parallel_tool_calls: false → keep only the first call
    legacy: bool = False  # `functions` in, so `function_call` out


def definitions(raw: Any, param: str, legacy: bool) -> list[dict[str, Any]]:
    """Validate OpenAI ``tools`` (or legacy ``functions``) → Ollama's tool list."""
    if not isinstance(raw, list):
        raise invalid_type(param, "an array", raw)
    tools = []
    for i, tool in enumerate(raw):
        where = f"{param}[{i}]"
        if not isinstance(tool, dict):
            raise invalid_type(where, "an object", tool)
        fn = tool
        if not legacy:
            kind = tool.get("type", "function")
            if kind != "function":
                raise InvalidRequest(
                    f"Unsupported tool type {kind!r} in '{where}.type': only 'function' tools "
                    "can be run by a local model.",
                    param=f"{where}.type",
                    code="unsupported_value",
                )
            fn = tool.get("function")
            where += ".function"
            if not isinstance(fn, dict):
                raise invalid_type(where, "an object", fn)
        out: dict[str, Any] = {"name": common.require_str(fn, "name", f"{where}.name")}
        description = fn.get("description")
        if description is not None:
            if not isinstance(description, str):
                raise invalid_type(f"{where}.description", "a string", description)
            out["description"] = description
        params = fn.get("parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise invalid_type(f"{where}.parameters", "an object", params)
            common.check_depth(params, f"{where}.parameters")
            out["parameters"] = params
        tools.append({"type": "function", "function": out})
    return tools


def plan(body: dict[str, Any]) -> ToolPlan:
    """``tools`` (or ``functions``), ``tool_choice`` and ``parallel_tool_calls`` → a plan."""
    legacy = body.get("tools") is None and body.get("functions") is not None
    if legacy:
        tools = definitions(body["functions"], "functions", legacy=True)
        choice, choice_param = body.get("function_call"), "function_call"
    else:
        raw = body.get("tools")
        tools = [] if raw is None else definitions(raw, "tools", legacy=False)
        choice, choice_param = body.get("tool_choice"), "tool_choice"
    parallel = common.optional_bool(body, "parallel_tool_calls")
    single = parallel is False or legacy  # legacy function calling answers one call

    mode, name = _choice(choice, choice_param, legacy)
    if mode == "allowed":
        allowed, mode = name
        tools = [t for t in tools if t["function"]["name"] in allowed]
        name = None
    if mode == "none" or not tools:
        if mode in ("required", "named"):
            raise InvalidRequest(
                f"'{choice_param}' asks for a tool call, but no tools were given.",
                param=choice_param,
                code="invalid_value",
            )
        return ToolPlan(tools=[], legacy=legacy)
    if mode == "auto":
        return ToolPlan(tools=tools, single=single, legacy=legacy)

    by_name = {t["function"]["name"]: t["function"] for t in tools}
    if mode == "named":
        if name not in by_name:
            raise InvalidRequest(
                f"'{choice_param}' names the function {name!r}, which is not among the tools.",
                param=choice_param,
                code="invalid_value",
            )
        fn = by_name[name]
        forced = ForcedCall(name=name, names=frozenset({name}), parallel=False)
        schema = _parameters(fn)
        instruction = (
            f"Call the function `{name}` now. Reply with only the JSON object of its "
            f"arguments.\n\n{_describe([fn])}"
        )
    else:
        forced = ForcedCall(name=None, names=frozenset(by_name), parallel=not single)
        one_call = {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "enum": [fn_name]},
                        "arguments": _parameters(fn),
                    },
                    "required": ["name", "arguments"],
                }
                for fn_name, fn in by_name.items()
            ]
        }
        if forced.parallel:
            schema = {
                "type": "object",
                "properties": {"tool_calls": {"type": "array", "items": one_call, "minItems": 1}},
                "required": ["tool_calls"],
            }
            shape = '{"tool_calls": [{"name": <function name>, "arguments": {...}}, ...]}'
        else:
            schema = one_call
            shape = '{"name": <function name>, "arguments": {...}}'
        instruction = (
            "You must call one or more of the functions below now. Reply with only JSON of the "
            f"form {shape}.\n\n{_describe(list(by_name.values()))}"
        )
    return ToolPlan(
        tools=[],
        forced=forced,
        format=schema,
        instruction=instruction,
        single=single,
        legacy=legacy,
    )


def _choice(choice: Any, param: str, legacy: bool) -> tuple[str, Any]:
    if choice is None or choice == "auto":
        return "auto", None
    if choice in ("none", "required"):
        return choice, None
    if isinstance(choice, dict):
        if legacy and isinstance(choice.get("name"), str):
            return "named", choice["name"]
        kind = choice.get("type")
        fn = choice.get("function")
        if kind == "function" and isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return "named", fn["name"]
        if kind == "allowed_tools":
            allowed = choice.get("allowed_tools")
            if isinstance(allowed, dict) and allowed.get("mode") in ("auto", "required"):
                names = {
                    t["function"]["name"]
                    for t in allowed.get("tools") or []
                    if isinstance(t, dict) and isinstance(t.get("function"), dict)
                }
                return "allowed", (names, allowed["mode"])
    raise InvalidRequest(
        f"Invalid value for '{param}': expected 'none', 'auto', 'required' or "
        "{'type': 'function', 'function': {'name': ...}}.",
        param=param,
        code="invalid_value",
    )


def _parameters(fn: dict[str, Any]) -> dict[str, Any]:
    return fn.get("parameters") or {"type": "object", "properties": {}}


def _describe(functions: list[dict[str, Any]]) -> str:
    lines = []
    for fn in functions:
        lines.append(f"- {fn['name']}: {fn.get('description') or '(no description)'}")
        lines.append(f"  parameters: {orjson.dumps(_parameters(fn)).decode()}")
    return "Functions:\n" + "\n".join(lines)


def calls_out(calls: Any, start: int = 0) -> list[dict[str, Any]]:
    """Ollama tool calls → OpenAI ones: an id on each, a type, arguments as a JSON string.

    ``index`` counts over the whole answer: Ollama's own ``function.index`` may repeat or be
    missing when calls arrive together at the end of a stream.
    """
    out: list[dict[str, Any]] = []
    if not isinstance(calls, list):
        return out
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        call_id = call.get("id")
        out.append(
            {
                "index": start + len(out),
                "id": call_id if isinstance(call_id, str) and call_id else new_id("call_"),
                "type": "function",
                "function": {"name": fn.get("name") or "", "arguments": arguments},
            }
        )
    return out
