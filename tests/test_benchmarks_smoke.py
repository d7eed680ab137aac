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


def test_quick_agents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The agent scenarios at quick sizes (a 20-turn conversation, 50 agents at once)."""
    argv = ["--quick", "--no-langgraph", "--out", str(tmp_path), "--only", "overnight.agents"]
    assert run.main(argv) == 0
    data = json.loads((tmp_path / "results-quick.json").read_text())["scenarios"]
    for store in ("memory", "sqlite"):
        talk = data[f"overnight.agents.conversation.{store}"]
        assert talk["turns"] == 20
        assert talk["us_per_turn"] > 0
        # The history is stored once: the last turns add no more than the first ones.
        first, last = talk["payload_bytes_per_turn_first"], talk["payload_bytes_per_turn_last"]
        assert 0 < last <= 1.25 * first
        many = data[f"overnight.agents.many.{store}"]
        assert many["model_calls"] == 50 * 3
        assert many["wall_s"] >= 0.15  # three 50 ms model calls each
    table = capsys.readouterr().out
    assert "| 9. agent conversation of 20 turns" in table
    assert "| 9. 50 agents at once, sqlite: peak RSS MB (baseline) |" in table
