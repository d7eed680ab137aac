"""The offline demo, as a new user runs it: interrupted with Ctrl-C, run again, resumed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def demo(cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OVERNIGHT_DEMO_DELAY": "0.3"}
    return subprocess.Popen(
        [sys.executable, "-m", "overnight.demo"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_demo_interrupted_by_ctrl_c_resumes_when_run_again(tmp_path: Path) -> None:
    first = demo(tmp_path)
    assert first.stdout is not None
    shown = []
    for line in first.stdout:
        shown.append(line)
        if "called the tool" in line:
            first.send_signal(signal.SIGINT)
            break
    rest, errors = first.communicate(timeout=60)
    assert first.returncode == 130, errors
    assert "run the demo again to resume it" in rest
    assert "offline stand-in model" in "".join(shown)

    second = demo(tmp_path)
    out, errors = second.communicate(timeout=60)
    assert second.returncode == 0, errors
    assert "Resuming demo-1, interrupted earlier" in out
    recorded = int(re.search(r"… (\d+) results recorded before the interruption", out)[1])
    calls, now = map(
        int, re.search(r"(\d+) model calls \((\d+) made by this process\)", out).groups()
    )
    assert recorded >= 2
    assert calls == 10
    assert now < calls  # the answers recorded before Ctrl-C were not asked for again
    assert "review: approved, score 9/10" in out
    assert "OPENAI_API_KEY=sk-... overnight demo --model openai:gpt-4o-mini" in out
    articles = list((tmp_path / ".overnight" / "demo").glob("*.md"))
    assert len(articles) == 1
    assert articles[0].read_text().startswith("# Durable agents: a field guide")

    third = demo(tmp_path)  # the last run finished: a new one starts
    out, _ = third.communicate(timeout=60)
    assert "Starting demo-2" in out
