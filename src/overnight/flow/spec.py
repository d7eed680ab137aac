"""The graph both forms compile to: nodes, the values bound to their inputs, and conditions.

A flow written in Python (`Flow`) and one written in YAML produce the same `FlowSpec`, which is
checked once (`check.py`) and executed by one runtime (`run.py`). Values flow between nodes by
reference: `plan.sections.0` is the `sections` field of node `plan`'s output, item 0. Reference
roots besides node names: `input` (the flow's input), `item` (inside a `for_each` node) and
`previous` / `output` (inside a loop's body and its `until`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import UserError

NodeKind = Literal["step", "agent", "workflow", "loop"]
SPECIAL_ROOTS = frozenset({"input", "item", "previous", "output"})


class FlowError(UserError):
    """A flow that cannot run as written: every problem found, each with where and a fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        head = "the flow has a problem" if len(problems) == 1 else f"{len(problems)} problems"
        super().__init__(head + ":\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Ref:
    """A reference to a value: a root (node name or special root) and a path inside it."""

    root: str
    path: tuple[str | int, ...] = ()

    def __getitem__(self, part: str | int) -> Ref:
        return Ref(self.root, (*self.path, part))

    def text(self) -> str:
        return ".".join([self.root, *map(str, self.path)])

    # Conditions, for `when=` and `until=` in Python.
    def equals(self, value: Any) -> Condition:
        return Condition(self, "==", value)

    def not_equals(self, value: Any) -> Condition:
        return Condition(self, "!=", value)

    def greater_than(self, value: Any) -> Condition:
        return Condition(self, ">", value)

    def less_than(self, value: Any) -> Condition:
        return Condition(self, "<", value)

    def one_of(self, values: list[Any]) -> Condition:
        return Condition(self, "in", list(values))

    def is_true(self) -> Condition:
        return Condition(self, "truthy", None)

    def is_false(self) -> Condition:
        return Condition(self, "falsy", None)


@dataclass(frozen=True)
class Template:
    """Text with `${ref}` placeholders, rendered to a string (values as JSON unless strings)."""

    parts: tuple[str | Ref, ...]

    def refs(self) -> list[Ref]:
        return [p for p in self.parts if isinstance(p, Ref)]

    def text(self) -> str:
        return "".join(p if isinstance(p, str) else "${" + p.text() + "}" for p in self.parts)


@dataclass(frozen=True)
class Const:
    """A constant bound to an input."""

    value: Any


@dataclass(frozen=True)
class Struct:
    """A mapping or list whose values are bindings: `{title: ${plan.title}, draft: true}`."""

    items: tuple[tuple[str | int, Binding], ...]
    is_list: bool = False

    def refs(self) -> list[Ref]:
        found: list[Ref] = []
        for _, binding in self.items:
            found.extend(binding_refs(binding))
        return found


Binding = Ref | Template | Const | Struct


def binding_refs(binding: Binding | None) -> list[Ref]:
    """Every reference a binding reads."""
    if isinstance(binding, Ref):
        return [binding]
    if isinstance(binding, Template | Struct):
        return binding.refs()
    return []


OPERATORS = ("==", "!=", ">=", "<=", ">", "<", "in")


@dataclass(frozen=True)
class Condition:
    """`ref op value`, or `ref` is truthy / falsy: all a `when` or `until` can say."""

    ref: Ref
    op: str
    value: Any = None

    def text(self) -> str:
        if self.op == "truthy":
            return self.ref.text()
        if self.op == "falsy":
            return "not " + self.ref.text()
        return f"{self.ref.text()} {self.op} {json.dumps(self.value)}"

    def holds(self, actual: Any) -> bool:
        op, value = self.op, self.value
        if op == "truthy":
            return bool(actual)
        if op == "falsy":
            return not actual
        if op == "==":
            return bool(actual == value)
        if op == "!=":
            return bool(actual != value)
        if op == "in":
            return actual in value
        try:
            return bool(
                {
                    ">": actual > value,
                    "<": actual < value,
                    ">=": actual >= value,
                    "<=": actual <= value,
                }[op]
            )
        except TypeError:
            return False


@dataclass
class NodeSpec:
    """One node of a flow (see the module docstring for what its fields mean)."""

    name: str
    kind: NodeKind
    target: Any  # a Step, an Agent, a Workflow, or the body FlowSpec of a loop
    bindings: dict[str, Binding] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    when: Condition | None = None
    for_each: Ref | None = None
    concurrency: int | None = None
    until: Condition | None = None
    max_iterations: int | None = None
    output: Any = None  # a type or JSON Schema the node's result must match
    where: str = ""  # where it was written, for error messages

    def refs(self) -> list[Ref]:
        found: list[Ref] = []
        for binding in self.bindings.values():
            found.extend(binding_refs(binding))
        if self.when is not None:
            found.append(self.when.ref)
        if self.for_each is not None:
            found.append(self.for_each)
        return found

    def dependencies(self) -> list[str]:
        """Names of the nodes this one waits for, in a stable order."""
        names = [r.root for r in self.refs() if r.root not in SPECIAL_ROOTS]
        return list(dict.fromkeys([*names, *self.after]))


@dataclass
class FlowSpec:
    """A flow: its nodes in the order written, and what it returns."""

    name: str
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    output: Binding | dict[str, Binding] | None = None
    where: str = ""


# -- parsing the text forms -------------------------------------------------------------------

_REF_TEXT = r"[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*"
_PLACEHOLDER = re.compile(r"\$\{\s*(" + _REF_TEXT + r")\s*\}")
_REF = re.compile(r"^" + _REF_TEXT + r"$")


def parse_ref(text: str) -> Ref:
    """`plan.sections.0` -> Ref('plan', ('sections', 0))."""
    text = text.strip()
    if not _REF.match(text):
        raise ValueError(
            f"{text!r} is not a reference; write a node name followed by fields, e.g. plan.title"
        )
    root, *path = text.split(".")
    return Ref(root, tuple(int(p) if p.isdigit() else p for p in path))


def parse_binding(value: Any) -> Binding:
    """A string that is exactly `${ref}` binds the value itself; other `${...}` text is a
    template; anything else is a constant."""
    if isinstance(value, Ref | Template | Const | Struct):
        return value
    if isinstance(value, Mapping | list | tuple):
        is_list = not isinstance(value, Mapping)
        pairs = value.items() if isinstance(value, Mapping) else enumerate(value)
        items = tuple((k, parse_binding(v)) for k, v in pairs)
        if all(isinstance(b, Const) for _, b in items):
            values = [b.value for _, b in items if isinstance(b, Const)]
            keys = [k for k, _ in items]
            return Const(values if is_list else dict(zip(keys, values, strict=True)))
        return Struct(items, is_list)
    if not isinstance(value, str) or "${" not in value:
        return Const(value)
    whole = _PLACEHOLDER.fullmatch(value.strip())
    if whole:
        return parse_ref(whole.group(1))
    parts: list[str | Ref] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(value):
        if match.start() > pos:
            parts.append(value[pos : match.start()])
        parts.append(parse_ref(match.group(1)))
        pos = match.end()
    rest = value[pos:]
    if "${" in rest:
        raise ValueError(
            f"{rest!r} has a '${{' that is not a reference; write ${{node.field}}, "
            "e.g. ${plan.title}"
        )
    if rest:
        parts.append(rest)
    return Template(tuple(parts))


_CONDITION = re.compile(
    r"^\s*(?:(not)\s+)?(" + _REF_TEXT + r")\s*(?:(==|!=|>=|<=|>|<|in)\s*(.+?))?\s*$"
)


def parse_condition(text: Any) -> Condition:
    """`route.kind == "refund"`, `review.approved`, `not review.approved`, `score > 0.8`,
    `route.kind in ["a", "b"]` (the value is JSON)."""
    if isinstance(text, Condition):
        return text
    match = _CONDITION.match(str(text)) if isinstance(text, str) else None
    if not match:
        raise ValueError(
            f'{text!r} is not a condition; write `node.field == "value"` (also !=, <, <=, >, '
            ">=, in [..]), `node.field` or `not node.field`"
        )
    negated, ref_text, op, value_text = match.groups()
    ref = parse_ref(ref_text)
    if op is None:
        return Condition(ref, "falsy" if negated else "truthy")
    if negated:
        raise ValueError(f"{text!r}: 'not' goes with a plain reference; use != for comparisons")
    try:
        value = json.loads(value_text)
    except json.JSONDecodeError:
        raise ValueError(
            f"in {text!r} the value {value_text!r} is not JSON; quote strings with double "
            'quotes, e.g. route.kind == "refund"'
        ) from None
    if op == "in" and not isinstance(value, list):
        raise ValueError(f'in {text!r}: \'in\' needs a JSON list, e.g. in ["a", "b"]')
    return Condition(ref, op, value)


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def validate_node_name(name: Any, what: str) -> str:
    """Node names are read back in references (`${name.field}`): keep them to identifiers."""
    if not isinstance(name, str) or not _NAME.match(name) or name in SPECIAL_ROOTS:
        special = isinstance(name, str) and name in SPECIAL_ROOTS
        reserved = f" ({', '.join(sorted(SPECIAL_ROOTS))} are reserved)" if special else ""
        raise UserError(
            f"{what} name {name!r} must start with a letter or _ and hold only letters, digits, "
            f"_ and -{reserved}"
        )
    return name
