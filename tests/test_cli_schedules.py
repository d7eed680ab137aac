"""`overnight schedule add|list|pause|resume|remove`, in-process through typer's CliRunner."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from overnight.cli import app
from overnight.cli.exitcodes import ExitCode

HERE = Path(__file__).resolve().parent


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[CliRunner, str]]:
    """A runner in a work folder holding `cli_flow.py`, and a store URL of this test's own."""
    shutil.copy(HERE / "cli_flow.py", tmp_path / "cli_flow.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("OVERNIGHT_STORE", raising=False)
    yield CliRunner(), f"sqlite:///{tmp_path / 'runs.db'}"
    sys.modules.pop("cli_flow", None)


def invoke(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(app, list(args), catch_exceptions=False)


def listed(runner: CliRunner, store: str) -> list[dict[str, object]]:
    done = invoke(runner, "schedule", "list", "--json", "--store", store)
    assert done.exit_code == 0, done.output
    value: list[dict[str, object]] = orjson.loads(done.stdout)
    return value


def test_add_list_pause_resume_remove(cli: tuple[CliRunner, str]) -> None:
    runner, store = cli
    added = invoke(
        runner,
        "schedule",
        "add",
        "nightly",
        "0 6 * * 1-5",
        "cli_flow.py:pipeline",
        "--input",
        '"solar"',
        "--timezone",
        "Europe/Paris",
        "--catch-up",
        "skip",
        "--store",
        store,
    )
    assert added.exit_code == 0, added.output
    assert "schedule 'nightly' added: cli_flow:pipeline at '0 6 * * 1-5' (Europe/Paris)" in (
        added.stdout
    )
    [row] = listed(runner, store)
    assert {k: row[k] for k in ("name", "cron", "timezone", "workflow", "input", "catch_up")} == {
        "name": "nightly",
        "cron": "0 6 * * 1-5",
        "timezone": "Europe/Paris",
        "workflow": "cli_flow:pipeline",
        "input": "solar",
        "catch_up": "skip",
    }
    assert row["paused"] is False
    assert isinstance(row["next_due"], str)
    table = invoke(runner, "schedule", "list", "--store", store)
    assert "nightly" in table.stdout
    assert "active" in table.stdout

    assert invoke(runner, "schedule", "pause", "nightly", "--store", store).exit_code == 0
    assert listed(runner, store)[0]["paused"] is True
    assert listed(runner, store)[0]["next_due"] is None
    assert "paused" in invoke(runner, "schedule", "list", "--store", store).stdout
    resumed = invoke(runner, "--store", store, "schedule", "resume", "nightly")  # global option
    assert resumed.exit_code == 0
    assert "resumed; next tick" in resumed.stdout
    assert listed(runner, store)[0]["paused"] is False

    again = invoke(runner, "schedule", "add", "nightly", "*/5 * * * *", "cli_flow:pipeline",
                   "-i", '"wind"', "--store", store)  # fmt: skip
    assert "schedule 'nightly' replaced" in again.stdout
    assert listed(runner, store)[0]["cron"] == "*/5 * * * *"

    removed = invoke(runner, "schedule", "remove", "nightly", "--store", store)
    assert removed.exit_code == 0
    assert listed(runner, store) == []
    empty = invoke(runner, "schedule", "list", "--store", store)
    assert "no schedules" in empty.stderr


def test_the_store_comes_from_the_environment(
    cli: tuple[CliRunner, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, store = cli
    monkeypatch.setenv("OVERNIGHT_STORE", store)
    done = invoke(runner, "schedule", "add", "h", "0 * * * *", "cli_flow:pipeline", "-i", '"x"')
    assert done.exit_code == 0, done.output
    assert [s["name"] for s in listed(runner, store)] == ["h"]


BAD = [
    (["add", "x", "61 * * * *", "cli_flow:pipeline", "-i", '"s"'], "cron expression '61 * * * *'"),
    (
        ["add", "x", "0 6 * * *", "cli_flow:pipeline", "-i", '"s"', "--tz", "Europe/Pari"],
        "Did you mean 'Europe/Paris'",
    ),
    (["add", "x", "0 6 * * *", "no_such_module:flow"], "no module named 'no_such_module'"),
    (["add", "x", "0 6 * * *", "cli_flow:pipeline"], "needs an input (topic: str)"),
    (["add", "x y", "0 6 * * *", "cli_flow:pipeline", "-i", '"s"'], "is not allowed"),
    (["add", "x", "0 6 * * *", "cli_flow:pipeline", "-i", "{oops"], "--input is not valid JSON"),
    (["add", "x", "0 6 * * *", "cli_flow:pipeline", "--catch-up", "most"], "most"),
    (["pause", "ghost"], "no schedule named 'ghost'"),
    (["resume", "ghost"], "no schedule named 'ghost'"),
    (["remove", "ghost"], "no schedule named 'ghost'"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_says_what_and_exits_2(
    cli: tuple[CliRunner, str], args: list[str], message: str
) -> None:
    runner, store = cli
    kept = invoke(runner, "schedule", "add", "kept", "0 6 * * *", "cli_flow:pipeline",
                  "-i", '"s"', "--store", store)  # fmt: skip
    assert kept.exit_code == 0, kept.output
    before = listed(runner, store)
    done = invoke(runner, "schedule", *args, "--store", store)
    assert done.exit_code == ExitCode.BAD_INPUT, done.output
    assert message in done.stderr
    assert "Traceback" not in done.output
    if "error:" in done.stderr:  # our messages (typer's own usage errors have their format)
        assert done.stderr.count("error:") == 1
        assert "fix:" in done.stderr
    assert listed(runner, store) == before  # left intact
