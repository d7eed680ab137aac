"""The `overnight` commands, run in-process through typer's CliRunner (fast; no subprocesses).

Each test works in one shared working directory holding `cli_flow.py` (a user's workflow file)
and a store of its own. End-to-end tests through the installed command are in test_cli_e2e.py.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from overnight.cli import app, views
from overnight.cli.exitcodes import ExitCode

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("cli-work")
    shutil.copy(HERE / "cli_flow.py", folder / "cli_flow.py")
    shutil.copy(HERE / "cli_flow.yaml", folder / "cli_flow.yaml")
    (folder / "broken.py").write_text("from overnight import workflow\ndef broken(:\n")
    (folder / "plain.py").write_text("async def not_a_workflow(ctx):\n    return 1\n")
    for name, text in BAD_YAML.items():
        (folder / name).write_text(text)
    yield folder
    sys.modules.pop("cli_flow", None)
    sys.modules.pop("plain", None)


@pytest.fixture
def cli(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[CliRunner, str, Path]:
    """A runner in the work folder, a store URL of this test's own, and its counter folder."""
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("CLI_FLOW_DIR", str(tmp_path))
    monkeypatch.delenv("OVERNIGHT_STORE", raising=False)
    (tmp_path / "release").touch()
    return CliRunner(), f"sqlite:///{tmp_path / 'runs.db'}", tmp_path


def invoke(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(app, list(args), catch_exceptions=False)


def count(folder: Path, name: str) -> int:
    path = folder / f"{name}.count"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_run_prints_the_output_and_show_tells_the_steps(cli: tuple[CliRunner, str, Path]) -> None:
    runner, store, folder = cli
    done = invoke(runner, "run", "cli_flow.py:pipeline", "--input", '"solar"', "--id", "r1",
                  "--store", store)  # fmt: skip
    assert done.exit_code == ExitCode.COMPLETED, done.stderr
    assert orjson.loads(done.stdout) == {"text": "SOLAR!", "size": 6}
    assert "completed run r1" in done.stderr
    assert "done   gate#1" in done.stderr  # plain progress lines when not on a terminal

    listed = invoke(runner, "--store", store, "runs", "--json")
    assert [(r["id"], r["status"], r["output"]) for r in orjson.loads(listed.stdout)] == [
        ("r1", "completed", {"text": "SOLAR!", "size": 6})
    ]
    shown = invoke(runner, "show", "r1", "--store", store)
    assert shown.exit_code == 0
    for text in ("completed", "cli_flow:pipeline", "prepare#1", "gate#1", "publish#1"):
        assert text in shown.stdout
    data = orjson.loads(invoke(runner, "show", "r1", "--json", "--store", store).stdout)
    assert [(s["key"], s["state"]) for s in data["steps"]] == [
        ("prepare#1", "done"),
        ("gate#1", "done"),
        ("publish#1", "done"),
    ]
    assert data["usage"]["model_calls"] == 0
    # Starting the same id again follows the existing run: nothing runs twice.
    again = invoke(runner, "run", "cli_flow.py:pipeline", "-i", '"solar"', "--id", "r1",
                   "--store", store)  # fmt: skip
    assert again.exit_code == 0
    assert "already exists (completed)" in again.stderr
    assert (count(folder, "prepare"), count(folder, "gate"), count(folder, "publish")) == (1, 1, 1)


def test_failed_run_exits_1(cli: tuple[CliRunner, str, Path]) -> None:
    runner, store, _ = cli
    done = invoke(runner, "run", "cli_flow.py:doomed", "-i", '"boom"', "--store", store)
    assert done.exit_code == ExitCode.FAILED
    assert "error: run" in done.stderr
    assert "ValueError: boom" in done.stderr
    assert "overnight show" in done.stderr


def test_waiting_run_signal_and_resume(cli: tuple[CliRunner, str, Path]) -> None:
    runner, store, folder = cli
    waiting = invoke(runner, "run", "cli_flow.py:approval", "-i", '"x"', "--id", "a1",
                     "--no-wait", "--store", store)  # fmt: skip
    assert waiting.exit_code == ExitCode.WAITING
    assert "waiting for signal 'approve'" in waiting.stderr
    assert "overnight --store" in waiting.stderr
    assert "signal a1 approve" in waiting.stderr
    listed = orjson.loads(
        invoke(runner, "runs", "-s", "waiting", "--json", "--store", store).stdout
    )
    assert [r["id"] for r in listed] == ["a1"]

    sent = invoke(runner, "signal", "a1", "approve", "--data", '"yes"', "--id", "s1",
                  "--store", store)  # fmt: skip
    assert sent.exit_code == 0, sent.stderr
    assert "sent signal 'approve'" in sent.stderr
    dup = invoke(runner, "signal", "a1", "approve", "--data", '"no"', "--id", "s1",
                 "--store", store)  # fmt: skip
    assert dup.exit_code == 0
    assert "already sent" in dup.stderr

    resumed = invoke(runner, "resume", "a1", "--store", store)
    assert resumed.exit_code == ExitCode.COMPLETED, resumed.stderr
    assert orjson.loads(resumed.stdout) == {"text": "X", "verdict": "yes", "size": 1}
    assert count(folder, "prepare") == 1
    ended = invoke(runner, "signal", "a1", "approve", "--store", store)
    assert ended.exit_code == ExitCode.BAD_INPUT
    assert "already ended" in ended.stderr


def test_cancel_then_resume_is_refused(cli: tuple[CliRunner, str, Path]) -> None:
    runner, store, _ = cli
    invoke(runner, "run", "cli_flow.py:approval", "-i", '"x"', "--id", "c1", "--no-wait",
           "--store", store)  # fmt: skip
    cancelled = invoke(runner, "cancel", "c1", "--store", store)
    assert cancelled.exit_code == 0
    assert "cancelled run c1" in cancelled.stderr
    shown = orjson.loads(invoke(runner, "show", "c1", "--json", "--store", store).stdout)
    assert shown["status"] == "cancelled"
    resumed = invoke(runner, "resume", "c1", "--store", store)
    assert resumed.exit_code == ExitCode.BAD_INPUT
    assert "already ended (cancelled)" in resumed.stderr
    again = invoke(runner, "cancel", "c1", "--store", store)
    assert again.exit_code == ExitCode.BAD_INPUT


def test_run_waits_through_a_durable_timer_on_memory(cli: tuple[CliRunner, str, Path]) -> None:
    runner, _, folder = cli
    done = invoke(runner, "run", "cli_flow.py:napper", "-i", "1.2", "--store", "memory://")
    assert done.exit_code == 0, done.stderr
    assert orjson.loads(done.stdout) == "AWAKE"
    assert "memory:// keeps nothing" in done.stderr
    assert "status waiting" in done.stderr  # the worker was released during the sleep
    assert count(folder, "prepare") == 1


def test_memory_run_waiting_for_a_signal_exits_3(cli: tuple[CliRunner, str, Path]) -> None:
    runner, _, _ = cli
    done = invoke(runner, "run", "cli_flow.py:approval", "-i", '"x"', "--store", "memory://")
    assert done.exit_code == ExitCode.WAITING
    assert "memory:// store" in done.stderr
    detached = invoke(runner, "run", "cli_flow.py:approval", "--detach", "--store", "memory://")
    assert detached.exit_code == ExitCode.BAD_INPUT


def test_detach_only_enqueues(cli: tuple[CliRunner, str, Path]) -> None:
    runner, store, folder = cli
    done = invoke(runner, "run", "cli_flow.py:pipeline", "-i", '"d"', "--detach", "--store", store)
    assert done.exit_code == 0
    run_id = done.stdout.strip()
    shown = orjson.loads(invoke(runner, "show", run_id, "--json", "--store", store).stdout)
    assert shown["status"] == "queued"
    assert count(folder, "prepare") == 0


def test_validate(cli: tuple[CliRunner, str, Path]) -> None:
    runner, _, _ = cli
    ok = invoke(runner, "validate", "cli_flow.py:approval")
    assert ok.exit_code == 0
    assert "ok: cli_flow.py:approval is workflow 'approval'" in ok.stdout
    several = invoke(runner, "validate", "cli_flow.py")
    assert several.exit_code == ExitCode.BAD_INPUT
    assert "cli_flow.py:pipeline" in several.stderr  # names the choices
    flow = invoke(runner, "validate", "cli_flow.yaml")
    assert flow.exit_code == 0, flow.output
    assert "ok: cli_flow.yaml is workflow 'yaml_pipeline' (ref yaml:cli_flow.yaml" in flow.stdout
    assert "summarise  agent summariser · after prepare" in flow.stdout
    assert "gate       step gate (keyed) · after summarise" in flow.stdout


def _store_file_not_ours(folder: Path) -> tuple[str, Path]:
    path = folder / "notes.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()
    return f"sqlite:///{path}", path


BAD_YAML = {
    "nokey.yaml": "name: nokey\nagents:\n  w: {model: openai:gpt-4o-mini}\n"
    "steps:\n  s: {agent: w, prompt: hi}\n",
    "malformed.yaml": "name: f\nsteps:\n  a: [unclosed\n",
    "typo.yaml": "name: f\nagents:\n  writer: {model: openai:gpt-4o-mini}\n"
    "steps:\n  draft: {agent: writter, prompt: hi}\n",
    "cycle.yaml": "name: f\nsteps:\n  a: {call: cli_flow:prepare, with: {topic: '${b}'}}\n"
    "  b: {call: cli_flow:prepare, with: {topic: '${a}'}}\n",
    "provider.yaml": "name: f\nagents:\n  w: {model: openaj:gpt-4o}\n"
    "steps:\n  s: {agent: w, prompt: hi}\n",
    "tool.yaml": "name: f\nagents:\n  w: {model: openai:gpt-4o, tools: [cli_flow:no_tool]}\n"
    "steps:\n  s: {agent: w, prompt: hi}\n",
}

BAD_INPUTS: list[tuple[list[str], str]] = [
    (["validate", "malformed.yaml"], "malformed.yaml:4:1: not valid YAML"),
    (["run", "typo.yaml"], "typo.yaml:5:18: unknown agent 'writter'"),
    (["validate", "cycle.yaml"], "cycle: a -> b -> a"),
    (["validate", "provider.yaml"], "unknown model provider 'openaj'"),
    (["run", "tool.yaml", "-i", '"x"'], "tool 'cli_flow:no_tool' does not import"),
    (["validate", "missing.yaml"], "no file 'missing.yaml'"),
    (["runs", "--store", "bogus://x"], "unknown store URL 'bogus://x'"),
    (["show", "nope", "--store", "STORE"], "no run with id 'nope'"),
    (["resume", "nope", "--store", "STORE"], "no run with id 'nope'"),
    (["signal", "nope", "approve", "--store", "STORE"], "no run with id 'nope'"),
    (["cancel", "nope", "--store", "STORE"], "no run with id 'nope'"),
    (["run", "missing.py:flow"], "no file 'missing.py'"),
    (["run", "no_such_module:flow"], "no module named 'no_such_module'"),
    (["run", "broken.py:flow"], "module 'broken' does not import: SyntaxError"),
    (["run", "plain.py:not_a_workflow"], "is a function, not a workflow"),
    (["run", "cli_flow.py:nothing"], "has no attribute 'nothing'"),
    (["run", "cli_flow.py:approval", "--input", "{oops"], "--input is not valid JSON"),
    (["run", "cli_flow.py:approval", "--input", "5"], "the input does not fit workflow"),
    (
        ["run", "cli_flow.py:pipeline", "-i", '"s"', "--store", "sqlite:///no/such/dir/x.db"],
        "does not exist",
    ),
    (["run", "cli_flow.py:pipeline"], "needs an input (topic: str)"),
    (["runs", "--store", "sqlite:///nothing-here.db"], "there is no overnight store"),
    (["resume", "x", "--retry", "--store", "STORE"], "Name it with --step KEY"),
    (["resume", "x", "--step", "k#1", "--store", "STORE"], "exactly one of --assume-done"),
    (["runs", "--status", "sleepy"], "sleepy"),
    (["frobnicate"], "No such command"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_says_what_and_exits_2(
    cli: tuple[CliRunner, str, Path], args: list[str], message: str
) -> None:
    runner, store, _ = cli
    invoke(runner, "run", "cli_flow.py:pipeline", "-i", '"s"', "--id", "kept", "--store", store)
    before = invoke(runner, "runs", "--json", "--store", store).stdout
    done = invoke(runner, *[store if a == "STORE" else a for a in args])
    assert done.exit_code == ExitCode.BAD_INPUT, done.output
    assert message in done.stderr
    assert "Traceback" not in done.output
    if "error:" in done.stderr:  # our messages (typer's own usage errors have their format)
        assert done.stderr.count("error:") == 1
        assert "fix:" in done.stderr
    assert invoke(runner, "runs", "--json", "--store", store).stdout == before  # left intact


@pytest.mark.parametrize("junk", [b"", b"x", b"not a database at all" * 100])
def test_a_file_that_is_not_a_store_is_left_untouched(
    cli: tuple[CliRunner, str, Path], junk: bytes
) -> None:
    runner, _, folder = cli
    if junk:
        path = folder / "junk.db"
        path.write_bytes(junk)
        url = f"sqlite:///{path}"
    else:
        url, path = _store_file_not_ours(folder)
    before = path.read_bytes()
    for args in (["runs"], ["run", "cli_flow.py:pipeline", "-i", '"s"']):
        done = invoke(runner, *args, "--store", url)
        assert done.exit_code == ExitCode.BAD_INPUT
        assert "is not an overnight store" in done.stderr or "belongs to something else" in (
            done.stderr
        )
        assert "left untouched" in done.stderr
        assert "Traceback" not in done.output
    assert path.read_bytes() == before


def test_debug_shows_the_traceback(cli: tuple[CliRunner, str, Path]) -> None:
    runner, _, _ = cli
    quiet = invoke(runner, "run", "broken.py:flow")
    assert "Traceback" not in quiet.output
    loud = invoke(runner, "--debug", "run", "broken.py:flow")
    assert loud.exit_code == ExitCode.BAD_INPUT
    assert "Traceback" in loud.stderr
    assert "SyntaxError" in loud.stderr


def test_a_bug_exits_70_with_a_report_hint(
    cli: tuple[CliRunner, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, store, _ = cli

    async def broken(*args: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(views, "list_runs", broken)
    invoke(runner, "run", "cli_flow.py:pipeline", "-i", '"s"', "--store", store)
    done = invoke(runner, "runs", "--store", store)
    assert done.exit_code == ExitCode.INTERNAL
    assert "unexpected RuntimeError: kaput" in done.stderr
    assert "--debug" in done.stderr


def test_model_calls_show_tokens_cost_and_prompts(cli: tuple[CliRunner, str, Path]) -> None:
    runner, store, _ = cli
    done = invoke(runner, "run", "cli_flow.py:verse", "-i", '"durability"', "--id", "v1",
                  "--store", store)  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert orjson.loads(done.stdout) == "Journal first, then act: / nothing done twice."
    assert "1 model call · " in done.stderr
    assert " tokens · $" in done.stderr
    data = orjson.loads(invoke(runner, "show", "v1", "--json", "--store", store).stdout)
    usage = data["usage"]
    assert usage["model_calls"] == 1
    assert usage["input_tokens"] > 0
    assert usage["cost"] is not None
    shown = invoke(runner, "show", "v1", "--prompts", "--store", store)
    assert shown.exit_code == 0
    for text in ("Write one short line of verse.", "Topic: durability", "response from",
                 "Journal first, then act", "openai:gpt-4o"):  # fmt: skip
        assert text in shown.stdout


def test_a_model_without_its_api_key_parks_the_run_with_the_fix(
    cli: tuple[CliRunner, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, store, _ = cli
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    done = invoke(runner, "run", "nokey.yaml", "--id", "nk", "--store", store)
    assert done.exit_code == ExitCode.PARKED
    assert "set the OPENAI_API_KEY environment variable" in done.stderr
    assert "once the model's configuration is fixed: overnight resume nk" in done.stderr
    assert "Traceback" not in done.output
