"""What the providers share: strict schemas, Retry-After, keys, `provider:model` names, extras."""

from __future__ import annotations

import copy
import importlib
import sys
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal

import pydantic
import pytest

import overnight.models
from overnight.errors import UserError
from overnight.models import ProviderModel, _provider, _schema, resolve_model
from overnight.models.anthropic import AnthropicModel
from overnight.models.openai import OpenAIModel

# -- strict schemas -------------------------------------------------------------------------------


class Place(pydantic.BaseModel):
    name: str
    country: str | None = None


class Cat(pydantic.BaseModel):
    kind: Literal["cat"]
    lives: int = 9


class Dog(pydantic.BaseModel):
    kind: Literal["dog"]


class Report(pydantic.BaseModel):
    place: Place = pydantic.Field(description="Where the tide was measured.")
    readings: list[float]
    pet: Cat | Dog = pydantic.Field(discriminator="kind")


def objects(node: Any) -> list[dict[str, Any]]:
    """Every object schema in `node`."""
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append(node)
        for value in node.values():
            found.extend(objects(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(objects(value))
    return found


def test_a_pydantic_schema_is_made_strict_without_changing_the_original() -> None:
    original = Report.model_json_schema()
    kept = copy.deepcopy(original)
    strict = _schema.strict_schema(original)
    assert original == kept
    assert strict is not None
    for node in objects(strict):
        assert node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])
    place = strict["properties"]["place"]  # a $ref with a description beside it: inlined
    assert "$ref" not in place
    assert place["description"] == "Where the tide was measured."
    assert place["required"] == ["name", "country"]
    assert "default" not in place["properties"]["country"]  # a null default means nothing now
    pet = strict["properties"]["pet"]
    assert set(pet) == {"anyOf", "title"}  # oneOf and its discriminator: not strict words
    assert [v["$ref"] for v in pet["anyOf"]] == ["#/$defs/Cat", "#/$defs/Dog"]
    assert strict["$defs"]["Cat"]["required"] == ["kind", "lives"]


def test_a_single_allof_is_merged() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"allOf": [{"type": "object", "properties": {"x": {}}}], "title": "A"}},
    }
    strict = _schema.strict_schema(schema)
    assert strict is not None
    assert strict["properties"]["a"] == {
        "type": "object",
        "title": "A",
        "properties": {"x": {}},
        "required": ["x"],
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "additionalProperties": {"type": "integer"}},  # dict[str, int]
        {"type": "object", "properties": {"m": {"type": "object", "additionalProperties": True}}},
        {"type": "object", "patternProperties": {"^x": {}}},
        {"type": "object", "properties": {"r": {"$ref": "https://example.org/s", "title": "R"}}},
    ],
)
def test_schemas_strict_mode_cannot_express(schema: dict[str, Any]) -> None:
    assert _schema.strict_schema(schema) is None


def test_a_self_referencing_model_stays_strict() -> None:
    class Node(pydantic.BaseModel):
        value: int
        children: list[Node] = []

    strict = _schema.strict_schema(Node.model_json_schema())
    assert strict is not None
    assert strict["$defs"]["Node"]["required"] == ["value", "children"]


def test_object_roots_are_kept_and_others_wrapped() -> None:
    schema = Place.model_json_schema()
    assert _schema.object_root(schema) == (schema, False)
    wrapped, did = _schema.object_root(
        {"type": "array", "items": {"$ref": "#/$defs/P"}, "$defs": {"P": {}}}
    )
    assert did
    assert wrapped["properties"] == {"response": {"type": "array", "items": {"$ref": "#/$defs/P"}}}
    assert wrapped["$defs"] == {"P": {}}
    root_ref = {"$ref": "#/$defs/P", "$defs": {"P": {"type": "object", "properties": {}}}}
    inlined, did = _schema.object_root(root_ref)
    assert (did, inlined["type"], "$ref" in inlined) == (False, "object", False)


def test_unwrap_and_fences() -> None:
    assert _schema.unwrap('{"response": [1, 2]}') == "[1, 2]"
    assert _schema.unwrap('{"response": 1, "other": 2}') == '{"response": 1, "other": 2}'
    assert _schema.unwrap("not json") == "not json"
    assert _schema.strip_fences('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert _schema.strip_fences("  ```\n[1]\n```\n") == "[1]"
    assert _schema.strip_fences('{"a": "```"}') == '{"a": "```"}'
    assert _schema.tool_name("my output!") == "my_output_"


# -- HTTP details ---------------------------------------------------------------------------------


def test_retry_after_in_its_three_spellings() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    date = format_datetime(datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert _provider.retry_after({"Retry-After": "7"}) == 7.0
    assert _provider.retry_after({"retry-after": "0.5"}) == 0.5
    assert _provider.retry_after({"retry-after": date}, now=now.timestamp()) == 30.0
    assert _provider.retry_after({"retry-after": date}, now=now.timestamp() + 60) == 0.0
    assert _provider.retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert _provider.retry_after({"retry-after-ms": "soon", "retry-after": "9"}) == 9.0
    for bad in ({}, {"retry-after": "later"}, {"retry-after": "-1"}, {"retry-after": ""}):
        assert _provider.retry_after(bad) is None


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (403, False), (404, False), (422, False), (408, True),
     (409, True), (429, True), (500, True), (502, True), (503, True), (529, True)],
)  # fmt: skip
def test_which_statuses_are_retryable(status: int, retryable: bool) -> None:
    assert _provider.is_retryable_status(status) is retryable
    error = _provider.status_error(
        model="m", status=status, detail="d", url="u", headers={"retry-after": "2"}, hint="K",
        context_length=False,
    )  # fmt: skip
    assert (error.retryable, error.status) == (retryable, status)
    assert error.retry_after == (2.0 if retryable else None)


@pytest.mark.parametrize(
    ("url", "local"),
    [("http://localhost:11434/v1", True), ("http://127.0.0.1:8000/v1", True),
     ("http://[::1]:1234/v1", True), ("https://api.openai.com/v1", False),
     ("http://192.168.1.20:8000/v1", False), ("not a url", False)],
)  # fmt: skip
def test_which_endpoints_are_local(url: str, local: bool) -> None:
    assert _provider.is_local(url) is local


# -- provider:model names -------------------------------------------------------------------------


def test_resolve_passes_options_to_the_provider() -> None:
    model = resolve_model("openai:gpt-4o-mini", api_key="k", timeout=5, structured="prompted")
    assert isinstance(model, OpenAIModel)
    assert isinstance(model, ProviderModel)
    assert (model.name, model.timeout, model.structured) == ("openai:gpt-4o-mini", 5, "prompted")
    assert model.base_url == "https://api.openai.com/v1"
    claude = resolve_model("anthropic:claude-haiku-4-5", api_key="k")
    assert isinstance(claude, AnthropicModel)
    assert claude.name == "anthropic:claude-haiku-4-5"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("opneai:gpt-4o", "unknown model provider 'opneai' in 'opneai:gpt-4o'; known providers: "
         "anthropic, openai; did you mean 'openai:gpt-4o'?"),
        ("antropic:claude-haiku-4-5", "did you mean 'anthropic:claude-haiku-4-5'?"),
        ("ollama:llama3.2", "'openai:<model>' with OPENAI_BASE_URL set to its URL"),
        ("gpt-4o-mini", "names no provider: write 'provider:model', e.g. 'openai:gpt-4o-mini'"),
        ("claude-haiku-4-5", "e.g. 'anthropic:claude-haiku-4-5'"),
        ("openai:", "has no model after 'openai:'"),
    ],
)  # fmt: skip
def test_bad_model_names_get_one_clear_error(name: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        resolve_model(name)
    assert message in str(caught.value)


def test_a_name_must_be_a_string() -> None:
    with pytest.raises(UserError, match="'provider:model' string"):
        resolve_model(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(("provider", "sdk"), [("openai", "openai"), ("anthropic", "anthropic")])
def test_a_missing_extra_gives_the_install_command(
    monkeypatch: pytest.MonkeyPatch, provider: str, sdk: str
) -> None:
    monkeypatch.setitem(sys.modules, sdk, None)  # `import openai` now fails as if not installed
    monkeypatch.delitem(sys.modules, f"overnight.models.{provider}")
    with pytest.raises(UserError) as caught:
        resolve_model(f"{provider}:some-model", api_key="k")
    assert f'pip install "overnight[{provider}]"' in str(caught.value)
    monkeypatch.undo()
    importlib.import_module(f"overnight.models.{provider}")  # back to normal


def test_pinned_names() -> None:
    assert overnight.models.__all__ == [
        "PROVIDERS",
        "ContextLengthError",
        "Cost",
        "Message",
        "Model",
        "ModelError",
        "ModelRequest",
        "ModelResponse",
        "OutputSpec",
        "ProviderModel",
        "Role",
        "ToolCall",
        "ToolSpec",
        "Usage",
        "check_model_name",
        "cost",
        "resolve_model",
    ]
