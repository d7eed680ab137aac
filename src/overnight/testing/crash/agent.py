"""Crash trials of an agent: the kernel's trials, plus checks against the model server's own log.

An `AgentWorkload` is a `Workload` whose workflow runs an agent on a model served by a loopback
`OpenAIServer` in the test process, which answers with the workload's `script` and logs every
request (its body, and the worker's ledger tag in a header). The kernel's checks
(`overnight.testing.crash.checks`) still count the tools, which report to the ledger; the
server's log adds the model calls, which nothing in the killed processes could count:

(f) no request whose reply was committed when a process died is sent by a later process
    (requests are told apart by their position in the conversation, the `turn`);
(g) a later process sends again at most one request per kill: the one in flight, whose intent
    was committed (the barrier) and whose reply was not;
(h) no process sends the same request twice;
(i) every request is byte for byte the uninterrupted run's request at that turn (the resumed
    conversation is the same conversation), and the script could answer it;
(j) no model reply is committed twice (one `done` per model call key), and the run made as many
    model calls as the reference.

A killed worker's in-flight request reaches the server's log within milliseconds of its death,
long before the next worker has started, so the log is complete when a trial is checked.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..._engine.crash import AGENT_POINTS, KERNEL_POINTS
from ..ledger import Ledger
from ..servers import OpenAIServer
from ..servers.record import RecordedRequest
from ..servers.replies import Reply
from .checks import TrialResult
from .kills import Kill
from .trial import run_trial, uninterrupted
from .workload import Workload

COMPLETIONS = "/v1/chat/completions"
AGENT_CAMPAIGN_POINTS = tuple(sorted(KERNEL_POINTS | AGENT_POINTS))
"""What an agent campaign calibrates and kills (points the agent never hits get no trials)."""


@dataclass(frozen=True)
class AgentWorkload:
    """A `Workload` running an agent, and what the checks need to read the server's log."""

    workload: Workload
    script: Callable[[RecordedRequest], Reply]
    """The server's answer to each request, decided from the request alone."""
    turn_of: Callable[[Any], int]
    """A request body's position in the conversation (1 for the first model call)."""
    model_key: str
    """The journal key of the model call at a turn, with `{turn}` in it."""
    tag_header: str
    """The request header carrying the sending worker's ledger tag (`<run id>@<process>`)."""

    def serve(self) -> OpenAIServer:
        """A started loopback server answering with the script (close it when done)."""
        return OpenAIServer(handler=self.script).start()

    def env(self, server: OpenAIServer) -> dict[str, str]:
        """What the workers need to reach `server`."""
        return {"OPENAI_BASE_URL": server.base_url}


@dataclass(frozen=True)
class SentRequest:
    """A model request of one run, as the server logged it."""

    seq: int
    process: int
    """The index of the worker process that sent it (from its tag header)."""
    turn: int
    digest: str
    """sha256 of the canonical JSON body: equal bodies, equal digests."""
    script_error: str | None


def sent_requests(agent: AgentWorkload, server: OpenAIServer, run_id: str) -> list[SentRequest]:
    """The model requests the workers of `run_id` sent, in arrival order."""
    prefix = f"{run_id}@"
    sent = []
    for r in server.requests(COMPLETIONS):
        tag = r.headers.get(agent.tag_header, "")
        if not tag.startswith(prefix):
            continue
        body = orjson.dumps(r.body, option=orjson.OPT_SORT_KEYS)
        sent.append(
            SentRequest(
                r.seq,
                int(tag[len(prefix) :]),
                agent.turn_of(r.body),
                hashlib.sha256(body).hexdigest(),
                r.script_error,
            )
        )
    return sent


@dataclass
class ConversationCheck:
    """What `check_conversation` found. Every count but the informative ones should be 0."""

    requests: int = 0
    """Model requests sent, over all processes (informative)."""
    resent: int = 0
    """Requests sent again by a process after a kill: the one in flight (allowed, informative)."""
    resent_committed: int = 0
    """(f) requests sent again although their reply was committed before."""
    resent_over_kills: int = 0
    """(g) processes that sent again more than one request, or sent again with no kill before."""
    resent_not_in_doubt: int = 0
    """(g) requests sent again whose intent was not committed (the barrier was not kept)."""
    sent_twice_in_process: int = 0
    """(h) requests one process sent twice."""
    mismatches: int = 0
    """(i) requests that differ from the reference run's at the same turn."""
    script_errors: int = 0
    """(i) requests the script could not answer."""
    replies_committed_twice: int = 0
    """(j) model calls with more than one committed reply."""
    turns_mismatch: bool = False
    """(j) the run committed a different number of model replies than the reference."""
    log: list[SentRequest] = field(default_factory=list)


def check_conversation(
    agent: AgentWorkload,
    trial: TrialResult,
    sent: Sequence[SentRequest],
    reference: Mapping[int, str] | None = None,
) -> ConversationCheck:
    """Check (f)-(j) (see the module docstring); violations go to `trial.check.violations`.

    `reference` maps each turn of the uninterrupted run to its request's digest.
    """
    c = ConversationCheck(log=list(sent))
    v = trial.check.violations
    incs = trial.incarnations
    first_sent: dict[int, int] = {}
    sent_by: set[tuple[int, int]] = set()
    resent_by: Counter[int] = Counter()
    for r in sorted(sent, key=lambda s: s.seq):
        c.requests += 1
        key = agent.model_key.format(turn=r.turn)
        where = f"turn {r.turn} ({key!r}, request #{r.seq}) by process {r.process}"
        if r.script_error is not None:
            c.script_errors += 1
            v.append(f"(i) the script could not answer {where}: {r.script_error}")
        if reference is not None and reference.get(r.turn) != r.digest:
            c.mismatches += 1
            v.append(f"(i) {where} differs from the uninterrupted run's request at that turn")
        before = first_sent.setdefault(r.turn, r.process)
        if (r.process, r.turn) in sent_by:
            c.sent_twice_in_process += 1
            v.append(f"(h) {where} was sent more than once by that process")
        sent_by.add((r.process, r.turn))
        previous = incs[r.process - 1] if 0 < r.process <= len(incs) else None
        if previous is not None and key in previous.snapshot.done_keys():
            c.resent_committed += 1
            v.append(f"(f) {where}: its reply was committed before process {r.process - 1} ended")
        if before < r.process:
            c.resent += 1
            resent_by[r.process] += 1
            if previous is not None and key not in previous.snapshot.in_doubt_keys():
                c.resent_not_in_doubt += 1
                v.append(f"(g) {where} was sent again but had no committed intent")
    for process, count in sorted(resent_by.items()):
        killed = 0 < process <= len(incs) and incs[process - 1].killed
        if count > 1 or not killed:
            c.resent_over_kills += 1
            v.append(
                f"(g) process {process} sent {count} request(s) again; at most the one in "
                f"flight at a kill may be (process {process - 1} killed: {killed})"
            )
    dones = Counter(
        key for _, key, kind, _ in trial.final.entries if kind == "done" and _is_model(agent, key)
    )
    for key, count in sorted(dones.items()):
        if count > 1:
            c.replies_committed_twice += 1
            v.append(f"(j) model call {key!r} has {count} committed replies")
    if reference is not None and trial.final.status == "completed" and len(dones) != len(reference):
        c.turns_mismatch = True
        v.append(
            f"(j) {len(dones)} model replies committed; the reference run has {len(reference)}"
        )
    return c


def _is_model(agent: AgentWorkload, key: str) -> bool:
    head, _, tail = agent.model_key.partition("{turn}")
    return key.startswith(head) and key.endswith(tail) and key[len(head) :].isdigit()


def reference_turns(sent: Sequence[SentRequest]) -> dict[int, str]:
    """Turn -> request digest of an uninterrupted run (each turn must be sent exactly once)."""
    turns = Counter(s.turn for s in sent)
    repeated = sorted(t for t, n in turns.items() if n > 1)
    if repeated:
        raise AssertionError(f"the uninterrupted run sent turns {repeated} more than once")
    return {s.turn: s.digest for s in sent}


@dataclass
class AgentTrial:
    """One agent trial: the kernel's `TrialResult` and the conversation's check."""

    trial: TrialResult
    conversation: ConversationCheck

    @property
    def ok(self) -> bool:
        return self.trial.ok

    def describe(self) -> str:
        """The kernel's description, then the server's log of the run."""
        lines = [self.trial.describe(), "model requests (seq process turn digest):"]
        lines += [
            f"  #{r.seq} p{r.process} turn {r.turn} {r.digest[:12]}"
            + (f" script error: {r.script_error}" if r.script_error else "")
            for r in self.conversation.log
        ]
        return "\n".join(lines)

    def assert_ok(self) -> None:
        if not self.ok:
            raise AssertionError(self.describe())


def run_agent_trial(
    agent: AgentWorkload,
    server: OpenAIServer,
    db_path: str | os.PathLike[str],
    run_id: str,
    kill: str | Kill | Sequence[str | Kill | None] | None = None,
    *,
    ledger: Ledger,
    reference: AgentTrial | None = None,
    seed: int | None = None,
) -> AgentTrial:
    """`run_trial` with the server's address in the workers' environment, then (f)-(j)."""
    trial = run_trial(
        agent.workload,
        db_path,
        run_id,
        kill,
        ledger=ledger,
        reference=None if reference is None else reference.trial,
        seed=seed,
        env=agent.env(server),
    )
    turns = None if reference is None else reference_turns(reference.conversation.log)
    sent = sent_requests(agent, server, run_id)
    return AgentTrial(trial, check_conversation(agent, trial, sent, turns))


def agent_reference(
    agent: AgentWorkload, server: OpenAIServer, db_path: str | os.PathLike[str], ledger: Ledger
) -> AgentTrial:
    """The uninterrupted run every trial is compared with (raises if it failed)."""
    trial = uninterrupted(
        agent.workload, db_path, "reference", ledger=ledger, env=agent.env(server)
    )
    result = AgentTrial(
        trial, check_conversation(agent, trial, sent_requests(agent, server, "reference"))
    )
    reference_turns(result.conversation.log)
    result.assert_ok()
    return result
