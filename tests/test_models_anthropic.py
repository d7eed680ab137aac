"""`AnthropicModel` (hence the real `anthropic` SDK) against the loopback Anthropic server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import pydantic
import pytest

from overnight.agent import Agent
from overnight.errors import UserError
from overnight.models import (
    ContextLengthError,
    Message,
    ModelError,
    ModelRequest,
    OutputSpec,
    ToolCall,
    ToolSpec,
    Usage,
    resolve_model,
)
from overnight.models.anthropic import AnthropicModel
from overnight.testing.servers import (
    AnthropicServer,
    ContextLengthExceeded,
    Drop,
    Malformed,
    Overloaded,
    RateLimited,
    ServerError,
    Structured,
    Text,
    ToolCalls,
)
from overnight.testing.servers import ToolCall as Call
from overnight.testing.servers import Usage as Counts
from overnight.tool import tool

MESSAGES = "/v1/messages"
ASK = ModelRequest((Message("system", "Be brief."), Message("user", "Tide at Brest?")))
TIDE = {"type": "object", "properties": {"height": {"type": "number"}}, "required": ["height"]}


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer() as running:
        yield running


@pytest.fixture
async def model(server: AnthropicServer) -> AsyncIterator[AnthropicModel]:
    async with AnthropicModel("claude-test", base_url=server.base_url, timeout=5) as opened:
        yield opened


async def failure(model: AnthropicModel, request: ModelRequest = ASK) -> ModelError:
    with pytest.raises(ModelError) as caught:
        await model.request(request)
    return caught.value


# -- replies --------------------------------------------------------------------------------------


async def test_text_with_a_separate_system_prompt(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    server.add(Text("4.2 m at noon.", usage=Counts(input_tokens=31, output_tokens=6)))
    response = await model.request(ModelRequest(ASK.messages, max_tokens=99, temperature=0.5))
    assert response.message == Message("assistant", "4.2 m at noon.")
    assert response.usage == Usage(input_tokens=31, output_tokens=6)
    assert (response.model, response.finish_reason, response.provider_id) == (
        "anthropic:claude-test",
        "stop",
        "msg_1",
    )
    [sent] = server.requests(MESSAGES)
    assert sent.body == {
        "model": "claude-test",
        "max_tokens": 99,
        "system": "Be brief.",
        "temperature": 0.5,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Tide at Brest?"}]}],
    }


async def test_max_tokens_is_always_sent(server: AnthropicServer, model: AnthropicModel) -> None:
    server.add("ok")
    await model.request(ModelRequest((Message("user", "hi"),)))
    [sent] = server.requests(MESSAGES)
    assert sent.body["max_tokens"] == 1024
    assert "system" not in sent.body


async def test_several_tool_calls_then_results_in_one_user_turn(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    server.add(
        ToolCalls([Call("tide", {"port": "Brest"}), Call("moon", id="toolu_fixed")], text="Both."),
        "Done.",
    )
    tools = (ToolSpec("tide", "Tide times.", {"type": "object"}), ToolSpec("moon", "", {}))
    first = await model.request(ModelRequest(ASK.messages, tools))
    assert first.finish_reason == "tool_calls"
    assert first.message.content == "Both."
    assert first.message.tool_calls == (
        ToolCall("toolu_1_0", "tide", '{"port": "Brest"}'),
        ToolCall("toolu_fixed", "moon", "{}"),
    )
    results = (
        Message("tool", "4.2 m", tool_call_id="toolu_1_0", name="tide"),
        Message("tool", "boom", tool_call_id="toolu_fixed", name="moon", is_error=True),
    )
    await model.request(ModelRequest((*ASK.messages, first.message, *results), tools))
    sent = [r.body for r in server.requests(MESSAGES)]
    assert sent[0]["tools"] == [
        {"name": "tide", "input_schema": {"type": "object"}, "description": "Tide times."},
        {"name": "moon", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in sent[0]
    assert sent[1]["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Both."},
                {"type": "tool_use", "id": "toolu_1_0", "name": "tide", "input": {"port": "Brest"}},
                {"type": "tool_use", "id": "toolu_fixed", "name": "moon", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1_0", "content": "4.2 m"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_fixed",
                    "content": "boom",
                    "is_error": True,
                },
            ],
        },
    ]


async def test_cache_reads_and_writes_count_as_input(model: AnthropicModel) -> None:
    reply = anthropic.types.Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 10,
                "output_tokens": 5,
                "cache_read_input_tokens": 2000,
                "cache_creation_input_tokens": 300,
            },
        }
    )
    response = model._response(reply, None, False)
    assert response.usage == Usage(
        input_tokens=2310, output_tokens=5, cache_read_tokens=2000, cache_write_tokens=300
    )
    assert response.finish_reason == "length"


# -- structured output ----------------------------------------------------------------------------


async def test_structured_output_is_a_forced_tool(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    server.add(Structured({"height": 4.2}))
    response = await model.request(ModelRequest(ASK.messages, output=OutputSpec("tide", TIDE)))
    assert json.loads(response.message.content) == {"height": 4.2}
    assert (response.message.tool_calls, response.finish_reason) == ((), "stop")
    assert response.meta == {"structured": "tool"}
    [sent] = server.requests(MESSAGES)
    assert sent.body["tool_choice"] == {"type": "tool", "name": "tide"}
    [spec] = sent.body["tools"]
    assert (spec["name"], spec["input_schema"]) == ("tide", TIDE)


async def test_with_tools_of_its_own_the_model_may_call_them_first(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    server.add(
        ToolCalls([Call("tide", {"port": "Brest"})]), ToolCalls([Call("tide_out", {"height": 4.2})])
    )
    request = ModelRequest(
        ASK.messages,
        (ToolSpec("tide", "Tide times.", {"type": "object"}),),
        OutputSpec("tide out", TIDE),
    )
    first = await model.request(request)
    assert [c.name for c in first.message.tool_calls] == ["tide"]
    second = await model.request(request)
    assert (second.message.content, second.message.tool_calls) == ('{"height": 4.2}', ())
    sent = server.requests(MESSAGES)[0].body
    assert sent["tool_choice"] == {"type": "any"}
    assert [t["name"] for t in sent["tools"]] == ["tide", "tide_out"]


async def test_a_non_object_output_is_wrapped_and_unwrapped(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    server.add(Structured({"response": ["a", "b"]}))
    output = OutputSpec("tags", {"type": "array", "items": {"type": "string"}})
    response = await model.request(ModelRequest(ASK.messages, output=output))
    assert response.message.content == '["a", "b"]'
    schema = server.requests(MESSAGES)[0].body["tools"][0]["input_schema"]
    assert (schema["type"], schema["required"]) == ("object", ["response"])


async def test_an_output_named_like_a_tool_is_refused(model: AnthropicModel) -> None:
    request = ModelRequest(ASK.messages, (ToolSpec("tide", "", {}),), OutputSpec("tide", TIDE))
    with pytest.raises(UserError, match="share the name 'tide'"):
        await model.request(request)


# -- errors ---------------------------------------------------------------------------------------


async def test_rate_limit_is_retryable_with_retry_after(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    server.add(RateLimited(retry_after=3))
    error = await failure(model)
    assert (error.retryable, error.status, error.retry_after) == (True, 429, 3.0)
    assert len(server.requests(MESSAGES)) == 1  # the provider never retries: the engine does


@pytest.mark.parametrize(("reply", "status"), [(ServerError(), 500), (Overloaded(), 529)])
async def test_server_errors_and_overload_are_retryable(
    server: AnthropicServer, model: AnthropicModel, reply: Any, status: int
) -> None:
    server.add(reply)
    error = await failure(model)
    assert (error.retryable, error.status) == (True, status)
    assert len(server.requests(MESSAGES)) == 1


async def test_context_length(server: AnthropicServer, model: AnthropicModel) -> None:
    server.add(ContextLengthExceeded(tokens=210_000, limit=200_000))
    error = await failure(model)
    assert isinstance(error, ContextLengthError)
    assert (error.retryable, error.status) == (False, 400)
    assert "prompt is too long: 210000 tokens > 200000 maximum" in str(error)


async def test_a_slow_reply_times_out_retryably(server: AnthropicServer) -> None:
    server.add(Text("too late", delay=5))
    started = time.monotonic()
    async with AnthropicModel("claude-test", base_url=server.base_url, timeout=0.2) as model:
        error = await failure(model)
    assert time.monotonic() - started < 2
    assert error.retryable
    assert f"no reply from {server.base_url}/v1/messages within 0.2 s" in str(error)


async def test_a_malformed_body_is_a_clear_retryable_error(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    server.add(Malformed())
    error = await failure(model)
    assert error.retryable
    assert "not a valid response" in str(error)


async def test_a_dropped_connection_is_retryable(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    server.add(Drop())
    error = await failure(model)
    assert error.retryable
    assert f"cannot reach {server.base_url}/v1/messages" in str(error)


async def test_an_unreachable_endpoint_is_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with AnthropicModel("claude-test", base_url=url) as model:
        error = await failure(model)
    assert error.retryable
    assert f"cannot reach {url}/v1/messages" in str(error)


async def test_a_refused_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong")
    with AnthropicServer(["never"], api_key="sk-ant-right") as server:
        async with AnthropicModel("claude-test", base_url=server.base_url) as model:
            error = await failure(model)
    assert (error.retryable, error.status) == (False, 401)
    assert "check ANTHROPIC_API_KEY" in str(error)
    assert "sk-ant-wrong" not in str(error)


def test_the_context_window_is_known_or_given() -> None:
    assert AnthropicModel("claude-haiku-4-5", api_key="k").context_window == 200_000
    assert AnthropicModel("claude-made-up", api_key="k").context_window is None
    assert AnthropicModel("x", api_key="k", context_window=1000).context_window == 1000


def test_a_missing_key_names_the_variable() -> None:
    with pytest.raises(UserError, match="set the ANTHROPIC_API_KEY environment variable"):
        resolve_model("anthropic:claude-haiku-4-5")


async def test_configured_by_environment(
    server: AnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    server.add("hello")
    async with resolve_model("anthropic:claude-haiku-4-5", timeout=5) as model:
        assert isinstance(model, AnthropicModel)
        response = await model.request(ASK)
    assert (response.message.content, response.model) == ("hello", "anthropic:claude-haiku-4-5")


# -- end to end: an agent on the provider ---------------------------------------------------------


class Forecast(pydantic.BaseModel):
    port: str
    height_m: float


@tool(effect="pure")
def tide(port: str) -> str:
    """High tide at a port."""
    return f"{port}: 4.2 m at 12:10"


async def test_an_agent_calls_a_tool_then_answers_typed() -> None:
    script = [
        ToolCalls([Call("tide", {"port": "Brest"})], usage=Counts(100, 10)),
        ToolCalls(
            [Call("forecaster_output", {"port": "Brest", "height_m": 4.2})], usage=Counts(150, 12)
        ),
    ]
    with AnthropicServer(script) as server:
        async with AnthropicModel("claude-test", base_url=server.base_url) as model:
            agent = Agent("forecaster", model=model, tools=[tide], output_type=Forecast)
            result = await agent.run("High tide in Brest?")
        sent = server.requests(MESSAGES)
    assert result.output == Forecast(port="Brest", height_m=4.2)
    assert result.usage == Usage(input_tokens=250, output_tokens=22)
    assert sent[1].body["messages"][-1] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1_0", "content": "Brest: 4.2 m at 12:10"}
        ],
    }
    server.check()


async def test_an_agent_without_tools_answers_through_the_forced_tool() -> None:
    with AnthropicServer([Structured({"port": "Brest", "height_m": 4.2})]) as server:
        async with AnthropicModel("claude-test", base_url=server.base_url) as model:
            agent = Agent("forecaster", model=model, output_type=Forecast)
            result = await agent.run("High tide in Brest?")
        [sent] = server.requests(MESSAGES)
    assert result.output == Forecast(port="Brest", height_m=4.2)
    assert sent.body["tool_choice"] == {"type": "tool", "name": "forecaster_output"}
