"""`Agent`: a model, instructions, granted tools and a typed output, looping on the journal.

Inside a workflow, every model call is a durable call (its request is committed before it is
sent, its response journaled), and every tool call is a step of the tool's effect class, keyed
by its index in the model's reply. A crash in the middle of a 40-turn conversation therefore
resumes at the turn it stopped: no model is asked again for an answer already recorded, and no
tool call is repeated except as its effect class allows. Outside a workflow, `agent.run(...)`
runs the same loop in a private in-memory engine.

Conversations are journaled as a hash chain: each model call records the digest of its
history, and each link (a blob) holds only the messages added since the previous call, so an
n-turn conversation grows the store by O(n), not O(n²).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar, cast

import orjson

from ._engine import codec
from ._engine.branches import gather
from ._engine.crash import crash_point
from ._engine.decisions import decide
from ._engine.run import Park
from ._engine.scope import CURRENT, Scope, current_scope, validate_name
from ._engine.steps import call_step
from ._engine.waits import wait_signal
from .budget import Budget
from .errors import OvernightError, RunFailedError, StepFailed, UserError
from .gate import GrantedTools, Policy, Principal, ToolCallRequest, authorize
from .models.base import (
    ContextLengthError,
    Message,
    Model,
    ModelError,
    ModelRequest,
    ModelResponse,
    OutputSpec,
    ToolCall,
    Usage,
)
from .models.pricing import Cost, cost
from .models.resilience import FallbackModel
from .models.tokens import request_tokens
from .output import OutputMismatch, OutputType
from .step import RetryPolicy, Step, current_step
from .tool import Tool, ToolArgumentsError

O = TypeVar("O")  # noqa: E741
ZERO = Decimal(0)


MODEL_VARIABLE = "OVERNIGHT_MODEL"
"""Names the model of agents given none, so the provider is chosen by configuration."""


class AgentError(OvernightError):
    """An agent could not produce its output (turn limit, output that never validated)."""


@dataclass(frozen=True, slots=True)
class AgentResult(Generic[O]):
    """What an agent run produced."""

    output: O
    """The final output: text, or a value of the agent's output type."""
    messages: tuple[Message, ...]
    """The whole conversation, instructions first."""
    usage: Usage
    """Tokens used by every model call of the run, as the providers counted them."""
    cost: Cost
    """What the calls cost, priced offline per answering model (unpriced models named)."""
    turns: int
    """How many model turns the run took (re-asks included; fallbacks count once)."""


MODEL_RETRY = RetryPolicy(
    max_attempts=4,
    initial_delay=1.0,
    max_delay=30.0,
    retryable=lambda e: bool(getattr(e, "retryable", False)),
)
"""Retryable model errors (429, 5xx, timeouts) are retried, journaled, honouring Retry-After."""


class Agent(Generic[O]):
    """A model with instructions, granted tools and an output type (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        model: Model | str | None = None,
        instructions: str = "",
        tools: Sequence[Tool[Any]] = (),
        output_type: type[O] | Mapping[str, Any] | None = None,
        max_turns: int = 20,
        output_retries: int = 2,
        max_tokens: int = 1024,
        temperature: float | None = None,
        policy: Policy | None = None,
        model_retry: RetryPolicy = MODEL_RETRY,
        model_timeout: float | None = None,
        context_window: int | None = None,
        max_total_tokens: int | None = None,
        max_cost: Decimal | float | None = None,
        max_seconds: float | None = None,
        capabilities: Sequence[str] = (),
    ) -> None:
        if model is not None and not isinstance(model, str | Model):
            raise UserError(
                f"agent {name!r}: model must be a 'provider:model' string or a Model object, "
                f"got {model!r}"
            )
        self.name = validate_name(name, "agent")
        self.model = model
        """The model as given: a `provider:model` string (resolved on first use), a Model, or
        None: the one named by the OVERNIGHT_MODEL environment variable when first needed."""
        self._resolved: Model | None = model if isinstance(model, Model) else None
        self.instructions = instructions
        self.tools = {t.name: t for t in tools}
        if len(self.tools) != len(tools):
            raise UserError(f"agent {name!r}: two granted tools share a name")
        self.output_type = output_type
        self.max_turns = max_turns
        self.output_retries = output_retries
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.policy: Policy = policy or GrantedTools()
        self.model_retry = model_retry
        self.model_timeout = model_timeout
        self.context_window = context_window
        """Tokens the model accepts (default: the model's own `context_window`, if it says)."""
        self.limits = (
            Budget(
                tokens=max_total_tokens, cost=None if max_cost is None else Decimal(str(max_cost))
            )
            if max_total_tokens is not None or max_cost is not None
            else None
        )
        """Per-run token/cost limits, enforced like a budget private to each run of the agent."""
        self.max_seconds = max_seconds
        """Wall-time limit of one run of the agent, measured on journaled clock readings."""
        self.capabilities = frozenset(capabilities)
        """What the agent is good at, for routers that pick an agent for a task."""
        self._output = OutputType(output_type)
        self._output_spec = (
            OutputSpec(f"{name}_output", self._output.schema)
            if self._output.schema is not None
            else None
        )

    @property
    def resolved_model(self) -> Model:
        """The Model behind `model` (a string is resolved once, when first needed)."""
        if self._resolved is None:
            from .models import resolve_model

            name = self.model if self.model is not None else os.environ.get(MODEL_VARIABLE)
            if not name:
                raise UserError(
                    f"agent {self.name!r} has no model: set the {MODEL_VARIABLE} environment "
                    "variable (e.g. openai:gpt-4o-mini, anthropic:claude-haiku-4-5, or "
                    "openai:llama3.2 with OPENAI_BASE_URL pointing at a local server), or give "
                    "the agent model=..."
                )
            self._resolved = resolve_model(str(name))
        return self._resolved

    # -- running ------------------------------------------------------------------------------

    async def run(self, prompt: str, *, budget: Budget | None = None) -> AgentResult[O]:
        """Run the agent on a prompt: durably inside a workflow, else in a private engine.

        With a `budget`, every model call first reserves its worst case from it (see
        `overnight.budget`); a call that does not fit raises `BudgetExceeded` unsent.
        """
        scope = CURRENT.get()
        if type(scope) is Scope:
            return await self._run(scope, prompt, budget)
        if budget is not None:
            raise UserError("a budget belongs to a run: pass it to agents inside a workflow")
        return await self._run_standalone(prompt)

    async def _run_standalone(self, prompt: str) -> AgentResult[O]:
        from .engine import Engine
        from .workflow import Workflow

        async def standalone(ctx: Any, text: str) -> AgentResult[O]:
            return await self.run(text)

        workflow: Workflow[str, AgentResult[O]] = Workflow(
            standalone, name=f"agent_{self.name}", version="standalone"
        )
        workflow.ref = f"overnight.agent:{self.name}"  # registered, never imported
        async with Engine("memory://", workflows=[workflow]) as engine:
            try:
                return await engine.run(workflow, prompt)
            except RunFailedError as exc:
                # The private engine is an implementation detail: report the agent's failure.
                raise AgentError(f"{exc.error_type}: {exc.message}") from exc

    async def _run(self, parent: Scope, prompt: str, budget: Budget | None) -> AgentResult[O]:
        key, pos = parent.assign(f"agent:{self.name}")
        if parent.run.replaying:
            parent.run.journal.visit(parent.prefix, pos, key)
        scope = parent.child(key + "/", parent.task)
        token = CURRENT.set(scope)
        try:
            return await self._loop(scope, prompt, budget)
        finally:
            CURRENT.reset(token)

    async def _loop(self, scope: Scope, prompt: str, budget: Budget | None) -> AgentResult[O]:
        try:
            self.resolved_model  # noqa: B018 - resolve now: no API key is a person's to fix
        except UserError as exc:
            raise Park(_needs_a_person(self.name, exc)) from None
        budgets = [b for b in (budget, self._private_limits()) if b is not None]
        started = decide(scope, "started", time.time) if self.max_seconds is not None else 0.0
        history = _History(scope)
        messages: list[Message] = []
        if self.instructions:
            messages.append(Message("system", self.instructions))
        messages.append(Message("user", prompt))
        history.add(messages)
        usage = Usage()
        spent = Cost(None)  # nothing priced yet (a sum of unpriced calls stays unknown, not $0)
        specs = tuple(t.spec() for t in self.tools.values())
        reasks = 0
        for calls in range(1, self.max_turns + 1):
            request = self._fit_window(
                ModelRequest(
                    tuple(messages), specs, self._output_spec, self.max_tokens, self.temperature
                )
            )
            if self.max_seconds is not None:
                self._check_clock(scope, started)
            response = await self._budgeted_call(scope, request, history.digest, budgets)
            usage = usage + response.usage
            spent = spent + cost(response.usage, response.model)
            reply = response.message
            messages.append(reply)
            history.add([reply])
            if reply.tool_calls:
                results = await gather(
                    scope, [self._tool_call(call) for call in reply.tool_calls], False
                )
                messages.extend(results)
                history.add(results)
                continue
            try:
                output = cast(O, self._output.validate(reply.content))
            except OutputMismatch as exc:
                if reasks >= self.output_retries:
                    raise AgentError(
                        f"agent {self.name!r}: the output still did not match "
                        f"{self._output.name} after {reasks} re-ask(s): {exc.problems}"
                    ) from None
                reasks += 1
                ask = Message("user", _reask(self._output.name, exc.problems))
                messages.append(ask)
                history.add([ask])
                continue
            return AgentResult(output, tuple(messages), usage, spent, calls)
        raise AgentError(
            f"agent {self.name!r} used all {self.max_turns} model calls (max_turns) without "
            "giving a final answer; raise max_turns or narrow the task"
        )

    def _fit_window(self, request: ModelRequest) -> ModelRequest:
        """Trim the oldest turns so the request (and its reply) fit the model's context window.

        Deterministic (a function of the messages), so a replay trims identically. The system
        instructions and the first user message are kept, and an assistant's tool calls are
        never separated from their results (providers reject orphaned tool messages).
        """
        window = self.context_window or getattr(self.resolved_model, "context_window", None)
        if window is None or request_tokens(request) + request.max_tokens <= window:
            return request
        messages = list(request.messages)
        head = 2 if messages and messages[0].role == "system" else 1
        kept = messages[head:]
        while (
            kept
            and request_tokens(_with(request, messages[:head] + kept)) + (request.max_tokens)
            > window
        ):
            drop = 1
            while drop < len(kept) and kept[drop].role == "tool":
                drop += 1  # the results of a dropped assistant turn go with it
            kept = kept[drop:]
        trimmed = _with(request, messages[:head] + kept)
        if not kept or request_tokens(trimmed) + request.max_tokens > window:
            raise AgentError(
                f"agent {self.name!r}: the instructions, the prompt and max_tokens="
                f"{request.max_tokens} do not fit the model's context window of {window} tokens "
                "even with every earlier turn trimmed; shorten them or use a larger model"
            )
        return trimmed

    # -- model calls --------------------------------------------------------------------------

    def _private_limits(self) -> Budget | None:
        if self.limits is None:
            return None
        return Budget(tokens=self.limits.tokens, cost=self.limits.cost)  # fresh for each run

    def _check_clock(self, scope: Scope, started: float) -> None:
        """Fail the run once its wall time is spent (readings journaled: replays agree)."""
        elapsed = decide(scope, "clock", time.time) - started
        if self.max_seconds is not None and elapsed > self.max_seconds:
            raise AgentError(
                f"agent {self.name!r} ran {elapsed:.1f} s, past its max_seconds="
                f"{self.max_seconds}; nothing more was sent"
            )

    async def _budgeted_call(
        self, scope: Scope, request: ModelRequest, history: str, budgets: list[Budget]
    ) -> ModelResponse:
        if not budgets:
            return await self._call_model(scope, request, history)
        tokens = request_tokens(request) + request.max_tokens
        priced = any(b.cost is not None for b in budgets)
        worst = (tokens, self._worst_cost(request, tokens) if priced else ZERO)
        who = f"agent {self.name!r}'s next model call"
        refused = decide(
            scope,
            "reserve",
            lambda: next((i for i, b in enumerate(budgets) if not b.fits(*worst)), -1),
        )
        if refused >= 0:
            raise budgets[refused].refuse(who, *worst)
        for budget in budgets:
            budget.reserve(*worst)
        try:
            response = await self._call_model(scope, request, history)
        except BaseException:
            for budget in budgets:
                budget.settle(worst, (0, ZERO))
            raise
        usage = response.usage
        spent = cost(usage, response.model).amount or ZERO
        for budget in budgets:
            budget.settle(worst, (usage.input_tokens + usage.output_tokens, spent))
        return response

    def _worst_cost(self, request: ModelRequest, tokens: int) -> Decimal:
        """The most a call could cost: its input estimate and max_tokens, on the dearest model."""
        worst = ZERO
        for model in self._models():
            price = cost(Usage(tokens - request.max_tokens, request.max_tokens), model.name)
            if price.amount is None or price.unpriced:
                raise UserError(
                    f"agent {self.name!r} has a cost budget but model {model.name!r} has no known "
                    "price, so no call could be shown to fit; use a token budget for it"
                )
            worst = max(worst, price.amount)
        return worst

    def _models(self) -> tuple[Model, ...]:
        model = self.resolved_model
        return model.models if isinstance(model, FallbackModel) else (model,)

    async def _call_model(self, scope: Scope, request: ModelRequest, history: str) -> ModelResponse:
        """One durable call per model tried: the primary, then each fallback that is needed."""
        models = self._models()
        failures: list[str] = []
        last: StepFailed | None = None
        for i, model in enumerate(models):
            try:
                return await self._durable_call(
                    scope,
                    "model" if i == 0 else "fallback",
                    model,
                    request,
                    history,
                    last=i == len(models) - 1,
                )
            except StepFailed as exc:
                last = exc
                failures.append(f"{model.name}: {exc.error_type}: {exc.message}")
        name = self.resolved_model.name
        message = f"agent {self.name!r}: no model answered ({'; '.join(failures)})"
        if last is not None and last.error_type == "ContextLengthError":
            raise ContextLengthError(message, model=name)  # reported as what it is
        raise ModelError(message, model=name, retryable=False)

    async def _durable_call(
        self,
        scope: Scope,
        name: str,
        model: Model,
        request: ModelRequest,
        history: str,
        *,
        last: bool,
    ) -> ModelResponse:
        async def send(descriptor: dict[str, Any]) -> ModelResponse:
            started = time.monotonic()
            try:
                response = await model.request(request)
            except ModelError as exc:
                # A wrong key, URL or model name, with no fallback left: park (the request's
                # intent stays in doubt, so after the fix `resume` sends it again, same key)
                # rather than fail a run a person can save.
                final = not exc.retryable or current_step().attempt >= self.model_retry.max_attempts
                if exc.configuration and last and final:
                    raise Park(_needs_a_person(self.name, exc)) from None
                raise
            crash_point("after_model_reply")
            latency = round((time.monotonic() - started) * 1000, 3)
            return dataclasses.replace(response, meta={**response.meta, "latency_ms": latency})

        spec: Step[Any, ModelResponse] = Step(
            send, name=name, effect="keyed", retry=self.model_retry, timeout=self.model_timeout
        )
        descriptor = {
            "model": model.name,
            "history": history,
            "tools": [t.name for t in request.tools],
            "output": request.output.name if request.output else None,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "sent": len(request.messages),  # fewer than the history when the window was trimmed
        }
        response: ModelResponse = await call_step(spec, scope, (descriptor,), {})
        return response

    # -- tool calls ---------------------------------------------------------------------------

    async def _tool_call(self, call: ToolCall) -> Message:
        """One tool call, in its own branch: validate, authorize, execute; a message back."""
        scope = current_scope("a tool call")
        tool = self.tools.get(call.name)
        arguments: dict[str, Any] = {}
        if tool is not None:
            try:
                arguments = tool.validate(call.arguments)
            except ToolArgumentsError as exc:
                return _tool_message(call, str(exc), error=True)
        principal = Principal(self.name, scope.run.run_id, frozenset(self.tools))
        request = ToolCallRequest(call.name, arguments, scope.prefix + f"tool:{call.name}#1")
        verdict = decide(scope, "gate", lambda: _decision(self.policy, principal, request))
        if verdict["verdict"] == "ask":
            answer = await wait_signal(scope, approval_signal(request.key), None)
            allowed = isinstance(answer, dict) and answer.get("allow") is True
            if not allowed:
                reason = answer.get("reason", "") if isinstance(answer, dict) else ""
                text = "a person denied this call" + (f": {reason}" if reason else "")
                return _tool_message(call, text, error=True)
        elif verdict["verdict"] == "deny":
            return _tool_message(call, f"denied: {verdict['reason']}", error=True)
        assert tool is not None  # the gate denies unknown tools
        try:
            result = await call_step(tool.step, scope, (arguments,), {})
        except StepFailed as exc:
            return _tool_message(call, f"{exc.error_type}: {exc.message}", error=True)
        return _tool_message(call, _as_text(result), error=False)


def _with(request: ModelRequest, messages: list[Message]) -> ModelRequest:
    return ModelRequest(
        tuple(messages), request.tools, request.output, request.max_tokens, request.temperature
    )


FIX_THEN_RESUME = "Fix that, then resume the run"
"""Ends the note of a run parked by a model it could not call (the CLI tells it by this)."""


def _needs_a_person(agent: str, exc: Exception) -> str:
    return (
        f"agent {agent!r} cannot call its model: {exc} {FIX_THEN_RESUME} "
        "(`overnight resume RUN`, or Engine.resume): the call is sent again, nothing earlier is."
    )


def approval_signal(call_key: str) -> str:
    """The name of the signal that answers an `ask` for the call journaled under `call_key`.

    Send it with a payload `{"allow": true}` or `{"allow": false, "reason": "..."}`.
    """
    return "approve-" + hashlib.sha256(call_key.encode()).hexdigest()[:24]


def _decision(policy: Policy, principal: Principal, request: ToolCallRequest) -> dict[str, str]:
    decision = authorize(policy, principal, request)
    return {"verdict": decision.verdict, "reason": decision.reason}


def _tool_message(call: ToolCall, content: str, *, error: bool) -> Message:
    return Message("tool", content, tool_call_id=call.id, name=call.name, is_error=error)


def _as_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    return orjson.dumps(codec.encode(result) if not _jsonable(result) else result).decode()


def _jsonable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def _reask(type_name: str, problems: str) -> str:
    return (
        f"Your reply is not a valid {type_name}: {problems}. Reply again with only the "
        "JSON value, matching the required schema exactly."
    )


class _History:
    """The conversation as a hash chain of blobs: each link holds only what was added."""

    def __init__(self, scope: Scope) -> None:
        self.run = scope.run
        self.digest = ""

    def add(self, messages: Sequence[Message]) -> None:
        link = codec.canonical({"prev": self.digest, "add": codec.encode(list(messages))})
        self.digest = self.run.put_blob(link)
