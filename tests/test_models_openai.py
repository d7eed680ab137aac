"""`OpenAIModel` (hence the real `openai` SDK client) against the loopback OpenAI server."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from email.message import Message as Headers
from typing import Any, Literal

import openai
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
from overnight.models.openai import OpenAIModel
from overnight.testing.servers import (
    ContextLengthExceeded,
    Drop,
    Malformed,
    OpenAIServer,
    Overloaded,
    RateLimited,
    RecordedRequest,
    ServerError,
    Structured,
    Text,
    ToolCalls,
)
from overnight.testing.servers import ToolCall as Call
from overnight.testing.servers import Usage as Counts
from overnight.testing.servers.base import Wire
from overnight.tool import tool

CHAT = "/v1/chat/completions"
ASK = ModelRequest((Message("system", "Be brief."), Message("user", "Tide at Brest?")))
TIDE = {
    "type": "object",
    "properties": {"height": {"type": "number"}, "unit": {"type": "string", "default": "m"}},
    "required": ["height"],
}


class NoJsonSchemaServer(OpenAIServer):
    """An OpenAI-compatible server without `json_schema` (as older local servers are)."""

    def _route(self, request: RecordedRequest, headers: Headers) -> Wire | Literal["script"]:
        body = request.body if isinstance(request.body, dict) else {}
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            return self._error(
                400, request, "Unsupported response_format type 'json_schema': use json_object"
            )
        return super()._route(request, headers)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        yield running


@pytest.fixture
async def model(server: OpenAIServer) -> AsyncIterator[OpenAIModel]:
    async with OpenAIModel("gpt-test", base_url=server.base_url, timeout=5) as opened:
        yield opened


def structured(schema: dict[str, Any] = TIDE) -> ModelRequest:
    return ModelRequest(ASK.messages, output=OutputSpec("tide", schema))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def failure(model: OpenAIModel, request: ModelRequest = ASK) -> ModelError:
    with pytest.raises(ModelError) as caught:
        await model.request(request)
    return caught.value


# -- replies --------------------------------------------------------------------------------------


async def test_text_with_the_servers_usage(server: OpenAIServer, model: OpenAIModel) -> None:
    server.add(Text("4.2 m at noon.", usage=Counts(input_tokens=31, output_tokens=6)))
    response = await model.request(ModelRequest(ASK.messages, max_tokens=99, temperature=0.25))
    assert response.message == Message("assistant", "4.2 m at noon.")
    assert response.usage == Usage(input_tokens=31, output_tokens=6)
    assert (response.model, response.finish_reason, response.provider_id) == (
        "openai:gpt-test",
        "stop",
        "chatcmpl-1",
    )
    [sent] = server.requests(CHAT)
    assert sent.body == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tide at Brest?"},
        ],
        "max_tokens": 99,  # not OpenAI itself: the older, widely known parameter
        "temperature": 0.25,
    }


async def test_several_tool_calls_in_one_turn_keep_their_order(
    server: OpenAIServer, model: OpenAIModel
) -> None:
    server.add(
        ToolCalls([Call("tide", {"port": "Brest"}), Call("moon", id="call_fixed")], text="Both."),
        "Done.",
    )
    tools = (
        ToolSpec("tide", "Tide times.", {"type": "object", "properties": {"port": {}}}),
        ToolSpec("moon", "", {}),
    )
    first = await model.request(ModelRequest(ASK.messages, tools))
    assert first.finish_reason == "tool_calls"
    assert first.message.content == "Both."
    assert first.message.tool_calls == (
        ToolCall("call_1_0", "tide", '{"port":"Brest"}'),
        ToolCall("call_fixed", "moon", "{}"),
    )
    results = (
        Message("tool", "4.2 m", tool_call_id="call_1_0", name="tide"),
        Message("tool", "boom", tool_call_id="call_fixed", name="moon", is_error=True),
    )
    await model.request(ModelRequest((*ASK.messages, first.message, *results), tools))
    sent = [r.body for r in server.requests(CHAT)]
    assert sent[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "tide",
                "parameters": {"type": "object", "properties": {"port": {}}},
                "description": "Tide times.",
            },
        },
        {
            "type": "function",
            "function": {"name": "moon", "parameters": {"type": "object", "properties": {}}},
        },
    ]
    assert sent[1]["messages"][2:] == [
        {
            "role": "assistant",
            "content": "Both.",
            "tool_calls": [
                {
                    "id": "call_1_0",
                    "type": "function",
                    "function": {"name": "tide", "arguments": '{"port":"Brest"}'},
                },
                {
                    "id": "call_fixed",
                    "type": "function",
                    "function": {"name": "moon", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1_0", "content": "4.2 m"},
        {"role": "tool", "tool_call_id": "call_fixed", "content": "boom"},
    ]


async def test_cached_tokens_and_missing_ids_are_mapped(model: OpenAIModel) -> None:
    completion = openai.types.chat.ChatCompletion.model_validate(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-test",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "",
                                "type": "function",
                                "function": {"name": "a", "arguments": "{}"},
                            },
                            {
                                "id": "",
                                "type": "function",
                                "function": {"name": "b", "arguments": ""},
                            },
                        ],
                    },
                }
            ],
            "usage": {
                "prompt_tokens": 1200,
                "completion_tokens": 20,
                "total_tokens": 1220,
                "prompt_tokens_details": {"cached_tokens": 1024},
            },
        }
    )
    response = model._response(completion, wrapped=False, prompted=False, meta={})
    assert response.usage == Usage(input_tokens=1200, output_tokens=20, cache_read_tokens=1024)
    assert [(c.id, c.name) for c in response.message.tool_calls] == [
        ("call_0", "a"),
        ("call_1", "b"),
    ]


# -- structured output ----------------------------------------------------------------------------


async def test_native_structured_output_sends_a_strict_json_schema(
    server: OpenAIServer, model: OpenAIModel
) -> None:
    server.add(Structured({"height": 4.2, "unit": "m"}))
    response = await model.request(structured())
    assert json.loads(response.message.content) == {"height": 4.2, "unit": "m"}
    assert response.meta == {"structured": "native"}
    [sent] = server.requests(CHAT)
    assert sent.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "tide",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "height": {"type": "number"},
                    "unit": {"type": "string", "default": "m"},
                },
                "required": ["height", "unit"],
                "additionalProperties": False,
            },
        },
    }


async def test_a_non_object_output_is_wrapped_and_unwrapped(
    server: OpenAIServer, model: OpenAIModel
) -> None:
    server.add(Structured({"response": [1, 2, 3]}))
    response = await model.request(structured({"type": "array", "items": {"type": "integer"}}))
    assert response.message.content == "[1, 2, 3]"
    schema = server.requests(CHAT)[0].body["response_format"]["json_schema"]["schema"]
    assert schema["properties"] == {"response": {"type": "array", "items": {"type": "integer"}}}


async def test_a_schema_strict_mode_cannot_express_is_sent_without_strict(
    server: OpenAIServer, model: OpenAIModel
) -> None:
    server.add(Structured({"scores": {"a": 1}}))
    free = {
        "type": "object",
        "properties": {"scores": {"type": "object", "additionalProperties": {"type": "integer"}}},
    }
    response = await model.request(structured(free))
    assert response.meta == {"structured": "native, not strict"}
    sent = server.requests(CHAT)[0].body["response_format"]["json_schema"]
    assert (sent["strict"], sent["schema"]) == (False, free)


async def test_auto_falls_back_to_prompted_once_and_remembers() -> None:
    reply = '```json\n{"height": 4.2, "unit": "m"}\n```'
    with NoJsonSchemaServer([reply, '{"height": 1.0, "unit": "m"}']) as server:
        async with OpenAIModel("local", base_url=server.base_url) as model:
            first = await model.request(structured())
            second = await model.request(structured())
        sent = server.requests(CHAT)
    assert json.loads(first.message.content) == {"height": 4.2, "unit": "m"}  # fence removed
    assert first.meta["structured"] == "prompted"
    assert "Unsupported response_format" in first.meta["structured_fallback"]
    assert second.meta == {"structured": "prompted"}
    assert [r.status for r in sent] == [400, 200, 200]  # one refusal, then prompted only
    assert "response_format" in sent[0].body
    for prompted in sent[1:]:
        assert "response_format" not in prompted.body
        [system, user] = prompted.body["messages"]
        assert system["content"].startswith("Be brief.\n\nReply with a single JSON value")
        assert '"height": {"type": "number"}' in system["content"]
        assert user == {"role": "user", "content": "Tide at Brest?"}


async def test_native_mode_reports_a_server_without_json_schema() -> None:
    with NoJsonSchemaServer() as server:
        async with OpenAIModel("local", base_url=server.base_url, structured="native") as model:
            error = await failure(model, structured())
    assert (error.retryable, error.status) == (False, 400)
    assert "Unsupported response_format" in str(error)


async def test_prompted_mode_never_sends_response_format(server: OpenAIServer) -> None:
    server.add('{"height": 2.0, "unit": "m"}')
    request = ModelRequest((Message("user", "Tide?"),), output=OutputSpec("tide", TIDE))
    async with OpenAIModel("m", base_url=server.base_url, structured="prompted") as model:
        response = await model.request(request)
    assert response.message.content == '{"height": 2.0, "unit": "m"}'
    [sent] = server.requests(CHAT)
    assert "response_format" not in sent.body
    assert [m["role"] for m in sent.body["messages"]] == ["system", "user"]


# -- errors ---------------------------------------------------------------------------------------


async def test_rate_limit_is_retryable_with_retry_after(
    server: OpenAIServer, model: OpenAIModel
) -> None:
    server.add(RateLimited(retry_after=2.5))
    error = await failure(model)
    assert (type(error), error.retryable, error.status, error.retry_after) == (
        ModelError,
        True,
        429,
        2.5,
    )
    assert len(server.requests(CHAT)) == 1  # the provider never retries: the engine does


@pytest.mark.parametrize(("reply", "status"), [(ServerError(), 500), (Overloaded(), 503)])
async def test_server_errors_are_retryable(
    server: OpenAIServer, model: OpenAIModel, reply: Any, status: int
) -> None:
    server.add(reply)
    error = await failure(model)
    assert (error.retryable, error.status, error.retry_after) == (True, status, None)
    assert server.url in str(error)
    assert len(server.requests(CHAT)) == 1


async def test_context_length(server: OpenAIServer, model: OpenAIModel) -> None:
    server.add(ContextLengthExceeded(tokens=130_000, limit=128_000))
    error = await failure(model)
    assert isinstance(error, ContextLengthError)
    assert (error.retryable, error.status) == (False, 400)
    assert "maximum context length is 128000 tokens" in str(error)


async def test_a_slow_reply_times_out_retryably(server: OpenAIServer) -> None:
    server.add(Text("too late", delay=5))
    started = time.monotonic()
    async with OpenAIModel("gpt-test", base_url=server.base_url, timeout=0.2) as model:
        error = await failure(model)
    assert time.monotonic() - started < 2
    assert error.retryable
    assert "within 0.2 s" in str(error)
    assert server.base_url in str(error)


async def test_a_malformed_body_is_a_clear_retryable_error(
    server: OpenAIServer, model: OpenAIModel
) -> None:
    server.add(Malformed())
    error = await failure(model)
    assert error.retryable
    assert "not a valid response" in str(error)


async def test_a_dropped_connection_is_retryable(server: OpenAIServer, model: OpenAIModel) -> None:
    server.add(Drop())
    error = await failure(model)
    assert error.retryable
    assert f"cannot reach {server.base_url}/chat/completions" in str(error)


async def test_an_unreachable_endpoint_is_named() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    async with OpenAIModel("llama3.2", base_url=url) as model:
        error = await failure(model)
    assert error.retryable
    assert f"cannot reach {url}/chat/completions" in str(error)


async def test_a_wrong_base_url_is_a_404_that_says_to_check_it(server: OpenAIServer) -> None:
    async with OpenAIModel("gpt-test", base_url=server.url) as model:  # without /v1
        error = await failure(model)
    assert (error.retryable, error.status) == (False, 404)
    assert "check the model name and the base URL" in str(error)


async def test_a_refused_key_names_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    with OpenAIServer(["never"], api_key="sk-right") as server:
        async with OpenAIModel("m", base_url=server.base_url, api_key="sk-wrong") as model:
            given = await failure(model)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
        async with OpenAIModel("m", base_url=server.base_url) as model:
            from_env = await failure(model)
        monkeypatch.delenv("OPENAI_API_KEY")
        async with OpenAIModel("m", base_url=server.base_url) as model:
            none = await failure(model)
    assert (given.retryable, given.status) == (False, 401)
    assert "check the api_key given to OpenAIModel" in str(given)
    assert "check OPENAI_API_KEY" in str(from_env)
    assert "check OPENAI_API_KEY (unset" in str(none)
    assert "sk-wrong" not in str(given) + str(from_env)


def test_a_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="set the OPENAI_API_KEY environment variable"):
        OpenAIModel("gpt-4o-mini")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://gpu-box.internal:8000/v1")
    with pytest.raises(UserError, match=re.escape("the server at http://gpu-box.internal:8000/v1")):
        resolve_model("openai:llama3.2")


async def test_a_local_server_named_by_configuration_only(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url.replace("127.0.0.1", "localhost"))
    server.add("hello from a local model")
    async with resolve_model("openai:llama3.2") as model:  # no key: the server is local
        assert isinstance(model, OpenAIModel)
        response = await model.request(ASK)
    assert (response.message.content, response.model) == (
        "hello from a local model",
        "openai:llama3.2",
    )
    assert server.requests(CHAT)[0].model == "llama3.2"


async def test_a_given_client_is_used_without_retries(server: OpenAIServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=5)
    server.add(ServerError(), "unused")
    async with OpenAIModel("gpt-test", client=client) as model:
        error = await failure(model)
    assert error.retryable
    assert len(server.requests(CHAT)) == 1
    assert "the API key of the client" in model._hint


def test_openai_itself_gets_max_completion_tokens() -> None:
    assert OpenAIModel("gpt-4o-mini", api_key="k")._limit_param == "max_completion_tokens"
    assert OpenAIModel("m", base_url="http://localhost:1/v1")._limit_param == "max_tokens"


def test_the_context_window_is_known_or_given() -> None:
    assert OpenAIModel("gpt-4o-mini", api_key="k").context_window == 128_000
    assert OpenAIModel("llama3.2", base_url="http://localhost:1/v1").context_window is None
    given = OpenAIModel("llama3.2", base_url="http://localhost:1/v1", context_window=8192)
    assert given.context_window == 8192


def test_bad_arguments() -> None:
    with pytest.raises(UserError, match="structured must be"):
        OpenAIModel("m", api_key="k", structured="json")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="timeout must be a positive"):
        OpenAIModel("m", api_key="k", timeout=0)
    with pytest.raises(UserError, match="needs a model name"):
        OpenAIModel("", api_key="k")


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
        Structured({"port": "Brest", "height_m": 4.2}, usage=Counts(150, 12)),
    ]
    with OpenAIServer(script) as server:
        async with OpenAIModel("gpt-test", base_url=server.base_url) as model:
            agent = Agent("forecaster", model=model, tools=[tide], output_type=Forecast)
            result = await agent.run("High tide in Brest?")
        sent = server.requests(CHAT)
    assert result.output == Forecast(port="Brest", height_m=4.2)
    assert result.usage == Usage(input_tokens=250, output_tokens=22)
    assert len(sent) == 2
    assert sent[1].body["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1_0",
        "content": "Brest: 4.2 m at 12:10",
    }
    assert sent[1].body["response_format"]["json_schema"]["name"] == "forecaster_output"
    server.check()
