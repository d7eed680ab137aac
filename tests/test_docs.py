"""Every Python example in the README and docs/ runs, and prints what its comments say."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
EXPECTED = re.compile(r"print\(.*\)\s+# (.+)$")


def examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, code in enumerate(BLOCK.findall(doc.read_text())):
            found.append((f"{doc.relative_to(ROOT)}#{i + 1}", code))
    return found


def expected_lines(code: str) -> list[str]:
    """Printed lines promised by `print(...)  # <python literal>` comments."""
    out = []
    for line in code.splitlines():
        match = EXPECTED.search(line)
        if match:
            try:
                out.append(repr(ast.literal_eval(match.group(1))))
            except (ValueError, SyntaxError):
                continue  # a prose comment, not a promised value
    return out


@pytest.mark.parametrize(("where", "code"), examples(), ids=[w for w, _ in examples()])
def test_example_runs_and_prints_what_it_says(where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr}"
    printed = done.stdout.splitlines()
    for line in expected_lines(code):
        assert line in printed, f"{where} did not print {line}; it printed:\n{done.stdout}"
