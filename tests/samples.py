"""Request pieces several test files share."""

from __future__ import annotations

from typing import Any

WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
# The same tool in chat completions' nested form and in the Responses API's flat form.
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": WEATHER_PARAMETERS,
    },
}
WEATHER_FLAT: Any = {"type": "function", **WEATHER_TOOL["function"]}
