"""The agent crash workload: a multi-turn agent on the real `openai` client, killed and resumed.

`AGENT` is what `overnight.testing.crash.agent` kills and resumes in `tests/test_agent_crash.py`
and in `make bench`. Its workflow runs one agent, `clerk`, whose model is `openai:crash-agent`
reached through the official `openai` SDK at `OPENAI_BASE_URL`: a loopback `OpenAIServer` that
lives in the test process (so its request log survives the workers' kills) and answers with
`script`, a conversation decided from the request itself, so a resumed run that asks again gets
the same reply. The conversation ships order A-17 in seven model calls:

1. `find_order` (pure);
2. in parallel: `reserve_stock` for each of the order's two items (keyed) and `quote_shipping`
   (pure), their arguments read from turn 1's result;
3. `charge_card` (keyed), the amount added up from the results of turns 1 and 2;
4. in parallel: `send_email` and `add_note` (both keyed), quoting the receipt;
5. `schedule_pickup` (keyed) on the day the quote named;
6. in parallel: `find_order` again, `add_note` and `send_email`;
7. the final answer: a sentence quoting the results, plus a digest of every tool result seen.

Every tool body reports `invoke()` to the ledger and applies its effect there under the
idempotency key the engine hands it, so the test counts executions and effects outside the
killed processes. Every request carries the worker's ledger tag in the `x-overnight-tag`
header, so the server's log says which process sent it. Each reply is delayed a little
(`REPLY_DELAY`), so random kills often land while a request is in flight.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import random
from typing import Any

import orjson

from ..agent import Agent
from ..context import Context
from ..models import Model, resolve_model
from ..tool import Tool, tool
from ..workflow import workflow
from .crash.agent import AgentWorkload
from .crash.workload import Workload
from .crash_workload import REFERENCE
from .ledger import ENV_TAG, default_client
from .servers import Text, ToolCall, ToolCalls
from .servers.record import RecordedRequest
from .servers.replies import Reply

ORDER = "A-17"
MODEL = "openai:crash-agent"
TAG_HEADER = "x-overnight-tag"
"""The header naming the worker process (its ledger tag) on every model request."""
REPLY_DELAY = 0.03
"""Seconds the server waits before each reply (a request is in flight that long)."""
TURNS = 7

_ORDERS: dict[str, dict[str, Any]] = {
    ORDER: {
        "order_id": ORDER,
        "email": "ada@example.com",
        "zone": "EU",
        "items": [
            {"sku": "widget", "qty": 2, "price_cents": 1250},
            {"sku": "gadget", "qty": 1, "price_cents": 4999},
        ],
    }
}
_SHIPPING = {"EU": (1500, "tuesday"), "US": (2500, "monday")}


async def _pause() -> None:
    """A short random pause, so parallel calls finish in a different order every run."""
    await asyncio.sleep(random.uniform(0.0, 0.02))


# -- tools (each reports to the ledger; effects are applied there under the idempotency key) ---


@tool(effect="pure")
async def find_order(order_id: str) -> dict[str, Any]:
    """The order: its customer, shipping zone and items."""
    await default_client().invoke()
    await _pause()
    return _ORDERS[order_id]


@tool(effect="pure")
async def quote_shipping(zone: str, items: int) -> dict[str, Any]:
    """The shipping price and pickup day for a zone."""
    await default_client().invoke()
    await _pause()
    cents, day = _SHIPPING[zone]
    return {"zone": zone, "cents": cents + 100 * items, "day": day}


async def _effect(idempotency_key: str, value: dict[str, Any]) -> None:
    ledger = default_client()
    await ledger.invoke()
    await _pause()
    await ledger.apply(idempotency_key, value)


@tool(effect="keyed")
async def reserve_stock(sku: str, qty: int, idempotency_key: str) -> dict[str, Any]:
    """Reserve stock for one item."""
    await _effect(idempotency_key, {"reserve": sku, "qty": qty})
    return {"sku": sku, "qty": qty, "reservation": f"res-{sku}-{qty}"}


@tool(effect="keyed")
async def charge_card(order_id: str, amount_cents: int, idempotency_key: str) -> dict[str, Any]:
    """Charge the customer's card."""
    await _effect(idempotency_key, {"charge": order_id, "cents": amount_cents})
    return {"receipt": f"R-{order_id}-{amount_cents}", "amount_cents": amount_cents}


@tool(effect="keyed")
async def send_email(to: str, subject: str, idempotency_key: str) -> str:
    """Send the customer an email."""
    await _effect(idempotency_key, {"email": to, "subject": subject})
    return f"sent to {to}: {subject}"


@tool(effect="keyed")
async def add_note(order_id: str, text: str, idempotency_key: str) -> str:
    """Add a note to the order."""
    await _effect(idempotency_key, {"note": order_id, "text": text})
    return f"noted on {order_id}"


@tool(effect="keyed")
async def schedule_pickup(order_id: str, day: str, idempotency_key: str) -> dict[str, Any]:
    """Book the carrier's pickup."""
    await _effect(idempotency_key, {"pickup": order_id, "day": day})
    return {"slot": f"{day} 09:00", "order_id": order_id}


TOOLS: tuple[Tool[Any], ...] = (
    find_order,
    quote_shipping,
    reserve_stock,
    charge_card,
    send_email,
    add_note,
    schedule_pickup,
)


# -- the conversation (decided by the server from each request, so a re-sent one repeats) ------


def _results(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The tool results in a request, by tool call id (JSON results decoded)."""
    found: dict[str, Any] = {}
    for m in messages:
        if m.get("role") == "tool":
            content = m.get("content") or ""
            try:
                found[m["tool_call_id"]] = orjson.loads(content)
            except orjson.JSONDecodeError:
                found[m["tool_call_id"]] = content
    return found


def turn_of(body: Any) -> int:
    """Which model call of the conversation a request is: 1 + the assistant turns it carries."""
    messages = body.get("messages", []) if isinstance(body, dict) else []
    return 1 + sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")


def _calls(turn: int, *calls: tuple[str, dict[str, Any]]) -> ToolCalls:
    # Fixed ids: the server's default id names the request number, which a re-sent request
    # changes; the conversation must not.
    return ToolCalls(
        [ToolCall(name, args, id=f"t{turn}_{i}") for i, (name, args) in enumerate(calls)],
        delay=REPLY_DELAY,
    )


def script(request: RecordedRequest) -> Reply:
    """The model's reply to a request of the conversation (see the module docstring)."""
    body = request.body
    turn = turn_of(body)
    got = _results(body["messages"])
    if turn == 1:
        return _calls(1, ("find_order", {"order_id": ORDER}))
    order = got["t1_0"]
    if turn == 2:
        reserve = [("reserve_stock", {"sku": i["sku"], "qty": i["qty"]}) for i in order["items"]]
        quote = ("quote_shipping", {"zone": order["zone"], "items": len(order["items"])})
        return _calls(2, *reserve, quote)
    quote = got["t2_2"]
    amount = sum(i["qty"] * i["price_cents"] for i in order["items"]) + quote["cents"]
    if turn == 3:
        return _calls(3, ("charge_card", {"order_id": ORDER, "amount_cents": amount}))
    receipt = got["t3_0"]["receipt"]
    if turn == 4:
        return _calls(
            4,
            ("send_email", {"to": order["email"], "subject": f"Paid: {receipt}"}),
            ("add_note", {"order_id": ORDER, "text": f"charged {amount} ({receipt})"}),
        )
    if turn == 5:
        return _calls(5, ("schedule_pickup", {"order_id": ORDER, "day": quote["day"]}))
    slot = got["t5_0"]["slot"]
    if turn == 6:
        return _calls(
            6,
            ("find_order", {"order_id": ORDER}),
            ("add_note", {"order_id": ORDER, "text": f"pickup {slot}"}),
            ("send_email", {"to": order["email"], "subject": f"Pickup {slot}"}),
        )
    if turn == TURNS:
        seen = orjson.dumps(got, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(seen).hexdigest()[:16]
        return Text(
            f"Order {ORDER} shipped: charged {amount} cents ({receipt}), pickup {slot}, "
            f"{len(got)} tool results (digest {digest}).",
            delay=REPLY_DELAY,
        )
    raise AssertionError(f"the conversation has {TURNS} model calls; request asks for {turn}")


# -- the workflow --------------------------------------------------------------------------------


def _model() -> Model:
    """`openai:crash-agent` on the official client, tagged with this worker's ledger tag."""
    import openai

    client = openai.AsyncOpenAI(
        base_url=os.environ["OPENAI_BASE_URL"],
        api_key="local",
        max_retries=0,
        default_headers={TAG_HEADER: os.environ.get(ENV_TAG, "")},
    )
    return resolve_model(MODEL, client=client)


@functools.cache
def clerk() -> Agent[str]:
    """The agent (built on first use: its client needs the worker's environment)."""
    return Agent(
        "clerk",
        model=_model(),
        instructions="You ship orders: look them up, reserve, charge, notify, book a pickup.",
        tools=TOOLS,
        max_turns=TURNS + 2,
    )


@workflow
async def agent_crash_workflow(ctx: Context, order_id: str) -> dict[str, Any]:
    """The agent crash workload's workflow: one agent run, its answer and its shape."""
    result = await clerk().run(f"Ship order {order_id} and tell me what you did.")
    calls = sum(len(m.tool_calls) for m in result.messages if m.role == "assistant")
    return {"text": result.output, "turns": result.turns, "tool_calls": calls}


AGENT = AgentWorkload(
    workload=Workload(
        ref=f"{__name__}:AGENT.workload",
        workflow=agent_crash_workflow,
        input=ORDER,
        steps=tuple(t.step for t in TOOLS),
        engine_options=REFERENCE.engine_options,  # short leases: a takeover takes ~1 s
    ),
    script=script,
    turn_of=turn_of,
    model_key="agent:clerk#1/model#{turn}",
    tag_header=TAG_HEADER,
)
"""The agent crash workload (see the module docstring)."""
