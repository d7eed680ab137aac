"""`make bench` still runs: the driver's quick mode on two overnight scenarios (no LangGraph)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks import run

from tests.conftest import require_postgres


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


def test_quick_postgres_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two PostgreSQL scenarios on the test server, then the same rows skipped, with the
    reason, when the server cannot be reached."""
    monkeypatch.setenv("OVERNIGHT_BENCH_POSTGRES_URL", require_postgres())
    only = ["postgres.steps.w1.default", "postgres.notify"]
    assert run.main(["--quick", "--no-langgraph", "--out", str(tmp_path), "--only", *only]) == 0
    data = json.loads((tmp_path / "results-quick.json").read_text())
    assert data["scenarios"]["postgres.steps.w1.default"]["steps_per_s"] > 0
    assert data["scenarios"]["postgres.notify"]["claim_latency_ms"] > 0
    table = capsys.readouterr().out
    assert "durable steps/s" in table
    assert "claim latency from NOTIFY" in table

    monkeypatch.setenv("OVERNIGHT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:1/none")
    out = tmp_path / "unreachable"
    assert run.main(["--quick", "--no-langgraph", "--out", str(out), "--only", *only]) == 0
    skipped = json.loads((out / "results-quick.json").read_text())["scenarios"]
    assert skipped["postgres.notify"]["available"] is False
    assert "not reachable" in skipped["postgres.notify"]["reason"]
    assert "| 8. PostgreSQL (all scenarios) | skipped: PostgreSQL is not reachable" in (
        capsys.readouterr().out
    )
