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
from . import validate
from .stream import new_id
from .validate import invalid_type


@dataclass(frozen=True, slots=True)
class ForcedCall:
    """A ``tool_choice`` that Ollama cannot express, and how to read the constrained answer."""

    name: str | None  # the one function to call, or None for "any of them" (required)
    names: frozenset[str]
    parallel: bool  # required: may answer several calls

    def judge(self, content: str) -> list[dict[str, Any]] | None:
        """The verdict on a whole constrained answer: Ollama-style tool calls, or None when the
        answer is text. A stream reaches the same verdict: a named call's by :func:`opening`,
        a ``required`` one's by a :class:`CallReader` fed piece by piece."""
        if self.name is None:
            reader = CallReader(self)
            events = reader.feed(content) + reader.finish()
            if not reader.verdict:
                return None
            calls: list[dict[str, Any]] = []
            for event in events:
                if event[0] == "start":
                    calls.append({"function": {"name": event[1], "arguments": ""}})
                elif event[0] == "args":
                    calls[-1]["function"]["arguments"] += event[1]
            for call in calls:
                call["function"]["arguments"] = _arguments(call["function"]["arguments"])
            return calls
        if opening(content) is not True:
            return None
        return [{"function": {"name": self.name, "arguments": _arguments(content)}}]


def _arguments(text: str) -> Any:
    """Valid JSON arguments go out re-encoded; anything else (cut by the length limit, say) as
    the model wrote it, as OpenAI does with a call that runs out of tokens."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text.strip()
    return data if isinstance(data, dict) else text.strip()


def opening(text: str) -> bool | None:
    """How the answer to a named forced call opens, which decides call or text.

    True once it opens as a JSON object does (``{``, then a key's quote or ``}``), False once it
    cannot, None while only whitespace and ``{`` have arrived. A stream holds back just those
    few characters; everything after the verdict streams as it comes.
    """
    rest = text.lstrip()
    if not rest:
        return None
    if rest[0] != "{":
        return False
    rest = rest[1:].lstrip()
    if not rest:
        return None
    return rest[0] in '"}'


# What a CallReader reports: ("start", name), ("args", fragment), ("end",).
Event = tuple[str, ...]
_SPACE = " \t\r\n"


@dataclass(slots=True)
class _Frame:
    """An open JSON object or array in the answer."""

    kind: str  # "{" or "["
    role: str  # "call" (a call's object), "calls" (the tool_calls array), "root", "other"
    expect: str  # "key", "colon", "value", "in_value", "comma"
    key: str | None = None
    empty: bool = True
    name: str | None = None  # a call's function name, once read
    bad: bool = False  # a call naming no known function: left out
    started: bool = False
    held: str = ""  # arguments that came before the name
    sent_args: bool = False


class CallReader:
    """Reads the answer to a ``required`` call as it arrives, and says what calls it holds.

    The answer is constrained to ``{"name": …, "arguments": {…}}`` (or ``{"tool_calls": [those]}``
    when several calls are allowed). The verdict is reached when the first call's name has been
    read: a known function makes the answer calls; anything else before that (not an object, an
    unknown name, an object without a name) makes it text. Only that opening is held back; each
    call's arguments then stream as they come. After a "calls" verdict the rest is read
    leniently: a call with an unknown name is left out, and if the JSON breaks, what follows goes
    to the arguments being read. :meth:`ForcedCall.judge` reads a whole answer with this same
    reader, so a stream and a whole answer always agree.
    """

    __slots__ = (
        "_capture",
        "_closed",
        "_escape",
        "_events",
        "_forced",
        "_frag",
        "_in_string",
        "_primitive",
        "_raw",
        "_stack",
        "_string",
        "_string_role",
        "verdict",
    )

    def __init__(self, forced: ForcedCall) -> None:
        self._forced = forced
        self.verdict: bool | None = None
        self._stack: list[_Frame] = []
        self._closed = False  # the outer object has ended
        self._in_string = False
        self._escape = False
        self._string = ""
        self._string_role: str | None = None  # "key", "name" or None
        self._primitive = False
        self._capture: _Frame | None = None  # the call whose arguments are being read
        self._frag = ""
        self._raw = False  # the JSON broke after the verdict
        self._events: list[Event] = []

    # ---- feeding ---------------------------------------------------------------------
    def feed(self, text: str) -> list[Event]:
        """Read more of the answer; the events it completes (none before the verdict)."""
        if self.verdict is False:
            return []
        for ch in text:
            if self._raw:
                if self._capture is not None:
                    self._frag += ch
            else:
                self._char(ch)
            if self.verdict is False:
                return []
        return self._flush()

    def finish(self) -> list[Event]:
        """The answer ended: close what is open."""
        if self.verdict is not True:
            self.verdict = False
            return []
        self._send_frag()
        for frame in reversed(self._stack):
            if frame.role == "call":
                self._call_end(frame)
        self._stack.clear()
        return self._flush()

    def _flush(self) -> list[Event]:
        if self.verdict is not True:
            return []
        self._send_frag()
        events, self._events = self._events, []
        return events

    # ---- the scanner -----------------------------------------------------------------
    def _char(self, ch: str) -> None:
        if self._in_string:
            self._string_char(ch)
            return
        if self._primitive:
            if ch not in _SPACE and ch not in ",}]":
                self._frag += ch if self._capture is not None else ""
                return
            self._primitive = False
            self._value_end()
        if ch in _SPACE:
            if self._capture is not None:
                self._frag += ch
            return
        if not self._stack:
            if self._closed or ch != "{":
                self._error()
                return
            role = "root" if self._forced.parallel else "call"
            self._stack.append(_Frame("{", role, "key"))
            return
        top = self._stack[-1]
        if top.expect == "value" and not (top.kind == "[" and ch == "]" and top.empty):
            self._value_start(top, ch)
            return
        if self._capture is not None:
            self._frag += ch
        if top.kind == "{":
            if top.expect == "key" and ch == '"':
                self._in_string, self._string, self._string_role = True, "", "key"
            elif top.expect == "colon" and ch == ":":
                top.expect = "value"
            elif top.expect == "comma" and ch == ",":
                top.expect = "key"
            elif ch == "}" and (top.expect == "comma" or (top.expect == "key" and top.empty)):
                self._pop()
            else:
                self._error()
        elif top.expect == "comma" and ch == ",":
            top.expect = "value"
        elif ch == "]":
            self._pop()
        else:
            self._error()

    def _string_char(self, ch: str) -> None:
        if self._capture is not None:
            self._frag += ch
        if self._escape:
            self._escape = False
        elif ch == "\\":
            self._escape = True
        elif ch == '"':
            self._in_string = False
            self._string_end()
            return
        if self._string_role is not None:
            self._string += ch

    def _value_start(self, top: _Frame, ch: str) -> None:
        top.empty = False
        top.expect = "in_value"
        if top.role == "call" and top.key == "arguments" and self._capture is None:
            self._capture = top
        if self._capture is not None:
            self._frag += ch
        if ch == '"':
            role = "name" if top.role == "call" and top.key == "name" else None
            self._in_string, self._string, self._string_role = True, "", role
        elif ch == "{":
            role = "call" if top.role == "calls" else "other"
            self._stack.append(_Frame("{", role, "key"))
        elif ch == "[":
            role = "calls" if top.role == "root" and top.key == "tool_calls" else "other"
            self._stack.append(_Frame("[", role, "value"))
        elif ch in ",:}]":
            self._error()
        else:
            self._primitive = True

    def _string_end(self) -> None:
        top = self._stack[-1]
        role, self._string_role = self._string_role, None
        if role == "key":
            top.key = self._string
            top.expect = "colon"
            return
        if role == "name":
            try:
                name = orjson.loads(f'"{self._string}"')
            except orjson.JSONDecodeError:
                name = None
            self._call_named(top, name)
        self._value_end()

    def _value_end(self) -> None:
        if not self._stack:
            self._closed = True
            return
        top = self._stack[-1]
        top.expect = "comma"
        if self._capture is top:
            self._send_frag()
            self._capture = None

    def _pop(self) -> None:
        frame = self._stack.pop()
        if frame.role == "call":
            self._call_end(frame)
        self._value_end()

    def _error(self) -> None:
        if self.verdict is None:
            self.verdict = False
            return
        # After the verdict: what follows goes to the arguments being read, if any.
        self._raw = True
        if self._capture is None:
            self._frag = ""

    # ---- calls -----------------------------------------------------------------------
    def _send_frag(self) -> None:
        frag, self._frag = self._frag, ""
        call = self._capture
        if not frag or call is None:
            return
        if call.name is None:
            call.held += frag
        elif not call.bad:
            call.sent_args = True
            self._events.append(("args", frag))

    def _call_named(self, call: _Frame, name: Any) -> None:
        if call.name is not None:
            return
        call.name = name if isinstance(name, str) else ""
        if call.name not in self._forced.names:
            call.bad = True
            if self.verdict is None:
                self.verdict = False
            return
        self.verdict = True
        call.started = True
        self._events.append(("start", call.name))
        if call.held:
            call.sent_args = True
            self._events.append(("args", call.held))

    def _call_end(self, call: _Frame) -> None:
        if self._capture is call:
            self._send_frag()
            self._capture = None
        if not call.started:
            if self.verdict is None:
                self.verdict = False
            return
        if not call.sent_args:
            self._events.append(("args", "{}"))
        self._events.append(("end",))


class ContentGate:
    """Where a stream's content goes while a forced call's verdict is pending, so that chat and
    the Responses API hold back the same characters and reach the same verdict.

    ``mode``: text; or for a forced call: hold (a named call's opening), read (a required call's
    JSON up to its first name), buffer (a named custom tool, whose input is a string inside the
    JSON: sent whole at the end), then call or calls, or text.
    """

    __slots__ = ("buffer", "mode", "reader")

    def __init__(self, forced: ForcedCall | None, custom: bool) -> None:
        self.buffer = ""  # what is held back until the verdict
        if forced is None:
            self.mode = "text"
        elif forced.name is None:
            self.mode = "read"
        else:
            self.mode = "buffer" if custom else "hold"
        self.reader = CallReader(forced) if forced is not None and self.mode == "read" else None

    def route(self, content: str) -> str | list[Event] | None:
        """None while held back; the reader's events once the answer is calls; else the text
        now due, to go out as ``mode`` says (``text``, or ``call``: a named call's arguments)."""
        if self.mode == "hold":
            self.buffer += content
            verdict = opening(self.buffer)
            if verdict is None:
                return None
            self.mode = "call" if verdict else "text"
            content, self.buffer = self.buffer, ""
        elif self.reader is not None and self.mode in ("read", "calls"):
            events = self.reader.feed(content)
            if self.mode == "read":
                self.buffer += content
                if self.reader.verdict is None:
                    return None
                self.mode = "calls" if self.reader.verdict else "text"
                content, self.buffer = self.buffer, ""
            if self.mode == "calls":
                return events
        if self.mode == "buffer":
            self.buffer += content
            return None
        return content


@dataclass(frozen=True, slots=True)
class ToolPlan:
    tools: list[dict[str, Any]]  # what Ollama gets as `tools`
    forced: ForcedCall | None = None
    format: dict[str, Any] | None = None  # the constraint for a forced call
    instruction: str | None = None  # the system message describing a forced call
    single: bool = False  # parallel_tool_calls: false → keep only the first call
    legacy: bool = False  # `functions` in, so `function_call` out
    custom: frozenset[str] = frozenset()  # custom tools: their calls answer `custom.input`


# A custom tool (free-form text input) is offered to Ollama as a function with one string.
CUSTOM_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "the tool's input"}},
    "required": ["input"],
}


def custom_description(description: str, fmt: Any, where: str) -> str:
    """A custom tool's description, with its input grammar spelled out for the model."""
    note = "Call it with the whole free-form input as the string argument `input`."
    if fmt is not None:
        if not isinstance(fmt, dict):
            raise invalid_type(f"{where}.format", "an object", fmt)
        grammar = fmt.get("grammar") if isinstance(fmt.get("grammar"), dict) else fmt
        if fmt.get("type") == "grammar":
            syntax, definition = grammar.get("syntax"), grammar.get("definition")
            if isinstance(definition, str) and definition:
                note += f" The input must follow this {syntax or ''} grammar:\n{definition}"
    return f"{description}\n\n{note}" if description else note


def custom_input(arguments: Any) -> str:
    """A custom tool call's input, out of the arguments the model gave its function."""
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return arguments
    if isinstance(arguments, dict):
        value = arguments.get("input")
        if isinstance(value, str):
            return value
        strings = [v for v in arguments.values() if isinstance(v, str)]
        if len(arguments) == 1 and strings:
            return strings[0]
    if isinstance(arguments, str):
        return arguments
    return orjson.dumps(arguments).decode()


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
            if kind not in ("function", "custom"):
                raise InvalidRequest(
                    f"Unsupported tool type {kind!r} in '{where}.type': only 'function' and "
                    "'custom' tools can be run by a local model.",
                    param=f"{where}.type",
                    code="unsupported_value",
                )
            fn = tool.get(kind)
            where += f".{kind}"
            if not isinstance(fn, dict):
                raise invalid_type(where, "an object", fn)
            if kind == "custom":
                tools.append(_custom(fn, where))
                continue
        out: dict[str, Any] = {"name": validate.require_str(fn, "name", f"{where}.name")}
        description = fn.get("description")
        if description is not None:
            if not isinstance(description, str):
                raise invalid_type(f"{where}.description", "a string", description)
            out["description"] = description
        params = fn.get("parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise invalid_type(f"{where}.parameters", "an object", params)
            validate.check_depth(params, f"{where}.parameters")
            out["parameters"] = params
        tools.append({"type": "function", "function": out})
    return tools


def _custom(tool: dict[str, Any], where: str) -> dict[str, Any]:
    name = validate.require_str(tool, "name", f"{where}.name")
    description = tool.get("description") or ""
    if not isinstance(description, str):
        raise invalid_type(f"{where}.description", "a string", description)
    description = custom_description(description, tool.get("format"), where)
    fn = {"name": name, "description": description, "parameters": CUSTOM_PARAMETERS}
    return {"type": "function", "function": fn}


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
    custom = frozenset(
        t["custom"]["name"] for t in body.get("tools") or [] if t.get("type") == "custom"
    )
    parallel = validate.optional_bool(body, "parallel_tool_calls")
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
        return ToolPlan(tools=tools, single=single, legacy=legacy, custom=custom)

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
        custom=custom,
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
        fn = choice.get(kind) if kind in ("function", "custom") else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return "named", fn["name"]
        if kind == "allowed_tools":
            allowed = choice.get("allowed_tools")
            if isinstance(allowed, dict) and allowed.get("mode") in ("auto", "required"):
                names = {
                    t[t.get("type", "function")].get("name")
                    for t in allowed.get("tools") or []
                    if isinstance(t, dict) and isinstance(t.get(t.get("type", "function")), dict)
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


def calls_out(
    calls: Any, start: int = 0, custom: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """Ollama tool calls → OpenAI ones: an id on each, a type, arguments as a JSON string (or,
    for a ``custom`` tool, its ``input``).

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
        call_id = call.get("id")
        head = {
            "index": start + len(out),
            "id": call_id if isinstance(call_id, str) and call_id else new_id("call_"),
        }
        name = fn.get("name") or ""
        if name in custom:
            tool_input = custom_input(arguments)
            out.append(head | {"type": "custom", "custom": {"name": name, "input": tool_input}})
            continue
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        out.append(head | {"type": "function", "function": {"name": name, "arguments": arguments}})
    return out
