"""Find the workflow a command names: `package.module:attr`, `path/to/file.py:attr`, or YAML.

A run records its workflow as a `module:attr` reference, and a later process (`overnight
resume`, `overnight worker`) imports it by that reference. So a Python file is imported *as a
module*, under a name a later process in the same working directory can import again:

- a file under the working directory is imported by its dotted path from there
  (`flows/report.py` -> `flows.report`; folders need no `__init__.py`), and every `overnight`
  command puts the working directory first on `sys.path`, as `python -m` does;
- a file elsewhere is imported by its stem from its own folder, and the command says which
  folder a later process needs on `PYTHONPATH`.

`FILE.py` or `package.module` without `:attr` picks the module's only workflow.
YAML files (`.yaml`, `.yml`) are loaded by `overnight.flow.yaml.load_workflow_file(path)`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import UserError
from ..workflow import Workflow

YAML_SUFFIXES = (".yaml", ".yml")
_EXTERNAL: dict[str, Path] = {}
"""Modules imported from a file outside the working directory, and the folder they need."""


class TargetError(UserError):
    """A target that does not name a loadable workflow (the message says what to change)."""


def add_working_directory() -> None:
    """Make modules in the working directory importable, as `python -m` does."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def load_target(target: str) -> Workflow[Any, Any]:
    """The workflow `target` names (see the module docstring); TargetError if it does not."""
    target = target.strip()
    if not target:
        raise TargetError("no workflow given; name one as FILE.py:NAME or package.module:NAME")
    if target.lower().endswith(YAML_SUFFIXES):
        return _load_yaml(Path(target))
    where, sep, attr = target.rpartition(":")
    if not sep:
        where, attr = target, ""
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _import_file(Path(where))
    else:
        module = _import_module(where)
    return _pick(module, attr, target)


def external_folder(workflow: Workflow[Any, Any]) -> Path | None:
    """The folder a later process needs on PYTHONPATH to import `workflow` (None: cwd will do)."""
    return _EXTERNAL.get(workflow.ref.partition(":")[0])


def _load_yaml(path: Path) -> Workflow[Any, Any]:
    from ..flow.yaml import load_workflow_file

    if not path.is_file():
        raise TargetError(f"no file {str(path)!r}; check the path (relative to {Path.cwd()})")
    return load_workflow_file(path)


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        hint = " (did you mean package.module:NAME?)" if not path.suffix else ""
        raise TargetError(f"no file {str(path)!r}{hint}; check the path (relative to {Path.cwd()})")
    if path.suffix != ".py":
        raise TargetError(
            f"{str(path)!r} is not a Python file; name a .py file, a module, or a .yaml file"
        )
    full = path.resolve()
    cwd = Path.cwd().resolve()
    parts: tuple[str, ...] | None
    try:
        parts = full.with_suffix("").relative_to(cwd).parts
    except ValueError:
        parts = None
    if parts and all(p.isidentifier() for p in parts):
        root, name = cwd, ".".join(parts)
    elif full.stem.isidentifier():
        root, name = full.parent, full.stem
        _EXTERNAL[name] = root
    else:
        raise TargetError(
            f"{full.name!r} cannot be imported as a module (its name is not a Python "
            "identifier); rename it, e.g. to " + repr(_identifier(full.stem) + ".py")
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = _import_module(name)
    found = getattr(module, "__file__", None)
    if found is None or Path(found).resolve() != full:
        raise TargetError(
            f"{str(path)!r} would be imported as module {name!r}, but that name is taken by "
            f"{found or 'a built-in module'}; rename the file"
        )
    return module


def _import_module(name: str) -> ModuleType:
    if not all(part.isidentifier() for part in name.split(".")):
        raise TargetError(
            f"{name!r} is neither a .py file nor a module name; write FILE.py:NAME, "
            "package.module:NAME or FILE.yaml"
        )
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise TargetError(
                f"no module named {name!r}; run from the folder that holds it, set PYTHONPATH, "
                "or give the file's path (FILE.py:NAME)"
            ) from exc
        raise TargetError(
            f"module {name!r} does not import: it needs module {exc.name!r}, which is not "
            "installed; install it (pip install ...) and try again"
        ) from exc
    except Exception as exc:
        raise TargetError(
            f"module {name!r} does not import: {type(exc).__name__}: {exc}; fix the module "
            "(rerun with --debug for the traceback)"
        ) from exc


def _pick(module: ModuleType, attr: str, target: str) -> Workflow[Any, Any]:
    found = {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, Workflow) and value.ref.startswith(module.__name__ + ":")
    }
    if not attr:
        if len(found) == 1:
            return next(iter(found.values()))
        if not found:
            raise TargetError(f"{target!r} defines no @workflow; decorate one, then name it")
        raise TargetError(
            f"{target!r} defines several workflows; pick one: "
            + ", ".join(f"{target}:{name}" for name in sorted(found))
        )
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            known = ", ".join(sorted(found)) or "none"
            raise TargetError(
                f"{module.__name__!r} has no attribute {attr!r}; its workflows: {known}"
            )
        obj = getattr(obj, part)
    if not isinstance(obj, Workflow):
        raise TargetError(
            f"{attr!r} in {module.__name__!r} is a {type(obj).__name__}, not a workflow; "
            "decorate it with @workflow"
        )
    return obj


def _identifier(stem: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    return cleaned if cleaned[:1].isalpha() or cleaned[:1] == "_" else "flow_" + cleaned
