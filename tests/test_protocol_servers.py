"""The local provider servers, driven by the real `openai` and `anthropic` SDK clients."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pydantic
import pytest

from overnight.testing.servers import (
    AnthropicServer,
    ContextLengthExceeded,
    Drop,
    Malformed,
    OpenAIServer,
    Overloaded,
    RateLimited,
    RecordedRequest,
    ScriptError,
    ServerError,
    Structured,
    Text,
    ToolCall,
    ToolCalls,
    Usage,
    estimate_tokens,
)

USER = [{"role": "user", "content": "What is the tide at noon?"}]
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


@pytest.fixture
def oa() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def an() -> Iterator[AnthropicServer]:
    with AnthropicServer() as server:
        yield server


def openai_client(server: OpenAIServer, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.base_url, api_key=options.pop("api_key", "test"), **options
    )


def anthropic_client(server: AnthropicServer, **options: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=server.base_url, api_key=options.pop("api_key", "test"), **options
    )


async def chat(server: OpenAIServer, **options: Any) -> Any:
    params = {"model": "gpt-test", "messages": USER, **options.pop("params", {})}
    async with openai_client(server, **{"max_retries": 0, **options}) as client:
        return await client.chat.completions.create(**params)


async def message(server: AnthropicServer, **options: Any) -> Any:
    params = {"model": "claude-test", "max_tokens": 256, "messages": USER}
    params.update(options.pop("params", {}))
    async with anthropic_client(server, **{"max_retries": 0, **options}) as client:
        return await client.messages.create(**params)


TOOLS_OPENAI = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("tide", "moon")
]
TOOLS_ANTHROPIC = [{"name": n, "input_schema": {"type": "object"}} for n in ("tide", "moon")]
SCHEMA = {
    "type": "object",
    "properties": {"height": {"type": "number"}, "unit": {"type": "string"}},
    "required": ["height", "unit"],
    "additionalProperties": False,
}


# -- OpenAI ---------------------------------------------------------------------------------------


async def test_openai_text_with_deterministic_usage(oa: OpenAIServer) -> None:
    oa.add("High tide.")
    completion = await chat(oa)
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("High tide.", "stop")
    assert (completion.id, completion.model, completion.object) == (
        "chatcmpl-1",
        "gpt-test",
        "chat.completion",
    )
    assert completion.usage is not None
    expected = (estimate_tokens([USER, None]), estimate_tokens("High tide."))
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == expected
    assert completion.usage.total_tokens == sum(expected)
    [sent] = oa.requests(CHAT)
    assert sent.body == {"model": "gpt-test", "messages": USER}
    assert (sent.status, sent.reply, sent.model) == (200, "text", "gpt-test")
    assert sent.headers["authorization"] == "<redacted>"


async def test_openai_several_tool_calls_in_one_turn(oa: OpenAIServer) -> None:
    oa.add(
        ToolCalls(
            [ToolCall("tide", {"port": "Brest", "hour": 12}), ToolCall("moon", id="call_fixed")],
            usage=Usage(input_tokens=50, output_tokens=7),
        )
    )
    completion = await chat(oa, params={"tools": TOOLS_OPENAI})
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.type for c in calls] == ["function", "function"]
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_1_0", "tide", {"port": "Brest", "hour": 12}),
        ("call_fixed", "moon", {}),
    ]
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (50, 7)
    assert oa.requests()[0].body["tools"] == TOOLS_OPENAI


class Tide(pydantic.BaseModel):
    height: float
    unit: str


async def test_openai_structured_output(oa: OpenAIServer) -> None:
    oa.add(Structured({"height": 4.2, "unit": "m"}), Structured({"height": 1.5, "unit": "ft"}))
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "tide", "schema": SCHEMA, "strict": True},
    }
    completion = await chat(oa, params={"response_format": response_format})
    assert json.loads(completion.choices[0].message.content) == {"height": 4.2, "unit": "m"}
    async with openai_client(oa, max_retries=0) as client:  # the SDK's own parsing helper
        completions = client.chat.completions
        parse = getattr(completions, "parse", None) or client.beta.chat.completions.parse  # < 2.0
        parsed = await parse(model="gpt-test", messages=USER, response_format=Tide)
    assert parsed.choices[0].message.parsed == Tide(height=1.5, unit="ft")
    sent = oa.requests()[1].body["response_format"]
    assert (sent["type"], sent["json_schema"]["strict"]) == ("json_schema", True)


async def test_openai_structured_reply_to_a_plain_request_is_a_script_error(
    oa: OpenAIServer,
) -> None:
    oa.add(Structured({"height": 1}))
    with pytest.raises(openai.InternalServerError) as caught:
        await chat(oa)
    assert caught.value.code == "script_error"
    assert "no response_format of type 'json_schema'" in caught.value.message
    assert len(oa.script_errors) == 1
    with pytest.raises(ScriptError, match="structured reply does not fit"):
        oa.check()


async def test_openai_rate_limit_shows_retry_after(oa: OpenAIServer) -> None:
    oa.add(RateLimited(retry_after=2))
    with pytest.raises(openai.RateLimitError) as caught:
        await chat(oa)
    error = caught.value
    assert error.response.headers["retry-after"] == "2"
    assert (error.status_code, error.code, error.request_id) == (
        429,
        "rate_limit_exceeded",
        "req_1",
    )


async def test_openai_sdk_retries_after_the_servers_delay(oa: OpenAIServer) -> None:
    oa.add(RateLimited(retry_after=0.05), "after the wait")
    completion = await chat(oa, max_retries=1)
    assert completion.choices[0].message.content == "after the wait"
    assert [r.headers["x-stainless-retry-count"] for r in oa.requests()] == ["0", "1"]
    assert [r.status for r in oa.requests()] == [429, 200]


async def test_openai_server_errors(oa: OpenAIServer) -> None:
    oa.add(ServerError(), Overloaded())
    with pytest.raises(openai.InternalServerError) as caught:
        await chat(oa)
    assert (caught.value.status_code, caught.value.type) == (500, "server_error")
    with pytest.raises(openai.InternalServerError) as caught:
        await chat(oa)
    assert caught.value.status_code == 503
    assert "overloaded" in caught.value.message


async def test_openai_context_length(oa: OpenAIServer) -> None:
    oa.add(ContextLengthExceeded(tokens=130_000, limit=128_000))
    with pytest.raises(openai.BadRequestError) as caught:
        await chat(oa)
    error = caught.value
    assert (error.code, error.param, error.type) == (
        "context_length_exceeded",
        "messages",
        "invalid_request_error",
    )
    assert isinstance(error.body, dict)
    assert "maximum context length is 128000 tokens" in error.body["message"]
    assert "130000 tokens" in error.message


async def test_openai_required_key() -> None:
    with OpenAIServer(["welcome"], api_key="sk-right") as server:
        with pytest.raises(openai.AuthenticationError) as caught:
            await chat(server, api_key="sk-wrong")
        assert caught.value.code == "invalid_api_key"
        assert "sk-wrong" not in caught.value.message
        assert server.remaining == 1  # a refused request uses no reply
        completion = await chat(server, api_key="sk-right")
        assert completion.choices[0].message.content == "welcome"
        assert [r.status for r in server.requests()] == [401, 200]
        assert all(r.headers["authorization"] == "<redacted>" for r in server.requests())


async def test_openai_slow_reply_times_the_client_out(oa: OpenAIServer) -> None:
    oa.add(Text("too late", delay=5))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await chat(oa, timeout=0.2)
    assert time.monotonic() - started < 2


async def test_openai_malformed_body(oa: OpenAIServer) -> None:
    oa.add(Malformed())
    with pytest.raises(json.JSONDecodeError):  # what the SDK raises for an unparseable body
        await chat(oa)


async def test_openai_dropped_connection(oa: OpenAIServer) -> None:
    oa.add(Drop())
    with pytest.raises(openai.APIConnectionError) as caught:
        await chat(oa)
    assert not isinstance(caught.value, openai.APITimeoutError)
    [sent] = oa.requests()
    assert (sent.status, sent.reply) == (None, "drop")


async def test_openai_rejects_streaming(oa: OpenAIServer) -> None:
    oa.add("unused")
    with pytest.raises(openai.BadRequestError, match="does not stream") as caught:
        await chat(oa, params={"stream": True})
    assert caught.value.param == "stream"
    assert oa.remaining == 1


async def test_openai_models(oa: OpenAIServer) -> None:
    async with openai_client(oa) as client:
        page = await client.models.list()
        assert [m.id for m in page.data] == ["gpt-test"]
        assert (await client.models.retrieve("gpt-test")).owned_by == "overnight"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("gpt-nope")


async def test_openai_script_exhausted_is_not_retried(oa: OpenAIServer) -> None:
    oa.add("only one")
    await chat(oa)
    with pytest.raises(openai.InternalServerError) as caught:
        await chat(oa, max_retries=3)  # x-should-retry: false stops the SDK's retries
    assert caught.value.code == "script_exhausted"
    assert "script exhausted: request #2" in caught.value.message
    assert len(oa.requests()) == 2
    assert oa.requests()[1].script_error is not None
    with pytest.raises(ScriptError, match="script exhausted"):
        oa.check()


async def test_openai_handler_answers_after_the_queue(oa: OpenAIServer) -> None:
    seen: list[RecordedRequest] = []

    def handler(request: RecordedRequest) -> Text:
        seen.append(request)
        return Text(f"turn {request.seq}: {request.body['messages'][-1]['content']}")

    with OpenAIServer(["queued"], handler=handler) as server:
        first = await chat(server)
        second = await chat(server)
    assert first.choices[0].message.content == "queued"
    assert second.choices[0].message.content == f"turn 2: {USER[0]['content']}"
    assert [r.seq for r in seen] == [2]


async def test_openai_handler_error_is_a_script_error() -> None:
    def handler(request: RecordedRequest) -> str:
        raise KeyError("no such case")

    with OpenAIServer(handler=handler) as server:
        with pytest.raises(openai.InternalServerError, match="handler raised KeyError"):
            await chat(server)
        assert len(server.script_errors) == 1


async def test_concurrent_requests_each_get_one_reply(oa: OpenAIServer) -> None:
    oa.add(*[f"reply {i}" for i in range(20)])
    async with openai_client(oa, max_retries=0) as client:
        done = await asyncio.gather(
            *(client.chat.completions.create(model="gpt-test", messages=USER) for _ in range(20))
        )
    assert sorted(c.choices[0].message.content for c in done) == sorted(
        f"reply {i}" for i in range(20)
    )
    assert sorted(r.seq for r in oa.requests(CHAT)) == list(range(1, 21))
    assert oa.remaining == 0


async def test_close_wakes_a_slow_reply_and_drops_it() -> None:
    server = OpenAIServer([Text("never", delay=30)]).start()
    call = asyncio.ensure_future(chat(server))
    assert await asyncio.to_thread(server.wait_requests, 1, CHAT, 5.0)
    started = time.monotonic()
    await asyncio.to_thread(server.close)
    assert time.monotonic() - started < 2
    with pytest.raises(openai.APIConnectionError):
        await call
    [sent] = server.requests()
    assert sent.status is None


# -- Anthropic ------------------------------------------------------------------------------------


async def test_anthropic_text_with_deterministic_usage(an: AnthropicServer) -> None:
    an.add("High tide.")
    reply = await message(an, params={"system": "Be brief."})
    assert [(b.type, b.text) for b in reply.content] == [("text", "High tide.")]
    assert (reply.id, reply.model, reply.stop_reason, reply.role) == (
        "msg_1",
        "claude-test",
        "end_turn",
        "assistant",
    )
    assert reply.usage.input_tokens == estimate_tokens(["Be brief.", USER, None])
    assert reply.usage.output_tokens == estimate_tokens([{"type": "text", "text": "High tide."}])
    [sent] = an.requests(MESSAGES)
    assert sent.body == {
        "model": "claude-test",
        "max_tokens": 256,
        "messages": USER,
        "system": "Be brief.",
    }
    assert sent.headers["anthropic-version"]


async def test_anthropic_several_tool_uses_in_one_turn(an: AnthropicServer) -> None:
    an.add(
        ToolCalls(
            [ToolCall("tide", {"port": "Brest"}), ToolCall("moon", id="toolu_fixed")],
            text="Let me check.",
            usage=Usage(input_tokens=80, output_tokens=12),
        )
    )
    reply = await message(an, params={"tools": TOOLS_ANTHROPIC})
    assert reply.stop_reason == "tool_use"
    assert [type(b).__name__ for b in reply.content] == [
        "TextBlock",
        "ToolUseBlock",
        "ToolUseBlock",
    ]
    uses = [(b.id, b.name, b.input) for b in reply.content if b.type == "tool_use"]
    assert uses == [("toolu_1_0", "tide", {"port": "Brest"}), ("toolu_fixed", "moon", {})]
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (80, 12)


async def test_anthropic_forced_tool_for_structured_output(an: AnthropicServer) -> None:
    an.add(Structured({"height": 4.2, "unit": "m"}))
    tools = [{"name": "record_tide", "input_schema": SCHEMA}]
    reply = await message(
        an, params={"tools": tools, "tool_choice": {"type": "tool", "name": "record_tide"}}
    )
    [block] = reply.content
    assert (block.type, block.name, block.input) == (
        "tool_use",
        "record_tide",
        {"height": 4.2, "unit": "m"},
    )
    assert reply.stop_reason == "tool_use"


async def test_anthropic_structured_without_forced_tool_is_a_script_error(
    an: AnthropicServer,
) -> None:
    an.add(Structured({"height": 1}))
    with pytest.raises(anthropic.InternalServerError, match="forces no tool"):
        await message(an, params={"tools": TOOLS_ANTHROPIC})
    assert len(an.script_errors) == 1


async def test_anthropic_rate_limit_shows_retry_after(an: AnthropicServer) -> None:
    an.add(RateLimited(retry_after=3))
    with pytest.raises(anthropic.RateLimitError) as caught:
        await message(an)
    error = caught.value
    assert error.response.headers["retry-after"] == "3"
    assert isinstance(error.body, dict)
    assert error.body["error"]["type"] == "rate_limit_error"
    assert error.request_id == "req_1"


async def test_anthropic_server_error_and_overloaded(an: AnthropicServer) -> None:
    an.add(ServerError(), Overloaded())
    with pytest.raises(anthropic.InternalServerError) as caught:
        await message(an)
    assert caught.value.status_code == 500
    assert caught.value.body["error"] == {"type": "api_error", "message": "Internal server error"}
    with pytest.raises(anthropic.APIStatusError) as overloaded:  # InternalServerError in 2.x
        await message(an)
    assert overloaded.value.status_code == 529
    assert isinstance(overloaded.value, getattr(anthropic, "OverloadedError", Exception))
    assert overloaded.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


async def test_anthropic_prompt_too_long(an: AnthropicServer) -> None:
    an.add(ContextLengthExceeded(tokens=210_000, limit=200_000))
    with pytest.raises(anthropic.BadRequestError) as caught:
        await message(an)
    assert caught.value.body["error"] == {
        "type": "invalid_request_error",
        "message": "prompt is too long: 210000 tokens > 200000 maximum",
    }


async def test_anthropic_required_key() -> None:
    with AnthropicServer(["welcome"], api_key="sk-ant-right") as server:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await message(server, api_key="sk-ant-wrong")
        assert caught.value.body["error"]["type"] == "authentication_error"
        assert server.remaining == 1
        reply = await message(server, api_key="sk-ant-right")
        assert reply.content[0].text == "welcome"


async def test_anthropic_slow_reply_times_the_client_out(an: AnthropicServer) -> None:
    an.add(Text("too late", delay=5))
    with pytest.raises(anthropic.APITimeoutError):
        await message(an, timeout=0.2)


async def test_anthropic_malformed_body(an: AnthropicServer) -> None:
    an.add(Malformed())
    with pytest.raises(json.JSONDecodeError):
        await message(an)


async def test_anthropic_dropped_connection(an: AnthropicServer) -> None:
    an.add(Drop())
    with pytest.raises(anthropic.APIConnectionError) as caught:
        await message(an)
    assert not isinstance(caught.value, anthropic.APITimeoutError)


async def test_anthropic_rejects_streaming_and_invalid_requests(an: AnthropicServer) -> None:
    an.add("unused")
    with pytest.raises(anthropic.BadRequestError, match="does not stream"):
        await message(an, params={"stream": True})
    async with anthropic_client(an, max_retries=0) as client:
        with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
            await client.post("/v1/messages", cast_to=object, body={"model": "m", "messages": []})
    assert an.remaining == 1


async def test_anthropic_script_exhausted(an: AnthropicServer) -> None:
    with pytest.raises(anthropic.InternalServerError, match="script exhausted") as caught:
        await message(an, max_retries=2)
    assert caught.value.body["error"]["details"] == {"error_code": "script_exhausted"}
    assert len(an.requests()) == 1
    with pytest.raises(ScriptError):
        an.check()


# -- the request log ------------------------------------------------------------------------------


async def test_request_log_counts_what_was_sent(an: AnthropicServer) -> None:
    an.add("one", "two")
    await message(an, params={"metadata": {"user_id": "step-a"}})
    await message(an, params={"metadata": {"user_id": "step-b"}})
    assert an.wait_requests(2, MESSAGES, timeout=1)
    assert not an.wait_requests(3, timeout=0.05)
    sent = [r.body["metadata"]["user_id"] for r in an.requests(MESSAGES)]
    assert sent == ["step-a", "step-b"]
    assert [r.seq for r in an.requests()] == [1, 2]
    assert all(r.at > 0 and r.status == 200 for r in an.requests())
    assert an.requests("/v1/other") == []


def test_replies_are_checked_when_queued() -> None:
    with pytest.raises(TypeError, match="reply classes"):
        OpenAIServer([{"text": "hi"}])  # type: ignore[list-item]


def post(url: str, data: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_unreadable_body_and_unknown_path_use_no_reply() -> None:
    with OpenAIServer(["unused"]) as server:
        assert post(server.url + CHAT, b"{not json")[0] == 400
        status, body = post(server.url + "/v1/embeddings", b"{}")
        assert (status, body["error"]["message"]) == (404, "Invalid URL (POST /v1/embeddings)")
        assert [(r.path, r.status, r.body) for r in server.requests()] == [
            (CHAT, 400, None),
            ("/v1/embeddings", 404, {}),
        ]
        assert server.remaining == 1
    with AnthropicServer(["unused"]) as server:
        status, body = post(server.url + "/v1/complete", b"{}")
        assert (status, body["type"], body["error"]["type"]) == (404, "error", "not_found_error")
