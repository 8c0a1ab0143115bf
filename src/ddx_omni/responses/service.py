"""The responses component: plans turns (history, prompt, truncation), runs them, and serves stored state."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.disconnect import finished_before_hangup
from ..core.settings import Settings
from ..llm.engine import ChatEngine, ChatParams
from ..llm.images import has_images
from ..storage import Database, open_database
from ..storage.replicas import Replica
from ..tools.base import ToolKind, ToolRequestContext
from . import items as it
from .events import DONE, EventLog, encode
from .peers import Peers, replica_url
from .prompt import PromptFitter, prepare_turn_prompt
from .schemas import (
    CONVERSATION_ITEMS_MAX,
    CreateResponseRequest,
    bad_request,
    check_metadata,
    conversation_object,
    list_object,
    new_id,
    not_found,
    response_object,
)
from .store import Store
from .tooling import bind_tools, item_types, replays
from .turn import TERMINAL_EVENTS, Turn, TurnPlan

log = logging.getLogger("ddx_omni.responses")

STOP_WAIT_S = 10.0
DISCONNECT_POLL_S = 0.25  # how often a plain JSON request checks that its client is still there


@dataclass
class Created:
    """What POST /v1/responses answers: a JSON body (with its Server-Timing), or an SSE stream."""

    body: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None
    server_timing: str | None = None


class EngineProvider(Protocol):
    """What this component needs from the LLM component."""

    async def engine(self, model_id: str | None = None) -> ChatEngine: ...


class ResponsesService:
    name = "responses"

    def __init__(self, settings: Settings, llm: EngineProvider, tools: Mapping[str, ToolKind] | None = None,
                 database: Database | None = None) -> None:
        self.settings = settings
        self.llm = llm
        self.kinds: dict[str, ToolKind] = dict(tools or {})  # built-in tool kinds by request `type`
        self.item_types = item_types(self.kinds)
        self.store = Store(database or responses_database(settings))
        lease = settings.storage
        self.replica = Replica(self.store.db, new_id("replica"), replica_url(settings), lease.heartbeat_s,
                               lease.lease_s, on_beat=self._sweep)
        self.live = (self.replica.live_sql(), (lease.lease_s,))  # selects the live replicas' ids
        self.peers = Peers(settings)
        self.turns: dict[str, Turn] = {}  # running turns, by response id
        self.error: str | None = None

    # ---- component ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        for kind in self._distinct_kinds():
            if hasattr(kind, "start"):
                await kind.start()
        try:
            await self.store.open()
            self.replica.url = replica_url(self.settings)  # the port is final only now (tests pick a free one)
            await self.replica.start()
            await self._sweep()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("responses database %s could not be opened", self.store.path)
            raise

    async def _sweep(self) -> None:
        """Fail the background responses no live process can finish: on a database of its own, all those left
        unfinished (this process has just started); on a shared one, those whose owner's lease has expired."""
        live = self.live if self.store.db.shared else None
        failed = await self.store.fail_unfinished("the server restarted before this response finished",
                                                  live_owners=live)
        if failed:
            log.warning("marked %d unfinished background responses as failed", failed)

    async def stop(self) -> None:
        tasks = [turn.task for turn in self.turns.values() if turn.task is not None]
        for turn in list(self.turns.values()):
            turn.stop("shutdown")
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT_S)
        await self.replica.stop()
        await self.peers.close()
        await self.store.close()
        for kind in self._distinct_kinds():
            if hasattr(kind, "stop"):
                try:
                    await kind.stop()
                except Exception:  # one failing tool kind must not keep the others running
                    log.exception("stopping the %s tools failed", kind.type)

    def _distinct_kinds(self) -> list[ToolKind]:
        """Each kind once, though aliases register it under several types."""
        return list({id(kind): kind for kind in self.kinds.values()}.values())

    def health(self) -> dict[str, Any]:
        state = "ready" if self.store.is_open else ("failed" if self.error else "idle")
        return {"state": state, "db_path": self.store.path, "storage": self.store.db.dialect,
                "replica": self.replica.id, "schema_version": self.store.schema_version,
                "running": len(self.turns), "error": self.error}

    # ---- responses ----------------------------------------------------------------------------------------
    async def create(self, request: CreateResponseRequest,
                     disconnected: Callable[[], Awaitable[bool]] | None = None) -> Created:
        """Plan and start a turn: the finished response, the queued one (background), or the SSE stream.
        `disconnected` tells whether the client of a plain JSON request has gone (then generation stops)."""
        started = time.perf_counter()
        plan = await self._plan(request)
        events = EventLog(keep=bool(request.background))
        queue: asyncio.Queue[dict[str, Any]] | None = None
        if request.stream:
            queue = asyncio.Queue()
            events.subscribe(queue.put_nowait)
        turn = Turn(plan, self.store, events)
        if request.background:
            # the queued row exists before the id is handed out, so GET/cancel work at once
            await self.store.save_response(plan.response, [], conversation_id=plan.conversation_id,
                                           owner=self.replica.id)
        self.turns[turn.id] = turn
        turn.start().add_done_callback(lambda _: self.turns.pop(turn.id, None))
        if queue is not None:
            return Created(stream=self._sse(turn, queue, detach_stops=not request.background))
        if request.background:
            return Created(body=dict(plan.response, output=[]))
        await self._wait_unless_left(turn, disconnected)
        total_ms, engine_ms, tools_ms = ((time.perf_counter() - started) * 1000, turn.engine_s * 1000,
                                         turn.tools_s * 1000)
        return Created(body=turn.response, server_timing=f"engine;dur={engine_ms:.3f}, tools;dur={tools_ms:.3f}, "
                                                         f"gateway;dur={total_ms - engine_ms - tools_ms:.3f}")

    async def _wait_unless_left(self, turn: Turn, disconnected: Callable[[], Awaitable[bool]] | None) -> None:
        """Wait for the turn; a client that hung up meanwhile stops it (it is saved as cancelled)."""
        assert turn.task is not None
        if disconnected is None:
            await asyncio.wait([turn.task])
        elif not await finished_before_hangup(turn.task, disconnected, DISCONNECT_POLL_S):
            turn.stop("cancelled")
            await asyncio.wait([turn.task])

    async def _sse(self, turn: Turn, queue: asyncio.Queue[dict[str, Any]], detach_stops: bool) -> AsyncIterator[bytes]:
        ended = False
        try:
            while not ended:
                event = await queue.get()
                ended = event["type"] in TERMINAL_EVENTS
                yield encode(event)  # one chunk per event: never a partial event on the wire
            yield DONE
        finally:
            if queue.put_nowait in turn.events.listeners:
                turn.events.listeners.remove(queue.put_nowait)
            if not ended and detach_stops:  # the client left: stop generating, unless it runs in the background
                turn.stop("cancelled")

    async def _plan(self, request: CreateResponseRequest) -> TurnPlan:
        """Everything before generation: validate, load the history, bind the tools, pick the engine, fit the
        prompt. Any error here is an HTTP error (nothing was started or stored)."""
        conversation_id = request.conversation_id
        store = request.store is not False
        if request.background and not store:
            raise bad_request("background responses must be stored: remove store=false", "background")
        metadata = check_metadata(request.metadata)
        request.tools = it.served_tools(request.tools, self.kinds)
        function_echo, chat_tools = it.function_tools(request.tools)
        tool_choice = it.chat_tool_choice(request.tool_choice)
        history = await self._history(request.previous_response_id, conversation_id)
        input_items = await it.normalize_input(request.input, self.store.find_item, passthrough=self.item_types)
        if not history and not input_items:
            raise bad_request("input: give at least one item (or a previous_response_id / conversation with history)",
                              "input")
        response_id = new_id("resp")
        context = ToolRequestContext(response_id, history, list(request.include or []), input_items,
                                     request.tool_choice)
        builtin_echo, turn_tools = await bind_tools(self.kinds, request.tools, context)
        turn_tools.check_choice(tool_choice)
        response = response_object(request, response_id=response_id, model=request.model or "",
                                   created_at=time.time(), status="queued" if request.background else "in_progress",
                                   tools=_echo_in_order(request.tools, function_echo, builtin_echo),
                                   metadata=metadata, conversation_id=conversation_id,
                                   default_temperature=self.settings.llm.default_temperature)
        fmt = it.response_format(response["text"]["format"])
        engine = await self.llm.engine(request.model)
        response["model"] = request.model or engine.model_id
        params = ChatParams(messages=[], tools=chat_tools, tool_choice=tool_choice,
                            max_tokens=request.max_output_tokens, temperature=response["temperature"],
                            top_p=response["top_p"],
                            presence_penalty=request.presence_penalty, frequency_penalty=request.frequency_penalty,
                            response_format=fmt)
        items = history + input_items
        fitter = PromptFitter(engine, request.instructions, request.truncation, request.max_output_tokens or 1,
                              replays(self.kinds, items), images=self._image_loader(engine.model_id))
        prompt_tokens, first = await prepare_turn_prompt(fitter, params, items,
                                                         self.settings.responses.default_max_output_tokens,
                                                         more_tools=bool(turn_tools.bound))
        return TurnPlan(response=response, input_items=input_items, params=params, engine=engine, store=store,
                        conversation_id=conversation_id, prompt_tokens=prompt_tokens, engine_s=fitter.engine_s,
                        context=items[first:], fitter=fitter, tools=turn_tools,
                        max_tool_calls=request.max_tool_calls or self.settings.responses.max_tool_calls)

    async def count_input_tokens(self, request: CreateResponseRequest) -> dict[str, Any]:
        """The prompt a response with these settings would have, counted by the engine; nothing is stored."""
        _, chat_tools = it.function_tools(request.tools)
        history = await self._history(request.previous_response_id, request.conversation_id)
        items = history + await it.normalize_input(request.input, self.store.find_item, passthrough=self.item_types)
        engine = await self.llm.engine(request.model)
        params = ChatParams(messages=it.to_chat_messages(items, request.instructions, replays(self.kinds, items)),
                            tools=chat_tools)
        await self._image_loader(engine.model_id)(params)
        return {"object": "response.input_tokens", "input_tokens": await engine.count_prompt_tokens(params)}

    def _image_loader(self, model_id: str) -> Callable[[ChatParams], Awaitable[None]]:
        """Loads a prompt's images for `model_id` (a 400 when it reads text only), each image once per turn."""
        memo: dict[str, Any] = {}

        async def load(params: ChatParams) -> None:
            if has_images(params):  # only then is the LLM component's image input needed
                # the LLM component's ImageInput (stand-in components without one serve text only)
                await self.llm.images.prepare(model_id, params, memo=memo)  # type: ignore[attr-defined]

        return load

    async def _history(self, previous_id: str | None, conversation_id: str | None) -> list[dict[str, Any]]:
        """The items a new turn continues from: the stored chain, or the conversation's items."""
        if previous_id and conversation_id:
            raise bad_request("previous_response_id and conversation cannot be used together", "conversation")
        if previous_id:
            previous = self.turns.get(previous_id)
            if previous is not None and previous.task is not None and not previous.task.done():
                raise bad_request(f"previous response {previous_id} is still in progress", "previous_response_id",
                                  code="response_in_progress")
            status = await self.store.response_status(previous_id)
            if status is None:
                raise not_found(f"Previous response with id '{previous_id}' not found.", "previous_response_id")
            if status in ("queued", "in_progress"):  # running on another replica
                raise bad_request(f"previous response {previous_id} is still in progress", "previous_response_id",
                                  code="response_in_progress")
            return await self.store.chain_items(previous_id)
        if conversation_id:
            if await self.store.get_conversation(conversation_id) is None:
                raise not_found(f"Conversation with id '{conversation_id}' not found.", "conversation")
            return await self.store.conversation_items(conversation_id)
        return []

    async def get(self, response_id: str) -> dict[str, Any]:
        turn = self.turns.get(response_id)
        if turn is not None and turn.plan.store and turn.response["background"]:
            return dict(turn.response, output=list(turn.out.items))
        response = await self.store.get_response(response_id)
        if response is None:
            raise not_found(f"Response with id '{response_id}' not found.")
        if response["status"] in ("queued", "in_progress"):  # its live output is with its owner
            owner = await self._owner_url(response_id)
            if owner is not None:
                return await self.peers.call("GET", f"{owner}/v1/responses/{response_id}")
        return response

    async def _owner_url(self, response_id: str) -> str | None:
        """The URL of the other live replica running this response, if one is."""
        found = await self.store.running_owner(response_id, self.live)
        return found[1] if found is not None and found[0] != self.replica.id else None

    async def attach(self, response_id: str, starting_after: int | None) -> AsyncIterator[bytes]:
        """GET ?stream=true: the events of a background response still running, from `starting_after` on."""
        turn = self.turns.get(response_id)
        if turn is None and (owner := await self._owner_url(response_id)) is not None:
            after = "" if starting_after is None else f"&starting_after={starting_after}"
            return await self.peers.stream(f"{owner}/v1/responses/{response_id}?stream=true{after}")
        if turn is None or turn.events.history is None or turn.task is None or turn.task.done():
            await self.get(response_id)  # 404 when unknown
            raise bad_request("Only a background response that is still running can be streamed; GET it without "
                              "stream to read the stored result.", "stream")
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        turn.events.subscribe(queue.put_nowait, starting_after)
        return self._sse(turn, queue, detach_stops=False)

    async def delete(self, response_id: str) -> dict[str, Any]:
        turn = self.turns.get(response_id)
        if turn is not None:
            turn.stop("cancelled")
            await _settled(turn)
        elif (owner := await self._owner_url(response_id)) is not None:
            await self.peers.call("POST", f"{owner}/v1/responses/{response_id}/cancel")
        if not await self.store.delete_response(response_id):
            raise not_found(f"Response with id '{response_id}' not found.")
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def cancel(self, response_id: str) -> dict[str, Any]:
        turn = self.turns.get(response_id)
        if turn is not None and turn.response["background"]:
            turn.stop("cancelled")
            await _settled(turn)
            return turn.response
        if (owner := await self._owner_url(response_id)) is not None:
            return await self.peers.call("POST", f"{owner}/v1/responses/{response_id}/cancel")
        response = await self.get(response_id)
        if not response.get("background"):
            raise bad_request("Only background responses can be cancelled.", "response_id")
        return response  # already finished: cancelling is a no-op, as OpenAI does

    async def input_items(self, response_id: str, *, after: str | None, limit: int, order: str) -> dict[str, Any]:
        if not await self.store.response_exists(response_id):
            raise not_found(f"Response with id '{response_id}' not found.")
        data, has_more = await self.store.page_input_items(response_id, after=after, limit=limit, order=order)
        return list_object(data, has_more)

    # ---- conversations --------------------------------------------------------------------------------------
    async def create_conversation(self, items: list[dict[str, Any]] | None,
                                  metadata: dict[str, Any] | None) -> dict[str, Any]:
        conversation = conversation_object(new_id("conv"), check_metadata(metadata))
        normalized = await self._conversation_input(items or [])
        await self.store.create_conversation(conversation, normalized)
        return conversation

    async def _conversation_input(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(items) > CONVERSATION_ITEMS_MAX:
            raise bad_request(f"items: at most {CONVERSATION_ITEMS_MAX} items can be added at a time", "items")
        return await it.normalize_input(items, self.store.find_item, param="items", passthrough=self.item_types)

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            raise not_found(f"Conversation with id '{conversation_id}' not found.")
        return conversation

    async def update_conversation(self, conversation_id: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
        conversation = await self.conversation(conversation_id)
        conversation["metadata"] = check_metadata(metadata)
        await self.store.update_conversation(conversation_id, conversation["metadata"])
        return conversation

    async def delete_conversation(self, conversation_id: str) -> dict[str, Any]:
        await self.conversation(conversation_id)
        await self.store.delete_conversation(conversation_id)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    async def add_items(self, conversation_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        await self.conversation(conversation_id)
        normalized = await self._conversation_input(items)
        await self.store.add_conversation_items(conversation_id, normalized)
        return list_object(normalized, False)

    async def list_items(self, conversation_id: str, *, after: str | None, limit: int, order: str) -> dict[str, Any]:
        await self.conversation(conversation_id)
        data, has_more = await self.store.page_conversation_items(conversation_id, after=after, limit=limit,
                                                                  order=order)
        return list_object(data, has_more)

    async def item(self, conversation_id: str, item_id: str) -> dict[str, Any]:
        await self.conversation(conversation_id)
        found = await self.store.conversation_item(conversation_id, item_id)
        if found is None:
            raise not_found(f"Item with id '{item_id}' not found in conversation '{conversation_id}'.")
        return found

    async def delete_item(self, conversation_id: str, item_id: str) -> dict[str, Any]:
        conversation = await self.conversation(conversation_id)
        if not await self.store.delete_conversation_item(conversation_id, item_id):
            raise not_found(f"Item with id '{item_id}' not found in conversation '{conversation_id}'.")
        return conversation  # OpenAI answers an item deletion with the conversation


async def _settled(turn: Turn) -> None:
    """Wait for a stopped turn's task to save its response and end its stream."""
    if turn.task is not None:
        await asyncio.wait([turn.task])


def _echo_in_order(tools: list[dict[str, Any]] | None, functions: list[dict[str, Any]],
                   builtins: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The response's `tools`: function and built-in echoes, back in the order the request gave them."""
    queues = {True: iter(functions), False: iter(builtins)}
    return [next(queues[tool.get("type") == "function"]) for tool in tools or []]


def responses_database(settings: Settings) -> Database:
    """[storage].url, or (empty) the SQLite file [responses].db_path."""
    return open_database(settings.storage.url, default_sqlite=settings.responses.db_path,
                         synchronous=settings.responses.synchronous, pool_size=settings.storage.pool_size)


def create_service(settings: Settings, llm: EngineProvider, tools: Mapping[str, ToolKind] | None = None,
                   database: Database | None = None) -> ResponsesService:
    return ResponsesService(settings, llm, tools, database)
