"""Model listing rules, on plain dicts."""

from __future__ import annotations

from oai2ollama.errors import ModelNotFound
from oai2ollama.translate.models import (
    created_from,
    entry_for,
    model_list,
    model_object,
    not_found,
    owned_by,
)

TAGS = {
    "models": [
        {
            "name": "llama3.2:latest",
            "model": "llama3.2:latest",
            "modified_at": "2025-10-26T17:21:21.196249123Z",
        },
        {
            "name": "me/tuned:q4",
            "model": "me/tuned:q4",
            "modified_at": "2024-06-04T14:38:31.83753-07:00",
        },
    ]
}


def test_list_shape() -> None:
    out = model_list(TAGS)
    assert out["object"] == "list"
    assert out["data"][0] == {
        "id": "llama3.2:latest",
        "object": "model",
        "created": 1761499281,
        "owned_by": "library",
    }
    assert out["data"][1]["owned_by"] == "me"
    assert out["data"][1]["created"] == 1717537111


def test_empty_and_odd_tags() -> None:
    assert model_list({"models": None}) == {"object": "list", "data": []}
    assert model_list({}) == {"object": "list", "data": []}


def test_created_is_zero_when_unreadable() -> None:
    assert created_from("yesterday") == 0
    assert created_from(None) == 0


def test_owned_by() -> None:
    assert owned_by("hf.co/bartowski/x:Q4") == "bartowski"
    assert owned_by("qwen3:8b") == "library"


def test_entry_for_accepts_the_implicit_latest_tag() -> None:
    assert model_object(entry_for(TAGS, "llama3.2") or {}, "llama3.2")["id"] == "llama3.2"
    assert (entry_for(TAGS, "llama3.2:latest") or {})["name"] == "llama3.2:latest"
    assert model_object(entry_for(TAGS, "me/tuned:q4") or {})["owned_by"] == "me"
    assert entry_for(TAGS, "gpt-4o") is None


def test_unknown_model_is_model_not_found() -> None:
    err = not_found("gpt-4o")
    assert isinstance(err, ModelNotFound)
    assert err.status == 404
    assert err.code == "model_not_found"
    assert "gpt-4o" in err.message
