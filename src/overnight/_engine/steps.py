"""Executing a step call: replay from the journal, or run it under its effect class and retries.

Journal shape of one step key (first entry carries `pos` and `in`, the canonical input):
- pure:      [failed{retry_at}]* done{out}
- non-pure:  (intent{attempt} failed{retry_at})* intent{attempt} done{out}
A final `failed{final: true}` ends a step that gave up. An `intent` with nothing after it is
in doubt (the process died during the body); `control{action}` entries are a person's answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SerializationError, StepFailed
from . import codec
from .crash import crash_point
from .journal import Divergence, KeyState
from .run import Park, RunState
from .scope import CURRENT, Scope
from .waits import wait_until

if TYPE_CHECKING:
    from ..step import Step


class StepCall:
    """A step call whose key is assigned; awaiting it executes or replays the step.

    Not a coroutine, so a call that is never awaited (a race's loser, calls made before the
    run parked) leaves no "never awaited" warning behind.
    """

    __slots__ = ("args",)

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __await__(self) -> Generator[Any, None, Any]:
        run, spec, key, pos, canonical_input, state, args, kwargs = self.args
        if state is None and spec.effect == "pure" and spec.timeout is None and run.stop is None:
            # The hot path, without the extra coroutine of _execute.
            return _first_pure(run, spec, key, pos, canonical_input, args, kwargs).__await__()
        return _execute(*self.args).__await__()


def call_step(
    spec: Step[Any, Any], scope: Scope, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> StepCall:
    """Assign the call's key now (call order, not completion order); awaiting runs it."""
    run = scope.run
    key, pos = scope.assign(spec.name)
    run.steps += 1
    if run.max_steps is not None and run.steps > run.max_steps:
        run.over_budget()
    canonical_input = _canonical_input(key, args, kwargs)
    state = run.journal.visit(scope.prefix, pos, key) if run.replaying else None
    return StepCall(run, spec, key, pos, canonical_input, state, args, kwargs)


def _canonical_input(key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Canonical bytes of a call's arguments (plain values skip the codec: hot path)."""
    encoded: list[Any] = []
    try:
        for i, arg in enumerate(args):
            cls = type(arg)
            plain = (cls is str and arg.isascii()) or (cls is int and -(2**63) <= arg < 2**63)
            if plain or arg is None or cls is bool:
                encoded.append(arg)
            else:
                encoded.append(codec.encode(arg, f"step {key!r} argument {i + 1}"))
        named = codec.encode(kwargs, f"step {key!r} arguments") if kwargs else {}
        return codec.canonical([encoded, named])
    except SerializationError as exc:
        raise SerializationError(
            f"{exc}. Pass a step only values the journal can hold; build clients and "
            "connections inside the step"
        ) from None


@dataclass(slots=True)
class _Replay:
    """What the journal says about a step key."""

    done: Any = None
    has_done: bool = False
    final: dict[str, Any] | None = None
    invocations: int = 0
    failures: int = 0
    retry_at: float | None = None
    in_doubt: bool = False


def _read(state: KeyState) -> _Replay:
    r = _Replay()
    for kind, data in state.entries:
        if kind == "done":
            r.done, r.has_done = data["out"], True
            return r
        if kind == "intent":
            r.invocations += 1
            r.in_doubt = True
        elif kind == "failed":
            r.failures += 1
            r.in_doubt = False
            if data.get("final"):
                r.final = data
                return r
            r.retry_at = data.get("retry_at")
        elif kind == "control":
            if data["action"] == "resolve":
                r.done, r.has_done = data["out"], True
                return r
            r.in_doubt = False  # "retry": a person said it did not take effect
    # Pure steps journal no intents: each of their invocations shows as a failed attempt.
    r.invocations = max(r.invocations, r.failures)
    return r


def _check_input(state: KeyState, key: str, canonical_input: bytes) -> None:
    """Park if the call's input differs from the recorded one.

    A step's fingerprint is its canonical input (codec version 1): recorded inline when small,
    as the SHA-256 of a blob when large. Comparing it is exact, and shows the difference.
    """
    recorded = state.entries[0][1].get("in")
    if not state.strict or recorded is None:
        return
    if isinstance(recorded, dict) and "$blob" in recorded:
        if hashlib.sha256(canonical_input).hexdigest() == recorded["$blob"]:
            return
        before = "a large value"
    else:
        before = codec.canonical(recorded).decode()
        if before.encode() == canonical_input:
            return
    raise Divergence(
        f"step {key!r} is called with a different input than recorded: "
        f"recorded {_clip(before)}, now {_clip(canonical_input.decode())}"
    )


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


async def _execute(
    run: RunState,
    spec: Step[Any, Any],
    key: str,
    pos: int,
    canonical_input: bytes,
    state: KeyState | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    if run.stop is not None:
        raise run.stop()
    if state is None:
        header = {"pos": pos, "in": run.value_field(canonical_input)}
        return await _attempts(run, spec, key, header, _Replay(), args, kwargs)
    _check_input(state, key, canonical_input)
    entries = state.entries
    if len(entries) == 1 and entries[0][0] == "done":  # replay's common case, kept short
        out = entries[0][1]["out"]
        if type(out) is not dict or "$blob" not in out:
            return codec.decode(out)
    replay = _read(state)
    if replay.has_done:
        return await run.value(replay.done)
    if replay.final is not None:
        err = replay.final["error"]
        raise StepFailed(key, err["type"], err["message"], replay.failures)
    if replay.in_doubt:
        found = await _resolve_in_doubt(run, spec, key, replay, args, kwargs)
        if found is not None:
            return found[0]
    return await _attempts(run, spec, key, {}, replay, args, kwargs)


async def _first_pure(
    run: RunState,
    spec: Step[Any, Any],
    key: str,
    pos: int,
    canonical_input: bytes,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """The hot path: a pure step without timeout, called for the first time."""
    fields = {"pos": pos, "in": run.value_field(canonical_input)}
    token = CURRENT.set((run.run_id, key, 1))
    failure: Exception | None = None
    try:
        result = await spec.fn(*args, **kwargs)
    except Exception as exc:
        failure = exc
    finally:
        CURRENT.reset(token)
    if failure is not None:
        retry_at = _journal_failure(run, spec, key, fields, 1, failure)
        await run.commit()  # a crash during the backoff resumes the backoff
        replay = _Replay(invocations=1, failures=1, retry_at=retry_at)
        return await _attempts(run, spec, key, {}, replay, args, kwargs)
    fields["out"] = run.value_field(_encode_result(run, key, fields, 1, result))
    run.write(key, "done", fields)
    crash_point("after_step_return")
    if run.strict:
        await run.commit()
    return result


def _journal_failure(
    run: RunState,
    spec: Step[Any, Any],
    key: str,
    fields: dict[str, Any],
    failures: int,
    exc: Exception,
) -> float:
    """Journal a failed attempt; return when to retry, or raise StepFailed if it gave up."""
    fields["attempt"] = failures
    fields["error"] = error = {"type": type(exc).__name__, "message": str(exc)}
    delay = spec.retry.next_delay(failures, exc)
    if delay is None:
        fields["final"] = True
        run.write(key, "failed", fields)
        raise StepFailed(key, error["type"], error["message"], failures) from exc
    fields["retry_at"] = retry_at = time.time() + delay
    run.write(key, "failed", fields)
    return retry_at


def _encode_result(
    run: RunState, key: str, fields: dict[str, Any], attempt: int, result: Any
) -> bytes:
    """The result's journal encoding; an unserialisable result fails the step, at the step."""
    try:
        return codec.dumps(result)
    except SerializationError as exc:
        message = f"step {key!r} returned a value the journal cannot hold: {exc}"
        fields["attempt"] = attempt
        fields["error"] = {"type": "SerializationError", "message": message}
        fields["final"] = True
        run.write(key, "failed", fields)
        raise StepFailed(key, "SerializationError", message, attempt) from exc


async def _attempts(
    run: RunState,
    spec: Step[Any, Any],
    key: str,
    fields: dict[str, Any],
    replay: _Replay,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Run the step's body until it succeeds or gives up, journaling every attempt.

    `fields` starts with the key's header (pos, in) when nothing is journaled under the key
    yet; the first entry written takes it.
    """
    failures, invocations, retry_at = replay.failures, replay.invocations, replay.retry_at
    pure = spec.effect == "pure"
    while True:
        if retry_at is not None:
            await wait_until(run, retry_at)
            retry_at = None
            run.check_stop()
        invocations += 1
        if not pure:
            fields["attempt"] = invocations
            fields["ref"] = spec.ref
            run.write(key, "intent", fields)
            fields = {}
            await run.commit()  # barrier: the intent is durable before the effect starts
            crash_point("after_intent")
        token = CURRENT.set((run.run_id, key, invocations))
        try:
            if spec.timeout is None:
                result = await spec.fn(*args, **kwargs)
            else:
                async with asyncio.timeout(spec.timeout):
                    result = await spec.fn(*args, **kwargs)
        except Exception as exc:
            failures += 1
            retry_at = _journal_failure(run, spec, key, fields, failures, exc)
            fields = {}
            await run.commit()  # a crash during the backoff resumes the backoff
            continue
        finally:
            CURRENT.reset(token)
        if not pure:
            crash_point("after_effect")
        fields["out"] = run.value_field(_encode_result(run, key, fields, failures + 1, result))
        run.write(key, "done", fields)
        crash_point("after_step_return")
        if run.strict:
            await run.commit()
        return result


async def _resolve_in_doubt(
    run: RunState,
    spec: Step[Any, Any],
    key: str,
    replay: _Replay,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[Any] | None:
    """A previous process died inside this step's body. Decide by effect class.

    Returns `(result,)` when the lookup found the effect; None to run the step again.
    """
    if spec.effect in ("pure", "keyed"):
        return None
    idempotency_key = f"{run.run_id}/{key}"
    resolve_hint = (
        f"Check whether it took effect, then call resolve_step({run.run_id!r}, {key!r}, "
        "result=...) if it did, or resolve_step(..., retry=True) if it did not"
    )
    if spec.effect == "reconcilable" and spec.lookup_fn is not None:
        from ..step import Found, NotFound, Unknown

        token = CURRENT.set((run.run_id, key, replay.invocations))
        try:
            answer = await spec.lookup_fn(idempotency_key, *args, **kwargs)
        finally:
            CURRENT.reset(token)
        if isinstance(answer, Found):
            raw = codec.dumps(answer.result)
            run.write(key, "done", {"out": run.value_field(raw), "reconciled": True})
            return (answer.result,)
        if isinstance(answer, NotFound):
            return None
        reason = answer.reason if isinstance(answer, Unknown) else f"lookup returned {answer!r}"
        raise Park(
            f"step {key!r} (reconcilable) was interrupted and its lookup cannot tell whether it "
            f"took effect{': ' + reason if reason else ''}. {resolve_hint}"
        )
    raise Park(
        f"step {key!r} ({spec.effect}) was interrupted after its intent was journaled: it may "
        f"or may not have taken effect, so it is not run again blindly. {resolve_hint}"
    )
