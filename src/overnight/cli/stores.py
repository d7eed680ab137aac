"""Which store a command uses: `--store URL`, else `OVERNIGHT_STORE`, else `.overnight/` here."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError

ENV_VAR = "OVERNIGHT_STORE"
DEFAULT_DIR = ".overnight"
DEFAULT_URL = f"sqlite:///{DEFAULT_DIR}/overnight.db"
"""The default store: a SQLite file under `.overnight/` in the working directory."""


def store_url(option: str | None) -> str:
    """The store URL a command uses (the option wins over the environment)."""
    url = option or os.environ.get(ENV_VAR) or DEFAULT_URL
    return url.strip()


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///` URL (None for other stores)."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(url.removeprefix("sqlite:///").partition("?")[0])


def prepare(url: str, *, create: bool) -> str:
    """Check the URL before opening it; make the default folder when `create`.

    Commands that only read or steer runs (`create=False`) refuse a SQLite file that does not
    exist rather than create an empty store as a side effect of a typo.
    """
    path = sqlite_path(url)
    if path is None:
        return url
    if str(path) in ("", "."):
        raise UserError(f"store URL {url!r} names no file; write sqlite:///path/to/file.db")
    if path.exists():
        return url
    if not create:
        raise UserError(
            f"there is no overnight store at {str(path)!r} (store {url!r}); start a run first "
            f"(`overnight run FILE.py:NAME`), or point --store or {ENV_VAR} at the store that "
            "holds your runs"
        )
    if url == DEFAULT_URL:
        folder = Path(DEFAULT_DIR)
        folder.mkdir(exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# overnight's run store (see docs/cli.md)\n*\n")
    return url


def is_memory(url: str) -> bool:
    """Whether the store lives only in this process."""
    return url in ("memory://", "memory:")
