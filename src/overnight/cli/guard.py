"""How every command runs: global options, exit codes from return values, errors as messages.

A command body returns an `ExitCode`. An error a user can fix (`UserError`, `StoreError`) prints
one `error:` line and one `fix:` line and exits 2; any other exception is a bug (exit 70). The
traceback is printed only with `--debug`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import orjson
import typer

from ..errors import OvernightError, RunNotFoundError, StoreError, UserError
from .exitcodes import ExitCode
from .output import Ui
from .stores import ENV_VAR, prepare, store_url

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    """The global options of this invocation (set by the callback)."""

    store: str | None = None
    debug: bool = False


STATE = _State()


def command(fn: F) -> F:
    """Run a command body: its return value is the exit code; errors become messages."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        debug = STATE.debug or bool(kwargs.get("debug"))
        ui = Ui(debug=debug)
        try:
            code = fn(ui, *args, **kwargs)
        except typer.Exit:
            raise
        except RunNotFoundError as exc:
            _trace(ui)
            ui.error(
                f"no run with id {exc.run_id!r} in store {url(kwargs)}",
                f"list runs with `overnight runs`, or pass the store that holds it (--store URL "
                f"or {ENV_VAR})",
            )
            raise typer.Exit(ExitCode.BAD_INPUT) from None
        except (UserError, StoreError) as exc:
            _trace(ui)
            ui.error(*split(str(exc)))
            raise typer.Exit(ExitCode.BAD_INPUT) from None
        except OvernightError as exc:
            _trace(ui)
            ui.error(f"{type(exc).__name__}: {exc}")
            raise typer.Exit(ExitCode.FAILED) from None
        except Exception as exc:
            _trace(ui)
            ui.error(
                f"unexpected {type(exc).__name__}: {exc}",
                "this is a bug in overnight: rerun with --debug and report the traceback",
            )
            raise typer.Exit(ExitCode.INTERNAL) from None
        raise typer.Exit(int(code))

    # typer reads the parameters of the wrapped function, minus the `ui` the wrapper passes.
    signature = inspect.signature(fn, eval_str=True)
    params = list(signature.parameters.values())[1:]
    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _trace(ui: Ui) -> None:
    if ui.debug:
        ui.err.print(traceback.format_exc(), markup=False, highlight=False)


_FIX_STARTS = re.compile(r"; |(?<!e\.g)(?<!i\.e)\. (?=[A-Z`])")
"""Where our messages turn from the problem to the fix: `; ` or the end of a sentence."""


def split(message: str) -> tuple[str, str | None]:
    """An error message as (problem, fix), split where the fix starts."""
    found = _FIX_STARTS.search(message)
    if found is None:
        return message, None
    problem, fix = message[: found.start()], message[found.end() :]
    return problem, fix[:1].upper() + fix[1:]


def url(kwargs: dict[str, Any], *, create: bool = False) -> str:
    """The store URL of this invocation (command option, global option, environment, default)."""
    return prepare(store_url(kwargs.get("store") or STATE.store), create=create)


def run(coro: Coroutine[Any, Any, ExitCode]) -> ExitCode:
    """Run a command's coroutine."""
    return asyncio.run(coro)


def json_arg(text: str | None, option: str) -> Any:
    """An option's JSON value (`@file.json` reads a file); UserError if it is not JSON."""
    if text is None:
        return None
    raw = text
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise UserError(f"{option} {text}: no file {str(path)!r}; give @path/to/file.json")
        raw = path.read_text()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UserError(
            f"{option} is not valid JSON ({exc}); quote it for the shell, e.g. "
            f'{option} \'{{"topic": "solar"}}\', {option} \'"text"\' or {option} @file.json'
        ) from None
