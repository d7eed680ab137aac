"""docs/cli.md is generated from the commands; this fails when the two disagree."""

from __future__ import annotations

from pathlib import Path

from overnight.cli.exitcodes import EXPLAINED
from overnight.cli.reference import render

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_docs_cli_md_is_up_to_date() -> None:
    assert DOC.read_text() == render(), (
        "docs/cli.md is out of date: regenerate it with "
        "`.venv/bin/python -m overnight.cli.reference > docs/cli.md`"
    )


def test_every_exit_code_is_documented() -> None:
    text = DOC.read_text()
    for code in EXPLAINED:
        assert f"| {int(code)} |" in text
