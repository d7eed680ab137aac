"""Reading YAML while remembering where everything was written (file, line, column).

`read(path)` returns plain dicts, lists and scalars, except that every mapping is a `Located`
dict that knows the position of each of its keys and values, so errors found much later (an
unknown agent, a cycle) can still point at the exact line.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from .spec import FlowError


class Located(dict[str, Any]):
    """A mapping from YAML with the position of the mapping, its keys and its values."""

    where: str
    key_where: dict[str, str]
    value_where: dict[str, str]

    @classmethod
    def empty(cls, where: str) -> Located:
        out = cls()
        out.where, out.key_where, out.value_where = where, {}, {}
        return out

    def at(self, key: str) -> str:
        """Where the value of `key` was written (or the mapping, if the key is absent)."""
        return self.value_where.get(key, self.where)

    def unknown_keys(self, known: Iterable[str], what: str) -> list[str]:
        """A problem for each key that is not one of `known`, with the closest known one."""
        known = list(known)
        problems = []
        for key in self:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
                problems.append(f"{self.key_where[key]}: unknown key {key!r} in {what}; {hint}")
        return problems


class _Loader(yaml.SafeLoader):
    file = ""


def _position(loader: _Loader, node: yaml.Node) -> str:
    mark = node.start_mark
    return f"{loader.file}:{mark.line + 1}:{mark.column + 1}"


def _mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    out = Located.empty(_position(loader, node))
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise FlowError([f"{_position(loader, key_node)}: keys must be text, got {key!r}"])
        if key in out:
            raise FlowError(
                [
                    f"{_position(loader, key_node)}: {key!r} is written twice in this mapping "
                    f"(first at {out.key_where[key]}); keep one"
                ]
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_where[key] = _position(loader, key_node)
        out.value_where[key] = _position(loader, value_node)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read(path: Path, shown_as: str) -> Any:
    """The YAML document in `path`; FlowError with the position for malformed YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlowError([f"{shown_as}: no such file; check the path"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError([f"{shown_as}: cannot be read as UTF-8 text ({exc})"]) from None
    loader = _Loader(text)
    loader.file = shown_as
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{shown_as}:{mark.line + 1}:{mark.column + 1}" if mark else shown_as
        problem = exc.problem or exc.context or "malformed YAML"
        raise FlowError(
            [f"{where}: not valid YAML: {problem}; check the indentation and quoting there"]
        ) from None
    except yaml.YAMLError as exc:
        raise FlowError([f"{shown_as}: not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    return document
