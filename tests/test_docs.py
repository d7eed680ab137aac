"""Every Python example in the README and docs/ runs, and prints what its comments say.

A block whose first line is `# file: NAME` is not an example but a file the examples of the
same page use (a module they import, a YAML flow they load): it is written next to them.
"""

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
BLOCK = re.compile(r"```(python|yaml)\n(.*?)```", re.S)
FILE = re.compile(r"^# file: (\S+)\n")
EXPECTED = re.compile(r"print\(.*\)\s+# (.+)$")


def examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        blocks = [code for lang, code in BLOCK.findall(doc.read_text()) if lang == "python"]
        runnable = [code for code in blocks if not FILE.match(code)]
        for i, code in enumerate(runnable):
            found.append((f"{doc.relative_to(ROOT)}#{i + 1}", code))
    return found


def page_files(where: str) -> dict[str, str]:
    """The `# file:` blocks of the page an example comes from."""
    doc = ROOT / where.split("#", 1)[0]
    files = {}
    for _, code in BLOCK.findall(doc.read_text()):
        match = FILE.match(code)
        if match:
            files[match.group(1)] = code
    return files


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
    for name, text in page_files(where).items():
        (tmp_path / name).write_text(text)
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
