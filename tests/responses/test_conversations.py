"""Conversations: CRUD, items, and responses that read and extend a conversation."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from .conftest import sdk
from .support import ScriptedEngine


def test_conversation_crud_and_items(serve: Any) -> None:
    url = serve(ScriptedEngine())
    client = sdk(url)
    conversation = client.conversations.create(items=[{"role": "user", "content": "hello"}],
                                               metadata={"topic": "demo"})
    assert conversation.id.startswith("conv_") and conversation.object == "conversation"
    assert conversation.metadata == {"topic": "demo"}
    assert client.conversations.retrieve(conversation.id).created_at == conversation.created_at
    updated = client.conversations.update(conversation.id, metadata={"topic": "changed"})
    assert updated.metadata == {"topic": "changed"}
    assert client.conversations.retrieve(conversation.id).metadata == {"topic": "changed"}

    added = client.conversations.items.create(conversation.id, items=[
        {"role": "user", "content": f"item {n}"} for n in range(12)])
    assert len(added.data) == 12 and added.first_id == added.data[0].id
    listed = list(client.conversations.items.list(conversation.id, limit=5, order="asc"))
    assert [i.content[0].text for i in listed] == ["hello", *[f"item {n}" for n in range(12)]]
    newest = list(client.conversations.items.list(conversation.id, limit=5))  # default order desc
    assert [i.id for i in newest] == [i.id for i in reversed(listed)]

    one = client.conversations.items.retrieve(listed[3].id, conversation_id=conversation.id)
    assert one.content[0].text == "item 2"
    after_delete = client.conversations.items.delete(listed[3].id, conversation_id=conversation.id)
    assert after_delete.id == conversation.id
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(listed[3].id, conversation_id=conversation.id)
    assert len(list(client.conversations.items.list(conversation.id))) == 12

    with pytest.raises(openai.BadRequestError):
        client.conversations.items.create(conversation.id, items=[{"role": "user", "content": "x"}] * 21)
    with pytest.raises(openai.BadRequestError):
        client.conversations.create(metadata={f"k{n}": "v" for n in range(17)})

    deleted = httpx.delete(f"{url}/v1/conversations/{conversation.id}", timeout=30).json()
    assert deleted == {"id": conversation.id, "object": "conversation.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError):
        list(client.conversations.items.list(conversation.id))


def test_responses_read_and_extend_their_conversation(serve: Any) -> None:
    engine = ScriptedEngine()
    client = sdk(serve(engine))
    conversation = client.conversations.create(items=[{"role": "user", "content": "my name is Ada"},
                                                      {"role": "assistant", "content": "hi Ada"}])
    first = client.responses.create(model="m", input="who am I", conversation=conversation.id,
                                    instructions="not kept")
    assert first.conversation is not None and first.conversation.id == conversation.id
    assert engine.prompts[0] == [{"role": "system", "content": "not kept"},
                                 {"role": "user", "content": "my name is Ada"},
                                 {"role": "assistant", "content": "hi Ada"}, {"role": "user", "content": "who am I"}]
    second = client.responses.create(model="m", input="again", conversation={"id": conversation.id})
    assert [m["content"] for m in engine.prompts[1]] == [
        "my name is Ada", "hi Ada", "who am I", "Echo: who am I", "again"]
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [i.type for i in items] == ["message"] * 6
    assert items[3].id == first.output[0].id and items[5].id == second.output[0].id
    # a response's own input items are only its new input
    assert [i.content[0].text for i in client.responses.input_items.list(second.id)] == ["again"]
