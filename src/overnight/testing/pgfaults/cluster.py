"""Worker subprocesses sharing one PostgreSQL schema, and a reader of that schema from outside.

`Cluster` starts workers (`python -m overnight.testing.pgfaults.worker`) with their stdout and
stderr in files, sends them signals, and kills whatever is still alive when it closes. `Schema`
reads the store's tables directly (runs, committed journal entries) on a connection of its own,
whose `application_name` is not the workers', so terminating the workers' connections spares it.
"""

from __future__ import annotations

import contextlib
import os
import signal as signals
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ...errors import UserError
from ..ledger import Ledger

OBSERVER = "overnight-faults-observer"
"""The `application_name` of the reader's connection."""


def default_pythonpath() -> str:
    """The overnight in use, the working directory, and the caller's PYTHONPATH."""
    package_parent = str(Path(__file__).resolve().parents[3])
    paths = [package_parent, os.getcwd()]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        paths.append(existing)
    return os.pathsep.join(dict.fromkeys(paths))


@dataclass
class WorkerProc:
    """One worker process."""

    tag: str
    proc: subprocess.Popen[bytes]
    out_path: str
    err_path: str
    started: float
    signals: list[str] = field(default_factory=list)
    """Names of the signals the cluster sent it, in order."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def stdout(self) -> str:
        return Path(self.out_path).read_text(errors="replace")

    def stderr(self) -> str:
        return Path(self.err_path).read_text(errors="replace")

    def ready(self) -> bool:
        """True once the worker's engine is open and serving."""
        return "ready" in self.stdout().splitlines()

    def report(self) -> dict[str, Any] | None:
        """The JSON line a worker prints when it exits normally."""
        for line in reversed(self.stdout().splitlines()):
            if line.startswith("{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    data: dict[str, Any] = orjson.loads(line)
                    return data
        return None

    def blocked_in_sleep(self) -> bool:
        """True while its main thread sleeps in a blocking `time.sleep` (not in the event
        loop's poll): read from `/proc/PID/wchan`."""
        try:
            return "nanosleep" in Path(f"/proc/{self.pid}/wchan").read_text()
        except OSError:
            return False


class Cluster:
    """Worker processes on one store URL (a context manager: closing kills the survivors)."""

    def __init__(
        self,
        url: str,
        workdir: str | os.PathLike[str],
        *,
        ledger: Ledger | None = None,
        options: dict[str, Any] | None = None,
        pythonpath: str | None = None,
    ) -> None:
        self.url = url
        self.workdir = os.fspath(workdir)
        self.ledger = ledger
        self.options = dict(options or {})
        self.pythonpath = pythonpath or default_pythonpath()
        self.workers: list[WorkerProc] = []
        self._count = 0

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spawn(
        self,
        tag: str | None = None,
        *,
        url: str | None = None,
        crash_at: str | None = None,
        **options: Any,
    ) -> WorkerProc:
        """Start a worker (options override the cluster's engine options; `url` its store URL,
        e.g. to give its connections an `application_name` of their own; `crash_at` a named
        crash point, `name:n`, where it kills itself with SIGKILL)."""
        self._count += 1
        tag = tag or f"w{self._count}"
        config = {"url": url or self.url, "tag": tag, **self.options, **options}
        env = dict(os.environ)
        env.pop("OVERNIGHT_CRASH_AT", None)
        if crash_at is not None:
            env["OVERNIGHT_CRASH_AT"] = crash_at
        env["PYTHONPATH"] = self.pythonpath
        if self.ledger is not None:
            env.update(self.ledger.env(tag))
        out_path = os.path.join(self.workdir, f"{tag}.out")
        err_path = os.path.join(self.workdir, f"{tag}.err")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "overnight.testing.pgfaults.worker",
                    orjson.dumps(config).decode(),
                ],
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        worker = WorkerProc(tag, proc, out_path, err_path, time.monotonic())
        self.workers.append(worker)
        return worker

    def wait_ready(self, workers: list[WorkerProc], timeout: float = 30.0) -> None:
        """Wait until every worker is serving; raise if one dies or the time runs out."""
        deadline = time.monotonic() + timeout
        pending = list(workers)
        while pending:
            for w in list(pending):
                if w.ready():
                    pending.remove(w)
                elif not w.alive():
                    raise AssertionError(
                        f"worker {w.tag} exited with {w.returncode} before it was ready:\n"
                        + w.stderr()[-3000:]
                    )
            if pending and time.monotonic() > deadline:
                raise AssertionError(
                    f"workers {[w.tag for w in pending]} not ready after {timeout} s"
                )
            if pending:
                time.sleep(0.01)

    def alive(self) -> list[WorkerProc]:
        return [w for w in self.workers if w.alive()]

    def send(self, worker: WorkerProc, sig: signals.Signals) -> None:
        worker.signals.append(sig.name)
        os.kill(worker.pid, sig)

    def kill(self, worker: WorkerProc, timeout: float = 10.0) -> None:
        """SIGKILL, and wait until the process is gone."""
        self.send(worker, signals.SIGKILL)
        worker.proc.wait(timeout=timeout)

    def terminate(self, worker: WorkerProc, timeout: float) -> int:
        """SIGTERM (the worker drains), and wait for its exit status."""
        self.send(worker, signals.SIGTERM)
        return worker.proc.wait(timeout=timeout)

    def stop_all(self, timeout: float = 30.0) -> dict[str, int | None]:
        """SIGTERM every live worker and wait for them; their exit statuses by tag.

        A worker restarted a moment ago may still be starting: it gets its signal once it
        serves (before that, SIGTERM would end it without the drain this tests).
        """
        live = self.alive()
        self.wait_ready(live, timeout=timeout)
        for w in live:
            self.send(w, signals.SIGTERM)
        deadline = time.monotonic() + timeout
        for w in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        return {w.tag: w.returncode for w in live}

    def close(self) -> None:
        """Kill every worker still alive (stopped ones too) and reap them."""
        for w in self.workers:
            if w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signals.SIGKILL)
        for w in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(timeout=10)


class Schema:
    """Direct reads of a store's tables (committed data only), from outside the workers."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg

            from ...store.postgres_config import parse_url
        except ImportError as exc:
            raise UserError(f"the PostgreSQL fault tests need psycopg: {exc}") from None
        config = parse_url(url)
        self.schema = config.schema
        self.app_name = str(config.connect_kwargs.get("application_name", ""))
        """The workers' `application_name` (unless the URL sets one)."""
        self.conn = psycopg.connect(
            config.conninfo,
            autocommit=True,
            application_name=OBSERVER,
            options=f"-c search_path={config.schema}",
        )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Schema:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.conn.execute(query, params or None).fetchall()

    def counts(self) -> dict[str, int]:
        """Runs by status."""
        return {s: int(n) for s, n in self.rows("SELECT status, COUNT(*) FROM runs GROUP BY 1")}

    def owned(self, owner: str) -> list[str]:
        """Ids of the runs whose lease `owner` holds (status running)."""
        return [
            r[0]
            for r in self.rows(
                "SELECT id FROM runs WHERE owner = %s AND status = 'running' ORDER BY id", owner
            )
        ]

    def done_keys(self) -> set[tuple[str, str]]:
        """`(run id, step key)` of every committed `done` entry."""
        return {
            (run_id, key)
            for run_id, key in self.rows("SELECT run_id, key FROM entries WHERE kind = 'done'")
        }

    def run(self, run_id: str) -> dict[str, Any] | None:
        found = self.rows(
            "SELECT status, owner, epoch, attempts, recoveries, result, due_at FROM runs "
            "WHERE id = %s",
            run_id,
        )
        if not found:
            return None
        status, owner, epoch, attempts, recoveries, result, due_at = found[0]
        return {
            "status": status,
            "owner": owner,
            "epoch": epoch,
            "attempts": attempts,
            "recoveries": recoveries,
            "result": None if result is None else bytes(result),
            "due_at": due_at,
        }

    def entries(self, run_id: str) -> list[tuple[int, str, str, bytes]]:
        """The run's committed journal: `(seq, key, kind, data)` in order."""
        return [
            (int(seq), key, kind, bytes(data))
            for seq, key, kind, data in self.rows(
                "SELECT seq, key, kind, data FROM entries WHERE run_id = %s ORDER BY seq", run_id
            )
        ]

    def results(self) -> dict[str, tuple[str, bytes | None]]:
        """Every run's status and encoded result, by id."""
        return {
            run_id: (status, None if result is None else bytes(result))
            for run_id, status, result in self.rows("SELECT id, status, result FROM runs")
        }

    def failures(self) -> dict[tuple[str, str], int]:
        """Journaled failed attempts, by `(run id, step key)`."""
        return {
            (run_id, key): int(n)
            for run_id, key, n in self.rows(
                "SELECT run_id, key, COUNT(*) FROM entries WHERE kind = 'failed' GROUP BY 1, 2"
            )
        }

    def terminate_backends(self) -> int:
        """`pg_terminate_backend` on every connection of the workers (by application_name)."""
        killed = self.rows(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            self.app_name,
        )
        return sum(1 for (ok,) in killed if ok)

    def backends(self) -> int:
        """How many connections the workers have open."""
        rows = self.rows(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = %s", self.app_name
        )
        return int(rows[0][0])
