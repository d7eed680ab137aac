"""Agents on the journal: tool calls, the gate, typed output with re-ask, replay, storage."""

from __future__ import annotations

import asyncio
import json
import socket
from decimal import Decimal
from typing import Annotated, Any

import pydantic
import pytest

from overnight import (
    BudgetExceeded,
    Context,
    Engine,
    RetryPolicy,
    RunFailedError,
    RunParkedError,
    UserError,
    workflow,
)
from overnight.agent import Agent, AgentError, AgentResult, approval_signal
from overnight.budget import Budget
from overnight.gate import AskFor
from overnight.models import ContextLengthError, Message, ModelRequest, ToolCall
from overnight.models.openai import OpenAIModel
from overnight.store import Store
from overnight.testing.models import FunctionModel, ScriptedModel
from overnight.testing.servers import OpenAIServer
from overnight.tool import tool
from overnight.transcript import model_calls

from .helpers import until_status

INVOKED: list[str] = []


@tool(effect="pure")
def add(a: int, b: int) -> int:
    """Add two numbers."""
    INVOKED.append(f"add({a},{b})")
    return a + b


@tool(effect="keyed")
async def save(note: Annotated[str, pydantic.Field(max_length=20)], idempotency_key: str) -> str:
    """Save a short note."""
    INVOKED.append(f"save({note},{idempotency_key})")
    return "saved"


@tool(effect="pure")
def explode() -> str:
    """Always fails."""
    raise RuntimeError("the tool broke")


@tool(effect="keyed", credentials={"api_key": "OVERNIGHT_TEST_SECRET"})
def secret_lookup(query: str, api_key: str) -> str:
    """Look something up with a credential."""
    INVOKED.append(f"lookup({query})")
    return f"found {query} with a key of {len(api_key)} characters"


class Verdict(pydantic.BaseModel):
    label: str
    score: int


def call(i: int, name: str, **arguments: Any) -> ToolCall:
    return ToolCall(f"call_{i}", name, json.dumps(arguments))


async def test_text_answer_standalone() -> None:
    model = ScriptedModel(["hello there"])
    result = await Agent("greeter", model=model, instructions="Be brief.").run("hi")
    assert result.output == "hello there"
    assert [m.role for m in result.messages] == ["system", "user", "assistant"]
    assert result.turns == 1
    assert result.usage.input_tokens > 0


async def test_parallel_tool_calls_run_and_feed_back_in_order() -> None:
    INVOKED.clear()
    model = ScriptedModel([[call(0, "add", a=1, b=2), call(1, "add", a=3, b=4)], "3 and 7"])
    result = await Agent("calc", model=model, tools=[add]).run("add things")
    assert result.output == "3 and 7"
    tool_messages = [m for m in result.messages if m.role == "tool"]
    assert [(m.tool_call_id, m.content, m.is_error) for m in tool_messages] == [
        ("call_0", "3", False),
        ("call_1", "7", False),
    ]
    assert sorted(INVOKED) == ["add(1,2)", "add(3,4)"]
    # The second request carried both results.
    assert [m.role for m in model.requests[1].messages] == ["user", "assistant", "tool", "tool"]


async def test_tool_specs_come_from_signatures() -> None:
    spec = save.spec()
    assert spec.description == "Save a short note."
    assert spec.parameters["properties"]["note"]["maxLength"] == 20
    assert "idempotency_key" not in spec.parameters["properties"]
    assert spec.parameters["additionalProperties"] is False
    assert "api_key" not in secret_lookup.spec().parameters["properties"]


async def test_invalid_arguments_and_tool_errors_go_back_to_the_model() -> None:
    INVOKED.clear()
    model = ScriptedModel(
        [
            [call(0, "save", note="x" * 30), call(1, "save", note="ok", extra=1)],
            [call(2, "explode")],
            [call(3, "save", note="fine")],
            "done",
        ]
    )
    result = await Agent("notes", model=model, tools=[save, explode]).run("save")
    errors = [m.content for m in result.messages if m.role == "tool" and m.is_error]
    assert "note: String should have at most 20 characters" in errors[0]
    assert "extra: Extra inputs are not permitted" in errors[1]
    assert errors[2] == "RuntimeError: the tool broke"
    assert len(INVOKED) == 1  # only the valid call ran; its key ends with its journal key
    assert INVOKED[0].startswith("save(fine,")
    assert INVOKED[0].endswith("/agent:notes#1/gather#3/0/tool:save#1)")


async def test_ungranted_tool_is_denied_and_told() -> None:
    model = ScriptedModel([[call(0, "add", a=1, b=1)], "ok"])
    result = await Agent("no_tools", model=model).run("try")
    denial = next(m for m in result.messages if m.role == "tool")
    assert denial.is_error
    assert "denied: tool 'add' is not granted to agent 'no_tools'" in denial.content


async def test_typed_output_with_a_bounded_reask() -> None:
    model = ScriptedModel(['{"label": "spam"}', {"label": "spam", "score": 3}])
    agent: Agent[Verdict] = Agent("judge", model=model, output_type=Verdict)
    result = await agent.run("classify")
    assert result.output == Verdict(label="spam", score=3)
    assert model.requests[0].output is not None
    assert model.requests[0].output.schema["required"] == ["label", "score"]
    reask = model.requests[1].messages[-1]
    assert reask.role == "user"
    assert "score: Field required" in reask.content

    never = ScriptedModel(["nope", "still no", "no"])
    with pytest.raises(Exception, match="did not match Verdict after 2 re-ask"):
        await Agent("judge2", model=never, output_type=Verdict, output_retries=2).run("x")


VERDICT_SCHEMA = {
    "title": "Verdict",
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}, "score": {"type": "integer"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}


async def test_output_given_as_a_json_schema_is_sent_and_validated_with_a_reask() -> None:
    model = ScriptedModel(['{"label": "eggs", "score": 1}', {"label": "ham", "score": 2}])
    result = await Agent("schema_judge", model=model, output_type=VERDICT_SCHEMA).run("classify")
    assert result.output == {"label": "ham", "score": 2}
    assert model.requests[0].output is not None
    assert model.requests[0].output.schema == VERDICT_SCHEMA
    reask = model.requests[1].messages[-1].content
    assert "label: 'eggs' is not one of ['spam', 'ham']" in reask

    never = ScriptedModel(["not json", "[]", "{}"])
    with pytest.raises(AgentError, match="did not match Verdict after 2 re-ask"):
        await Agent("schema_judge2", model=never, output_type=VERDICT_SCHEMA).run("x")


def test_an_invalid_json_schema_is_refused_when_the_agent_is_defined() -> None:
    with pytest.raises(UserError, match="output JSON Schema is not valid at properties/n/type"):
        Agent("bad", model=ScriptedModel([]), output_type={"properties": {"n": {"type": 5}}})


async def test_turn_limit() -> None:
    model = FunctionModel(lambda request: call(len(request.messages), "add", a=1, b=1))
    with pytest.raises(Exception, match="used all 3 model calls"):
        await Agent("loops", model=model, tools=[add], max_turns=3).run("go")


async def test_credentials_are_injected_and_never_journaled_or_prompted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OVERNIGHT_TEST_SECRET", "s3cr3t-value")
    model = ScriptedModel([[call(0, "secret_lookup", query="cats")], "ok"])
    agent = Agent("spy", model=model, tools=[secret_lookup])

    @workflow
    async def with_secret(ctx: Context) -> str:
        return (await agent.run("find cats")).output

    async with Engine("memory://", workflows=[with_secret]) as engine:
        assert await engine.run(with_secret, run_id="sec") == "ok"
        journal = b"".join(e.data for e in await engine.journal("sec"))
        blobs = b"".join(engine.store._blobs.values())  # type: ignore[attr-defined]
    assert b"s3cr3t" not in journal + blobs
    assert all("s3cr3t" not in repr(r) for r in model.requests)
    assert "12 characters" in model.requests[1].messages[-1].content


async def test_ask_policy_waits_for_a_person_bound_to_the_call(store: Store) -> None:
    INVOKED.clear()
    model = ScriptedModel([[call(0, "save", note="hi"), call(1, "save", note="bye")], "done"])
    agent = Agent("careful", model=model, tools=[save], policy=AskFor("save"))

    @workflow
    async def careful(ctx: Context) -> AgentResult[str]:
        return await agent.run("save both")

    async with Engine(store, workflows=[careful], poll_seconds=0.02) as engine:
        handle = await engine.start(careful, run_id="ask")
        await until_status(engine, "ask", "waiting")
        assert INVOKED == []
        prefix = "agent:careful#1/gather#1"
        await engine.signal("ask", approval_signal(f"{prefix}/0/tool:save#1"), {"allow": True})
        await engine.signal(
            "ask", approval_signal(f"{prefix}/1/tool:save#1"), {"allow": False, "reason": "no"}
        )
        result = await handle.result(timeout=5)
    assert [m.content for m in result.messages if m.role == "tool"] == [
        "saved",
        "a person denied this call: no",
    ]
    assert len(INVOKED) == 1


async def test_a_resumed_agent_asks_no_model_again_and_repeats_no_tool(store: Store) -> None:
    INVOKED.clear()
    model = ScriptedModel([[call(0, "add", a=2, b=2)], [call(1, "save", note="four")], "4"])
    agent = Agent("durable", model=model, tools=[add, save])

    @workflow
    async def then_waits(ctx: Context) -> str:
        answer = (await agent.run("what is 2+2")).output
        await ctx.wait_signal("go")
        return str(answer)

    async with Engine(store, workflows=[then_waits], poll_seconds=0.02) as engine:
        handle = await engine.start(then_waits, run_id="dur")
        await until_status(engine, "dur", "waiting")
        await engine.signal("dur", "go")  # the resumed execution replays the whole agent run
        assert await handle.result(timeout=5) == "4"
        keys = [e.key for e in await engine.journal("dur") if e.kind in ("intent", "done")]
    assert len(model.requests) == 3
    assert INVOKED == ["add(2,2)", "save(four,dur/agent:durable#1/gather#2/0/tool:save#1)"]
    assert keys[:2] == ["agent:durable#1/model#1", "agent:durable#1/model#1"]
    assert "agent:durable#1/gather#1/0/tool:add#1" in keys


async def test_conversation_storage_grows_linearly() -> None:
    async def bytes_for(turns: int) -> int:
        model = FunctionModel(
            lambda r: (
                call(len(r.messages), "add", a=1, b=1) if len(r.messages) < 2 * turns else "done"
            )
        )
        agent = Agent("long", model=model, tools=[add], max_turns=turns + 1)

        @workflow
        async def long_talk(ctx: Context) -> str:
            return (await agent.run("x" * 400)).output

        async with Engine("memory://", workflows=[long_talk]) as engine:
            await engine.run(long_talk, run_id="t")
            store = engine.store
            journal = sum(len(e.data) for e in await engine.journal("t"))
            return journal + sum(len(b) for b in store._blobs.values())  # type: ignore[attr-defined]

    small, large = await bytes_for(25), await bytes_for(100)
    assert large < 4.6 * small  # linear (×4 turns) plus a constant, not quadratic (×16)


def test_messages_are_plain_data() -> None:
    message = Message("tool", "3", tool_call_id="c", name="add")
    assert message.is_error is False
    assert isinstance(ModelRequest((message,)).messages[0], Message)
    assert asyncio.iscoroutinefunction(save.fn)


async def test_budget_refuses_a_call_that_could_overrun_it_before_sending(store: Store) -> None:
    model = ScriptedModel([[call(0, "add", a=1, b=1)], "two"])
    agent = Agent("thrifty", model=model, tools=[add], max_tokens=100)

    @workflow
    async def on_a_budget(ctx: Context) -> str:
        budget = Budget(tokens=200)  # the first call (worst case 152) fits; after it, not a second
        try:
            return (await agent.run("1+1", budget=budget)).output
        except BudgetExceeded as exc:
            return f"refused: {exc}"

    async with Engine(store, workflows=[on_a_budget]) as engine:
        answer = await engine.run(on_a_budget, run_id="b")
    assert answer.startswith("refused: agent 'thrifty''s next model call would need up to")
    assert "nothing was sent" in answer
    assert len(model.requests) == 1


async def test_parallel_agents_sharing_a_budget_never_overrun_it(store: Store) -> None:
    async def slow_answer(request: ModelRequest) -> str:
        await asyncio.sleep(0.05)  # all three calls are in flight at once
        return "answer"

    models = [FunctionModel(slow_answer) for _ in range(3)]
    agents = [Agent(f"worker{i}", model=m, max_tokens=100) for i, m in enumerate(models)]

    @workflow
    async def shared(ctx: Context) -> list[str]:
        budget = Budget(tokens=250)  # room for two worst cases (~110 each), not three

        async def one(agent: Agent[str]) -> str:
            try:
                return (await agent.run("go", budget=budget)).output
            except BudgetExceeded:
                return "refused"

        results = await ctx.gather(*(one(a) for a in agents))
        assert budget.tokens is not None
        assert budget.tokens_used <= budget.tokens
        await ctx.wait_signal("go")  # the replay must take the same decisions
        return results

    async with Engine(store, workflows=[shared], poll_seconds=0.02) as engine:
        handle = await engine.start(shared, run_id="shared")
        await until_status(engine, "shared", "waiting")
        await engine.signal("shared", "go")
        results = await handle.result(timeout=5)
    assert sorted(results).count("refused") == 1
    assert sum(len(m.requests) for m in models) == 2


async def test_history_is_trimmed_to_fit_the_context_window() -> None:
    from overnight.models.tokens import request_tokens

    def answer(request: ModelRequest) -> Any:
        assert request_tokens(request) + request.max_tokens <= 300  # never past the window
        if len(answer.seen) < 8:  # type: ignore[attr-defined]
            answer.seen.append(1)  # type: ignore[attr-defined]
            return call(len(answer.seen), "add", a=1, b=1)  # type: ignore[attr-defined]
        return "done"

    answer.seen = []  # type: ignore[attr-defined]
    model = FunctionModel(answer)
    agent = Agent("window", model=model, tools=[add], max_tokens=100, context_window=300)
    result = await agent.run("x" * 200)
    assert result.output == "done"
    sent = [len(r.messages) for r in model.requests]
    assert sent[-1] < len(result.messages) - 1  # earlier turns were trimmed away
    last = model.requests[-1].messages
    assert last[0].content == "x" * 200  # the prompt is kept
    assert last[1].role == "assistant"  # tool results never lead without their call

    too_small = Agent("tiny", model=FunctionModel(lambda r: "x"), context_window=50)
    with pytest.raises(AgentError, match="do not fit the model's context window of 50"):
        await too_small.run("hello")


async def test_the_exact_prompts_and_responses_can_be_read_back_from_the_store(
    store: Store,
) -> None:
    def answer(request: ModelRequest) -> Any:
        return call(len(model.requests), "add", a=1, b=2) if len(model.requests) < 4 else "3"

    model = FunctionModel(answer)
    agent = Agent(
        "told", model=model, instructions="Add.", tools=[add], max_tokens=100, context_window=195
    )

    @workflow
    async def talk(ctx: Context) -> str:
        return (await agent.run("add 1 and 2, a few times")).output

    async with Engine(store, workflows=[talk]) as engine:
        assert await engine.run(talk, run_id="t") == "3"
        calls = await model_calls(engine, "t")
    assert [c.key for c in calls] == [f"agent:told#1/model#{i}" for i in range(1, 5)]
    assert [c.messages for c in calls] == [r.messages for r in model.requests]
    untrimmed = [2 + 2 * i for i in range(4)]  # system, user, then an assistant + tool per turn
    assert [len(c.messages) for c in calls] != untrimmed  # the window trimmed, and so does this
    assert calls[-1].response is not None
    assert calls[-1].response.message.content == "3"
    assert calls[0].response is not None
    assert calls[0].response.meta["latency_ms"] >= 0


class Opaque:
    """A type pydantic cannot describe to a model."""


def test_tools_that_cannot_be_described_are_refused_at_decoration() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(UserError, match="parameter 'x' has no type annotation"):
        tool(untyped)

    def takes_object(thing: Opaque) -> str:
        return "?"

    with pytest.raises(UserError, match="cannot build a JSON Schema"):
        tool(takes_object)

    def variadic(*args: int) -> int:
        return 0

    with pytest.raises(UserError, match=r"\*args/\*\*kwargs cannot be described"):
        tool(variadic)


async def test_cost_budget_prices_the_worst_case_and_refuses_unpriced_models() -> None:
    priced = FunctionModel(lambda r: "fine", name="openai:gpt-4o-mini")
    agent = Agent("spender", model=priced, max_tokens=1000)

    @workflow
    async def spend(ctx: Context, dollars: str) -> str:
        try:
            result = await agent.run("hello", budget=Budget(cost=Decimal(dollars)))
        except BudgetExceeded as exc:
            return f"refused: {exc}"
        return f"{result.output} for {result.cost}"

    async with Engine("memory://", workflows=[spend]) as engine:
        assert (await engine.run(spend, "0.0001")).startswith("refused: agent 'spender'")
        answer = await engine.run(spend, "0.01")
    assert answer.startswith("fine for $0.0000")  # priced from the provider's own table

    unpriced = Agent("mystery", model=ScriptedModel(["x"]), max_tokens=10)

    @workflow
    async def spend_unpriced(ctx: Context) -> str:
        return (await unpriced.run("hi", budget=Budget(cost=Decimal(1)))).output

    async with Engine("memory://", workflows=[spend_unpriced]) as engine:
        with pytest.raises(RunFailedError, match="has no known price"):
            await engine.run(spend_unpriced)
    result = await Agent("free", model=ScriptedModel(["x"])).run("hi")
    assert result.cost.amount is None
    assert str(result.cost) == "unpriced (test:scripted)"  # never $0


async def test_a_context_length_error_is_reported_as_such() -> None:
    too_long = ContextLengthError("prompt is too long: 9000 > 8192", model="test:scripted")
    agent = Agent("verbose", model=ScriptedModel([too_long]))

    @workflow
    async def overflows(ctx: Context) -> str:
        try:
            await agent.run("a very long prompt")
        except ContextLengthError as exc:
            return f"too long: {exc}"
        return "fitted"

    async with Engine("memory://", workflows=[overflows]) as engine:
        answer = await engine.run(overflows)
    assert answer.startswith("too long: agent 'verbose': no model answered")
    assert "prompt is too long: 9000 > 8192" in answer


def test_models_can_be_named_by_provider_strings() -> None:
    agent = Agent("named", model="openai:gpt-4o-mini")
    assert agent.model == "openai:gpt-4o-mini"
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        _ = agent.resolved_model  # resolved when first needed; the key is missing here


async def test_per_agent_limits_tokens_and_wall_time() -> None:
    model = FunctionModel(lambda r: call(len(r.messages), "add", a=1, b=1))
    limited = Agent("capped", model=model, tools=[add], max_tokens=50, max_total_tokens=300)
    with pytest.raises(AgentError, match="BudgetExceeded: agent 'capped'"):
        await limited.run("loop")
    assert len(model.requests) >= 1

    async def slow(request: ModelRequest) -> Any:
        await asyncio.sleep(0.05)
        return call(len(request.messages), "add", a=1, b=1)

    timed = Agent("timed", model=FunctionModel(slow), tools=[add], max_seconds=0.12)
    with pytest.raises(AgentError, match=r"past its max_seconds=0\.12"):
        await timed.run("loop")
    assert Agent("router_food", model=model, capabilities=["triage"]).capabilities == {"triage"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_an_unreachable_model_parks_the_run_and_resume_sends_the_call_again(
    store: Store,
) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/v1"
    async with OpenAIModel("local-llm", base_url=url, api_key="unused") as model:
        agent = Agent(
            "offline", model=model, model_retry=RetryPolicy(max_attempts=2, initial_delay=0.01)
        )

        @workflow
        async def ask(ctx: Context) -> str:
            return (await agent.run("ping")).output

        async with Engine(store, workflows=[ask]) as engine:
            await engine.start(ask, run_id="unreachable")
            with pytest.raises(RunParkedError) as parked:
                await engine.result("unreachable")
            assert f"cannot reach {url}/chat/completions" in str(parked.value)
            assert "then resume the run" in str(parked.value)
            with OpenAIServer(["pong"], port=port) as server:  # the server is up now
                await engine.resume("unreachable")
                assert await engine.result("unreachable") == "pong"
            assert len(server.requests()) == 1


async def test_a_missing_api_key_parks_the_run_naming_the_variable(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    agent = Agent("keyless", model="openai:gpt-4o-mini")

    @workflow
    async def ask(ctx: Context) -> str:
        return (await agent.run("ping")).output

    async with Engine(store, workflows=[ask]) as engine:
        await engine.start(ask, run_id="keyless")
        with pytest.raises(RunParkedError, match="set the OPENAI_API_KEY environment variable"):
            await engine.result("keyless")
        assert (await engine.get_run("keyless")).status == "parked"


async def test_an_agent_without_a_model_takes_it_from_overnight_model(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = Agent("configured", instructions="Answer.")

    @workflow
    async def ask(ctx: Context) -> str:
        return (await agent.run("ping")).output

    monkeypatch.delenv("OVERNIGHT_MODEL", raising=False)
    async with Engine(store, workflows=[ask]) as engine:
        await engine.start(ask, run_id="unconfigured")
        with pytest.raises(RunParkedError, match="set the OVERNIGHT_MODEL environment variable"):
            await engine.result("unconfigured")
        with OpenAIServer(["pong"]) as server:
            monkeypatch.setenv("OVERNIGHT_MODEL", "openai:llama3.2")
            monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
            await engine.resume("unconfigured")
            assert await engine.result("unconfigured") == "pong"
            assert server.requests()[0].body["model"] == "llama3.2"
        await agent.resolved_model.aclose()  # type: ignore[attr-defined]
