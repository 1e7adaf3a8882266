"""The snippets of docs/deploy.md, each under an HTML comment naming it (``<!-- name -->``)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "deploy.md"
_SNIPPET = re.compile(r"^<!-- ([\w.-]+) -->\n```[\w-]*\n(.*?)^```$", re.M | re.S)


def snippets() -> dict[str, str]:
    found: dict[str, str] = {}
    for name, body in _SNIPPET.findall(DOC.read_text()):
        assert name not in found, f"two snippets named {name} in {DOC.name}"
        found[name] = body
    return found


def snippet(name: str) -> str:
    found = snippets()
    assert name in found, f"{DOC.name} has no snippet named {name}"
    return found[name]


def replace_once(text: str, old: str, new: str) -> str:
    """``old`` → ``new``, where ``old`` must be there exactly once (so the docs can't drift)."""
    assert text.count(old) == 1, f"expected {old!r} once in the snippet"
    return text.replace(old, new)
