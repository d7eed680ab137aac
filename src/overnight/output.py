"""What an agent's final answer must be: a Python type (validated by pydantic) or a JSON Schema.

Both give the model the same thing, a JSON Schema for native structured output, and give the
agent the same thing back: the validated value, or `OutputMismatch` whose `problems` say exactly
what was wrong (`sections.0.title: Field required`), which the agent feeds back in its re-ask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pydantic

from .errors import UserError


class OutputMismatch(Exception):
    """A reply that is not a valid output; `problems` is one line for the model to act on."""

    def __init__(self, problems: str) -> None:
        super().__init__(problems)
        self.problems = problems


class OutputType:
    """How an agent's output is described to the model and validated."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.is_text = spec is None or spec is str
        self._adapter: pydantic.TypeAdapter[Any] | None = None
        self._validator: Any = None
        if isinstance(spec, Mapping):
            self.schema: dict[str, Any] | None = dict(spec)
            self.name = str(spec.get("title") or "output")
            self._validator = _json_schema_validator(self.schema)
        elif self.is_text:
            self.schema = None
            self.name = "str"
        else:
            try:
                self._adapter = pydantic.TypeAdapter(spec)
                self.schema = self._adapter.json_schema()
            except pydantic.PydanticUserError as exc:
                raise UserError(
                    f"output type {spec!r} has no JSON Schema: {exc}. Use a pydantic model, "
                    "a dataclass, a TypedDict or a JSON Schema dict"
                ) from None
            self.name = getattr(spec, "__name__", repr(spec))

    def validate(self, content: str) -> Any:
        """The reply as the output value, or OutputMismatch naming every problem."""
        if self.is_text:
            return content
        if self._adapter is not None:
            try:
                return self._adapter.validate_json(content)
            except pydantic.ValidationError as exc:
                raise OutputMismatch(_pydantic_problems(exc)) from None
        try:
            value = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise OutputMismatch(f"output: not JSON ({exc})") from None
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            raise OutputMismatch(
                "; ".join(f"{'.'.join(map(str, e.path)) or 'output'}: {e.message}" for e in errors)
            )
        return value

    def validate_value(self, value: Any) -> None:
        """Check a value already in hand (a step's result); OutputMismatch naming the problems."""
        if self.is_text:
            if not isinstance(value, str):
                raise OutputMismatch(f"output: expected text, got {type(value).__name__}")
            return
        if self._adapter is not None:
            try:
                self._adapter.validate_python(value)
            except pydantic.ValidationError as exc:
                raise OutputMismatch(_pydantic_problems(exc)) from None
            return
        try:
            text = orjson.dumps(value, default=_plain).decode()
        except TypeError as exc:
            raise OutputMismatch(f"output: not a JSON value ({exc})") from None
        self.validate(text)


def _plain(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json_schema_validator(schema: dict[str, Any]) -> Any:
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(map(str, exc.path)) or "the top level"
        raise UserError(f"the output JSON Schema is not valid at {where}: {exc.message}") from None
    return cls(schema)


def _pydantic_problems(exc: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'output'}: {e['msg']}" for e in exc.errors()
    )
