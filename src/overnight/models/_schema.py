"""JSON Schemas as providers want them, and JSON replies as the agent wants them.

- `strict_schema`: a copy of a schema that OpenAI's strict mode accepts (every object closed
  with `additionalProperties: false` and all its properties required), or None when the schema
  cannot be made strict without changing its meaning (a `dict[str, X]` field, for instance).
- `object_root`: providers want an object at the root of a structured output (OpenAI's
  `json_schema`, Anthropic's tool input); any other root (a list, a number) is wrapped in
  `{"response": ...}` and `unwrap` takes it out of the reply again.
- `prompted_instructions` and `strip_fences`: structured output for servers that cannot
  enforce a schema, by asking for it in words and tolerating a Markdown code fence around it.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

WRAPPER_KEY = "response"
"""The property a non-object output is wrapped in."""

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n?\s*```\s*$", re.S)
_NAME = re.compile(r"[^A-Za-z0-9_-]")


class _NotStrict(Exception):
    """The schema has a part strict mode cannot express."""


def strict_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """A strict-mode compatible copy of `schema`, or None if it cannot be made one."""
    root = copy.deepcopy(schema)
    try:
        return _strict(root, root, depth=0)
    except _NotStrict:
        return None


def _strict(node: dict[str, Any], root: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > 64:
        raise _NotStrict  # a self-referencing $ref we keep inlining
    for defs in ("$defs", "definitions"):
        if isinstance(node.get(defs), dict):
            node[defs] = {k: _strict(v, root, depth + 1) for k, v in node[defs].items()}
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:
        # Strict mode forbids keywords beside a $ref (pydantic puts a description there).
        target = _resolve(root, ref)
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _strict(node, root, depth + 1)
    if "patternProperties" in node:
        raise _NotStrict
    extra = node.get("additionalProperties")
    if extra not in (None, False):
        raise _NotStrict  # a mapping of free keys: closing it would forbid every key
    if node.get("type") == "object" or "properties" in node:
        properties = node.get("properties") or {}
        node["properties"] = {k: _strict(v, root, depth + 1) for k, v in properties.items()}
        node["required"] = list(properties)
        node["additionalProperties"] = False
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"], root, depth + 1)
    if isinstance(node.get("prefixItems"), list):
        node["prefixItems"] = [_strict(v, root, depth + 1) for v in node["prefixItems"]]
    if isinstance(node.get("oneOf"), list):
        # Strict mode knows anyOf only; the reply is validated against the real type anyway.
        node["anyOf"] = node.pop("oneOf")
        node.pop("discriminator", None)
    if isinstance(node.get("anyOf"), list):
        node["anyOf"] = [_strict(v, root, depth + 1) for v in node["anyOf"]]
    all_of = node.get("allOf")
    if isinstance(all_of, list):
        if len(all_of) == 1 and isinstance(all_of[0], dict):
            del node["allOf"]
            return _strict({**all_of[0], **node}, root, depth + 1)
        node["allOf"] = [_strict(v, root, depth + 1) for v in all_of]
    if "default" in node and node["default"] is None:
        del node["default"]  # every property is required now: a null default means nothing
    return node


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise _NotStrict
    target: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(target, dict) or part not in target:
            raise _NotStrict
        target = target[part]
    if not isinstance(target, dict):
        raise _NotStrict
    return dict(target)


def object_root(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """`(schema, False)` if its root is an object, else `(wrapped schema, True)`."""
    root = schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        try:
            root = _resolve(schema, ref)
        except _NotStrict:
            root = {}
    if root.get("type") == "object" or ("properties" in root and "type" not in root):
        if root is not schema:  # a root $ref: inline its target, keep the definitions
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return {**root, **rest}, False
        return schema, False
    inner = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {WRAPPER_KEY: inner},
        "required": [WRAPPER_KEY],
        "additionalProperties": False,
    }
    for defs in ("$defs", "definitions"):
        if defs in schema:
            wrapped[defs] = schema[defs]
    return wrapped, True


def unwrap(text: str) -> str:
    """The JSON text of the wrapped value in `text`; `text` itself if it is not a wrapper."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict) and set(value) == {WRAPPER_KEY}:
        return json.dumps(value[WRAPPER_KEY], ensure_ascii=False)
    return text


def tool_name(name: str) -> str:
    """`name` as providers accept a tool or schema name: `[A-Za-z0-9_-]{1,64}`."""
    return _NAME.sub("_", name)[:64] or "output"


def prompted_instructions(name: str, schema: dict[str, Any]) -> str:
    """Words asking for a JSON value of `schema`, for servers that cannot enforce one."""
    return (
        f"Reply with a single JSON value (the {name!r} output) that matches this JSON Schema, "
        "and nothing else: no prose before or after it, no Markdown code fences.\n"
        f"JSON Schema:\n{json.dumps(schema, ensure_ascii=False, sort_keys=True)}"
    )


def strip_fences(text: str) -> str:
    """`text` without a Markdown code fence around it (models add them when asked for JSON)."""
    match = _FENCE.match(text)
    return match.group(1).strip() if match else text.strip()
