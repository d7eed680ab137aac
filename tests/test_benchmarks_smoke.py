"""`make bench` still runs: the driver's quick mode on two overnight scenarios (no LangGraph)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks import run


def test_quick_chain_and_fanout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    only = ["overnight.chain.memory.n50", "overnight.fanout.memory", "overnight.crash"]
    assert run.main(["--quick", "--no-langgraph", "--out", str(tmp_path), "--only", *only]) == 0
    data = json.loads((tmp_path / "results-quick.json").read_text())
    chain = data["scenarios"]["overnight.chain.memory.n50"]
    assert chain["journal_entries"] == 51  # one entry per step, plus the output
    assert chain["us_per_step"] > 0
    assert data["scenarios"]["overnight.fanout.memory.k500"]["peak_rss_mb"] > 0
    table = capsys.readouterr().out
    assert "| scenario | overnight | LangGraph | ratio | bar | floor / probe |" in table
    assert "crash trials" in table
