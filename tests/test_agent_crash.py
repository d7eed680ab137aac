"""kill -9 trials through the agent loop: a multi-turn agent on the real `openai` client.

Each trial runs the agent workload (`overnight.testing.agent_crash_workload`): one agent, seven
model calls to a loopback OpenAI-protocol server that lives in this process, eleven tool calls
(three turns call tools in parallel), eight keyed effects applied through the ledger. A worker
dies at a named crash point or a random instant, fresh workers resume the run, and the checks
read counters no killed process could touch: the ledger (each tool invocation and effect) and
the server's own request log (each model request, tagged with the process that sent it).

Hit numbers name places in the conversation. `after_model_reply:n` is the reply to model call n.
`after_tool_effect`: 1 `find_order`; 2-4 turn 2's `reserve_stock` x2 and `quote_shipping` (in
random order); 5 `charge_card`; 6-7 `send_email`/`add_note`; 8 `schedule_pickup`; 9-11 turn 6's
three calls. `after_intent`: 1-2 model calls 1-2, 3-4 the reservations, 5 model call 3, ...
`after_step_return`: 9 is model call 4's `done`, 14 model call 6's.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overnight._engine.crash import AGENT_POINTS
from overnight.testing import CrashAt, JournalSnapshot, Ledger, TrialCheck, TrialResult, parse_kill
from overnight.testing.agent_crash_workload import AGENT, TURNS
from overnight.testing.crash import Incarnation
from overnight.testing.crash.agent import (
    AgentTrial,
    SentRequest,
    agent_reference,
    check_conversation,
    run_agent_trial,
)
from overnight.testing.servers import OpenAIServer

pytestmark = pytest.mark.crash

EFFECTS = 8  # 2 reservations, 1 charge, 2 emails, 2 notes, 1 pickup
TOOL_CALLS = 11


@pytest.fixture(scope="module")
def ledger() -> Iterator[Ledger]:
    with Ledger() as served:
        yield served


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAIServer]:
    served = AGENT.serve()
    try:
        yield served
    finally:
        served.close()


@pytest.fixture(scope="module")
def reference(
    ledger: Ledger, server: OpenAIServer, tmp_path_factory: pytest.TempPathFactory
) -> AgentTrial:
    db = tmp_path_factory.mktemp("reference") / "runs.db"
    result = agent_reference(AGENT, server, db, ledger)
    assert result.trial.output["turns"] == TURNS
    assert result.trial.output["tool_calls"] == TOOL_CALLS
    assert result.conversation.requests == TURNS
    assert len(result.trial.applied_steps) == EFFECTS
    assert result.trial.check.invocations == TOOL_CALLS
    return result


def trial(
    ledger: Ledger,
    server: OpenAIServer,
    reference: AgentTrial,
    tmp_path: Path,
    kills: list[str | None],
    seed: int = 0,
) -> AgentTrial:
    result = run_agent_trial(
        AGENT,
        server,
        tmp_path / "runs.db",
        f"agent-{tmp_path.name}",
        kills,
        ledger=ledger,
        reference=reference,
        seed=seed,
    )
    result.assert_ok()
    return result


# (id, kills per process, expectations): `resent` is how many model requests a later process
# sent again (the one in flight); `doubt` a key in doubt after the first kill; `dedup` the
# least number of keyed effects the ledger deduped.
TARGETED: list[tuple[str, list[str | None], dict[str, Any]]] = [
    ("first-reply", ["after_model_reply:1"], {"resent": 1, "doubt": "model#1"}),
    ("reply-after-parallel", ["after_model_reply:3"], {"resent": 1, "doubt": "model#3"}),
    ("reply-with-3-calls", ["after_model_reply:6"], {"resent": 1, "doubt": "model#6"}),
    ("final-reply", ["after_model_reply:7"], {"resent": 1, "doubt": "model#7"}),
    ("tool-in-parallel-turn", ["after_tool_effect:3"], {"resent": 0}),
    (
        "charge-applied",
        ["after_tool_effect:5"],
        {"resent": 0, "doubt": "charge_card#1", "dedup": 1},
    ),
    ("tool-in-last-parallel", ["after_tool_effect:10"], {"resent": 0}),
    ("intent-before-send", ["after_intent:5"], {"doubt": "model#3"}),
    ("done-not-committed", ["after_step_return:9"], {}),
    ("group-commit", ["in_group_commit:25"], {}),
    ("after-commit", ["after_commit:30"], {}),
    # The last reply's done is committed with the output, in one group: both are lost here.
    ("before-output", ["before_output:1"], {"resent": 1, "doubt": "model#7"}),
    ("reply-then-tool", ["after_model_reply:4", "after_tool_effect:2"], {"dedup": 1}),
]


@pytest.mark.parametrize(
    ("kills", "expect"), [pytest.param(k, e, id=name) for name, k, e in TARGETED]
)
def test_named_crash_point(
    ledger: Ledger,
    server: OpenAIServer,
    reference: AgentTrial,
    tmp_path: Path,
    kills: list[str | None],
    expect: dict[str, Any],
) -> None:
    result = trial(ledger, server, reference, tmp_path, kills)
    planned = [i for i in result.trial.incarnations if i.kill is not None]
    assert [p.returncode for p in planned] == [-signal.SIGKILL] * len(kills), result.describe()
    conversation, check = result.conversation, result.trial.check
    assert check.kills == len(kills)
    assert check.completed
    assert not check.output_mismatch
    assert check.completed_steps_rerun == check.duplicate_effects == check.missing_effects == 0
    assert conversation.resent_committed == conversation.replies_committed_twice == 0
    assert conversation.resent <= check.kills
    assert conversation.requests == TURNS + conversation.resent
    if "resent" in expect:
        assert conversation.resent == expect["resent"], result.describe()
    if "doubt" in expect:
        doubt = result.trial.incarnations[0].snapshot.in_doubt_keys()
        assert any(k.endswith(expect["doubt"]) for k in doubt), result.describe()
    if "dedup" in expect:
        assert check.dedup_hits >= expect["dedup"], result.describe()
    # Each tool effect applied once, in the ledger of this process.
    applied = [a for a in ledger.attempts(result.trial.run_id) if a.applied]
    assert len(applied) == len({a.key for a in applied}) == EFFECTS


def test_every_agent_point_has_a_targeted_trial() -> None:
    covered = set()
    for _, kills, _ in TARGETED:
        for spec in filter(None, kills):
            kill = parse_kill(spec)
            assert isinstance(kill, CrashAt)
            covered.add(kill.point)
    assert covered >= AGENT_POINTS
    assert {"after_intent", "after_step_return", "in_group_commit", "after_commit"} <= covered


@pytest.mark.parametrize("seed", [1, 2])
def test_random_instant_kill(
    ledger: Ledger, server: OpenAIServer, reference: AgentTrial, tmp_path: Path, seed: int
) -> None:
    served = reference.trial.incarnations[0].served or 1.0
    result = trial(ledger, server, reference, tmp_path, [f"random:0-{served:.2f}"], seed=seed)
    assert result.conversation.resent <= result.trial.check.kills


# -- the checks can fail: fabricated logs that a broken engine would leave -----------------------


def _snapshot(done: list[int], in_doubt: list[int]) -> JournalSnapshot:
    entries: list[tuple[int, str, str, dict[str, Any]]] = []
    for turn in sorted(done + in_doubt):
        key = f"agent:clerk#1/model#{turn}"
        entries.append((len(entries), key, "intent", {}))
        if turn in done:
            entries.append((len(entries), key, "done", {}))
    return JournalSnapshot("running", None, None, tuple(entries))


def _fabricated(processes: list[JournalSnapshot], killed: int) -> TrialResult:
    incs = [
        Incarnation(i, f"t@{i}", None, killed=i < killed, snapshot=snap)
        for i, snap in enumerate(processes)
    ]
    return TrialResult("t", "", (), "on_wait", incs, processes[-1], 0.0, TrialCheck())


def _sent(*requests: tuple[int, int]) -> list[SentRequest]:
    return [
        SentRequest(seq, process, turn, f"d{turn}", None)
        for seq, (process, turn) in enumerate(requests, 1)
    ]


def test_a_committed_reply_asked_again_is_caught() -> None:
    # Process 0 committed turns 1-2 and died with turn 3 in doubt; process 1 asks turn 2 again.
    trial_ = _fabricated([_snapshot([1, 2], [3]), _snapshot([1, 2, 3], [])], killed=1)
    sent = _sent((0, 1), (0, 2), (0, 3), (1, 2), (1, 3))
    check = check_conversation(AGENT, trial_, sent, {1: "d1", 2: "d2", 3: "d3"})
    assert check.resent_committed == 1
    assert check.resent_over_kills == 1  # two re-sent after one kill
    assert any("(f) turn 2" in v for v in trial_.check.violations)


def test_the_in_flight_request_is_allowed_once() -> None:
    trial_ = _fabricated([_snapshot([1, 2], [3]), _snapshot([1, 2, 3], [])], killed=1)
    sent = _sent((0, 1), (0, 2), (0, 3), (1, 3))
    check = check_conversation(AGENT, trial_, sent, {1: "d1", 2: "d2", 3: "d3"})
    assert check.resent == 1
    assert trial_.check.violations == []


def test_a_request_sent_without_its_intent_or_differing_is_caught() -> None:
    # Turn 3 was sent by process 0 but its intent was never committed (the barrier broken);
    # process 1's request for it differs from the reference's.
    trial_ = _fabricated([_snapshot([1, 2], []), _snapshot([1, 2, 3], [])], killed=1)
    sent = [*_sent((0, 1), (0, 2), (0, 3)), SentRequest(4, 1, 3, "other", None)]
    check = check_conversation(AGENT, trial_, sent, {1: "d1", 2: "d2", 3: "d3"})
    assert check.resent_not_in_doubt == 1
    assert check.mismatches == 1


def test_a_reply_committed_twice_is_caught() -> None:
    final = _snapshot([1, 2], [])
    twice = JournalSnapshot(
        "completed", None, None, (*final.entries, (9, "agent:clerk#1/model#2", "done", {}))
    )
    trial_ = _fabricated([twice], killed=0)
    check = check_conversation(AGENT, trial_, _sent((0, 1), (0, 2)), {1: "d1", 2: "d2"})
    assert check.replies_committed_twice == 1
