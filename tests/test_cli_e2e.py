"""The installed `overnight` command, used as a person would: real processes, real signals.

Each test works in a fresh folder holding `cli_flow.py` and uses the default store
(`.overnight/overnight.db` there). Steps count their invocations in files outside the processes,
so the counts survive SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from overnight.cli.exitcodes import ExitCode

HERE = Path(__file__).resolve().parent
OVERNIGHT = shutil.which("overnight") or str(Path(sys.executable).with_name("overnight"))


class Cli:
    """`overnight` in a working folder of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        shutil.copy(HERE / "cli_flow.py", folder / "cli_flow.py")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
        self.env["CLI_FLOW_DIR"] = str(folder)

    def __call__(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [OVERNIGHT, *args],
            cwd=self.folder,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self, *args: str, log: str = "") -> subprocess.Popen[bytes]:
        """Start a command; its stdout and stderr go to files the test can watch
        (`stdout{log}.log`, `stderr{log}.log`)."""
        with (
            (self.folder / f"stdout{log}.log").open("w") as out,
            (self.folder / f"stderr{log}.log").open("w") as err,
        ):
            return subprocess.Popen([OVERNIGHT, *args], cwd=self.folder, env=self.env,
                                    stdout=out, stderr=err)  # fmt: skip

    def stdout(self) -> object:
        return orjson.loads((self.folder / "stdout.log").read_bytes())

    def count(self, name: str) -> int:
        path = self.folder / f"{name}.count"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def logged(self, text: str, log: str = "") -> Callable[[], bool]:
        return lambda: text in (self.folder / f"stderr{log}.log").read_text()

    def workers(self, n: int) -> list[subprocess.Popen[bytes]]:
        """`n` `overnight worker` processes, returned once each has its signal handlers."""
        started = [self.start("worker", "--poll-seconds", "0.05", log=str(i)) for i in range(n)]
        for i in range(n):
            wait_for(self.logged("Ctrl-C or SIGTERM stops it", str(i)), f"worker {i} to start")
        return started

    @staticmethod
    def stop(workers: list[subprocess.Popen[bytes]]) -> list[int]:
        """SIGTERM each worker; their exit codes (a worker still up after 30 s is killed)."""
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = []
        for worker in workers:
            try:
                codes.append(worker.wait(timeout=30))
            except subprocess.TimeoutExpired:
                worker.kill()
                codes.append(worker.wait())
        return codes

    def release(self) -> None:
        (self.folder / "release").touch()

    def show(self, run_id: str) -> dict[str, object]:
        done = self("show", run_id, "--json")
        assert done.returncode == 0, done.stderr
        shown: dict[str, object] = orjson.loads(done.stdout)
        return shown


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_sigkill_mid_run_then_resume_reruns_no_completed_step(cli: Cli) -> None:
    running = cli.start("run", "cli_flow.py:pipeline", "-i", '"solar"', "--id", "k1",
                        "--lease-seconds", "1")  # fmt: skip
    wait_for(lambda: cli.count("gate") == 1, "the gate step to start")
    running.kill()
    running.wait()
    assert (cli.count("prepare"), cli.count("gate"), cli.count("publish")) == (1, 1, 0)
    cli.release()
    resumed = cli("resume", "k1", "--lease-seconds", "1")
    assert resumed.returncode == ExitCode.COMPLETED, resumed.stderr
    assert orjson.loads(resumed.stdout) == {"text": "SOLAR!", "size": 6}
    # prepare completed before the kill: never again. The gate was in flight (keyed): once more,
    # with the same idempotency key.
    assert (cli.count("prepare"), cli.count("gate"), cli.count("publish")) == (1, 2, 1)
    shown = cli.show("k1")
    assert (shown["status"], shown["recoveries"]) == ("completed", 1)


def test_a_yaml_workflow_killed_mid_run_resumes_without_asking_the_model_again(cli: Cli) -> None:
    shutil.copy(HERE / "cli_flow.yaml", cli.folder / "cli_flow.yaml")
    running = cli.start("run", "cli_flow.yaml", "-i", '"wind"', "--id", "y1",
                        "--lease-seconds", "1")  # fmt: skip
    wait_for(lambda: cli.count("gate") == 1, "the gate step to start")
    running.kill()
    running.wait()
    assert (cli.count("prepare"), cli.count("model"), cli.count("gate")) == (1, 1, 1)
    cli.release()
    resumed = cli("resume", "y1", "--lease-seconds", "1")
    assert resumed.returncode == ExitCode.COMPLETED, resumed.stderr
    assert orjson.loads(resumed.stdout) == {"text": "summary of WIND!", "size": 16}
    # The model's answer was committed before the kill: it is not asked again.
    assert (cli.count("prepare"), cli.count("model"), cli.count("gate")) == (1, 1, 2)
    assert cli.count("publish") == 1
    assert cli.show("y1")["workflow"] == "yaml:cli_flow.yaml"


def test_run_waits_for_a_signal_sent_from_another_process(cli: Cli) -> None:
    running = cli.start("run", "cli_flow.py:approval", "-i", '"x"', "--id", "w1")
    wait_for(lambda: cli.count("prepare") == 1, "the first step")
    sent = cli("signal", "w1", "approve", "--data", '"yes"')
    assert sent.returncode == 0, sent.stderr
    assert running.wait(timeout=30) == ExitCode.COMPLETED
    assert cli.stdout() == {"text": "X", "verdict": "yes", "size": 1}


def test_a_waiting_run_completes_across_a_process_restart(cli: Cli) -> None:
    first = cli("run", "cli_flow.py:approval", "-i", '"x"', "--id", "w2", "--no-wait")
    assert first.returncode == ExitCode.WAITING
    assert "overnight signal w2 approve --data JSON" in first.stderr
    assert "overnight resume w2" in first.stderr
    assert cli("signal", "w2", "approve", "-d", '"later"').returncode == 0
    resumed = cli("resume", "w2")
    assert resumed.returncode == ExitCode.COMPLETED, resumed.stderr
    assert orjson.loads(resumed.stdout)["verdict"] == "later"
    assert (cli.count("prepare"), cli.count("publish")) == (1, 1)


def test_cancel_from_another_process_ends_the_run_with_5(cli: Cli) -> None:
    running = cli.start("run", "cli_flow.py:approval", "-i", '"x"', "--id", "c1")
    wait_for(lambda: cli.count("prepare") == 1, "the first step")
    assert cli("cancel", "c1").returncode == 0
    assert running.wait(timeout=30) == ExitCode.CANCELLED
    assert cli.show("c1")["status"] == "cancelled"


def test_worker_drains_on_sigterm(cli: Cli) -> None:
    queued = cli("run", "cli_flow.py:pipeline", "-i", '"w"', "--id", "d1", "--detach")
    assert (queued.returncode, queued.stdout.strip()) == (0, "d1")
    worker = cli.start("worker", "--poll-seconds", "0.1", "--lease-seconds", "3")
    wait_for(lambda: cli.count("gate") == 1, "the worker to reach the gate")
    worker.send_signal(signal.SIGTERM)
    wait_for(cli.logged("draining: 1 run(s)"), "the worker to start draining")
    cli.release()  # the step in progress finishes; the run is requeued, not continued
    assert worker.wait(timeout=30) == 0
    assert cli.logged("worker stopped")()
    shown = cli.show("d1")
    assert shown["status"] == "queued"
    assert [(s["key"], s["state"]) for s in shown["steps"]] == [  # type: ignore[attr-defined]
        ("prepare#1", "done"),
        ("gate#1", "done"),
    ]
    resumed = cli("resume", "d1")
    assert resumed.returncode == ExitCode.COMPLETED, resumed.stderr
    assert (cli.count("prepare"), cli.count("gate"), cli.count("publish")) == (1, 1, 1)


def test_ctrl_c_leaves_the_run_resumable(cli: Cli) -> None:
    running = cli.start("run", "cli_flow.py:pipeline", "-i", '"c"', "--id", "i1")
    wait_for(lambda: cli.count("gate") == 1, "the gate step to start")
    running.send_signal(signal.SIGINT)
    wait_for(cli.logged("stopping: letting running steps finish"), "the run to stop")
    cli.release()
    assert running.wait(timeout=30) == ExitCode.INTERRUPTED
    assert cli.logged("run i1 is queued and resumable")()
    assert cli.logged("overnight resume i1")()
    resumed = cli("resume", "i1")
    assert resumed.returncode == ExitCode.COMPLETED, resumed.stderr
    assert (cli.count("prepare"), cli.count("gate"), cli.count("publish")) == (1, 1, 1)


@pytest.mark.parametrize(
    ("crash_at", "answer", "expected"),
    [
        (
            "after_effect:1",
            ["--assume-done", "--result", '"charged 5 by hand"'],
            "charged 5 by hand",
        ),
        ("after_intent:1", ["--retry"], "charged 5"),
    ],
)
def test_a_parked_step_is_answered_with_resume(
    cli: Cli, crash_at: str, answer: list[str], expected: str
) -> None:
    crashed = cli("run", "cli_flow.py:billing", "-i", "5", "--id", "p1", "--lease-seconds", "1",
                  env={"OVERNIGHT_CRASH_AT": crash_at})  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL
    charged = cli.count("charge")
    parked = cli("resume", "p1", "--lease-seconds", "1")
    assert parked.returncode == ExitCode.PARKED, parked.stderr
    assert "overnight resume p1 --step 'charge#1' --assume-done --result JSON" in parked.stderr
    assert "overnight resume p1 --step 'charge#1' --retry" in parked.stderr
    if "--assume-done" in answer:  # checked against the step's return type (str)
        wrong = cli("resume", "p1", "--step", "charge#1", "--assume-done", "--result", "5")
        assert wrong.returncode == ExitCode.BAD_INPUT
        assert "does not match its return type" in wrong.stderr
    done = cli("resume", "p1", "--step", "charge#1", *answer)
    assert done.returncode == ExitCode.COMPLETED, done.stderr
    assert orjson.loads(done.stdout) == expected
    assert cli.count("charge") == charged + (1 if "--retry" in answer else 0)


def test_bad_input_in_a_real_process_has_no_traceback(cli: Cli) -> None:
    for args in (["--store", "bogus://x", "runs"], ["run", "nothing.py:flow"], ["show", "x"]):
        done = cli(*args)
        assert done.returncode == ExitCode.BAD_INPUT, args
        assert done.stderr.startswith("error: "), done.stderr
        assert "\nfix: " in done.stderr
        assert "Traceback" not in done.stderr
    assert not (cli.folder / ".overnight").exists()  # reading commands create no store


def test_the_demo_runs_offline_and_a_second_run_starts_afresh(cli: Cli) -> None:
    fast = {"OVERNIGHT_DEMO_DELAY": "0.01"}
    first = cli("demo", env=fast)
    assert first.returncode == ExitCode.COMPLETED, first.stderr
    assert "offline stand-in model" in first.stdout
    assert "Summary of demo-1" in first.stdout
    second = cli("demo", env=fast)
    assert "Starting demo-2" in second.stdout
    assert cli("runs", "--json").returncode == 0


def test_the_same_commands_on_postgresql_with_two_workers(cli: Cli) -> None:
    from tests.conftest import POSTGRES_URL, fresh_schema, with_options

    with fresh_schema() as schema:
        cli.env["OVERNIGHT_STORE"] = with_options(POSTGRES_URL, schema=schema)
        cli.release()
        for n in range(6):
            queued = cli(
                "run", "cli_flow.py:pipeline", "-i", f'"p{n}"', "--id", f"pg{n}", "--detach"
            )
            assert queued.returncode == 0, queued.stderr
        workers = cli.workers(2)
        try:
            wait_for(lambda: cli.count("publish") == 6, "two workers to finish six runs", 60)
        finally:
            assert cli.stop(workers) == [0, 0]
        listed = cli("runs", "--json")
        assert listed.returncode == 0, listed.stderr
        runs = orjson.loads(listed.stdout)
        assert sorted((r["id"], r["status"]) for r in runs) == [
            (f"pg{n}", "completed") for n in range(6)
        ]
        assert (cli.count("prepare"), cli.count("gate"), cli.count("publish")) == (6, 6, 6)


def test_a_run_that_keeps_killing_its_worker_is_dead_listed_and_retried_by_hand(cli: Cli) -> None:
    cli.release()
    queued = cli("run", "cli_flow.py:pipeline", "-i", '"d"', "--id", "doomed", "--detach")
    assert queued.returncode == 0, queued.stderr
    cli.env["OVERNIGHT_CRASH_AT"] = "after_intent:1"  # every worker dies at its first intent
    for _ in range(3):  # the first dies, the second takes over and dies, the third gives up
        worker = cli.start("worker", "--lease-seconds", "0.5", "--poll-seconds", "0.1",
                           "--max-recoveries", "1")  # fmt: skip
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:  # the third stays up, having nothing left to run
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
    del cli.env["OVERNIGHT_CRASH_AT"]
    dead = cli("runs", "--status", "dead", "--json")
    assert [r["id"] for r in orjson.loads(dead.stdout)] == ["doomed"]
    retried = cli("resume", "doomed")
    assert retried.returncode == ExitCode.COMPLETED, retried.stderr
    assert orjson.loads(retried.stdout) == {"text": "D!", "size": 2}


def test_three_worker_processes_on_postgresql_start_each_tick_once(cli: Cli) -> None:
    from tests.conftest import POSTGRES_URL, fresh_schema, with_options

    with fresh_schema() as schema:
        cli.env["OVERNIGHT_STORE"] = with_options(POSTGRES_URL, schema=schema)
        cli.release()
        added = cli("schedule", "add", "every-second", "* * * * * *", "cli_flow.py:pipeline",
                    "--input", '"tick"', "--catch-up", "all")  # fmt: skip
        assert added.returncode == 0, added.stderr
        workers = cli.workers(3)
        try:
            wait_for(lambda: cli.count("publish") >= 4, "four ticks to run", timeout=30)
            assert cli("schedule", "pause", "every-second").returncode == 0
        finally:
            assert cli.stop(workers) == [0, 0, 0]
        runs = orjson.loads(cli("runs", "--json").stdout)
    ticks = sorted(r["id"] for r in runs)
    assert all(t.startswith("sched:every-second:") for t in ticks)
    assert len(set(ticks)) == len(ticks)  # one run per tick, whichever worker fired it
    finished = [r for r in runs if r["status"] == "completed"]
    # Each run's steps ran once: as many prepare/publish invocations as completed runs (runs
    # requeued by the drain are not completed and may have run prepare only).
    assert cli.count("publish") == len(finished)
    assert cli.count("prepare") <= len(ticks)
