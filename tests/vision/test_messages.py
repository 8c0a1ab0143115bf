"""Images through /v1/messages (anthropic SDK): base64 and url image sources, and a text-only model's 400."""

from __future__ import annotations

import base64
from typing import Any

import pytest

import anthropic

from .conftest import VLM_ID, png
from .test_chat import image_tokens


def sdk(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="unused", timeout=60, max_retries=0)


def base64_block(width: int, height: int) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                        "data": base64.b64encode(png(width, height)).decode()}}


def ask(client: anthropic.Anthropic, block: dict[str, Any], model: str = VLM_ID) -> Any:
    return client.messages.create(model=model, max_tokens=3, messages=[
        {"role": "user", "content": [block, {"type": "text", "text": "What is in this image?"}]}])


def test_base64_and_url_images(vision_server: str, image_host: str) -> None:
    client = sdk(vision_server)
    inline = ask(client, base64_block(128, 128))
    assert inline.type == "message" and inline.stop_reason in ("end_turn", "max_tokens")
    remote = ask(client, {"type": "image", "source": {"type": "url", "url": f"{image_host}/png/128/128"}})
    assert remote.usage.input_tokens + (remote.usage.cache_read_input_tokens or 0) == \
        inline.usage.input_tokens + (inline.usage.cache_read_input_tokens or 0)


def test_count_tokens_grow_with_the_image(vision_server: str) -> None:
    client = sdk(vision_server)

    def count(width: int, height: int) -> int:
        return client.messages.count_tokens(model=VLM_ID, messages=[
            {"role": "user", "content": [base64_block(width, height), {"type": "text", "text": "Hi"}]}]).input_tokens

    assert count(224, 224) - count(56, 56) == image_tokens(224, 224) - image_tokens(56, 56)


def test_streaming_with_an_image(vision_server: str) -> None:
    with sdk(vision_server).messages.stream(model=VLM_ID, max_tokens=3, messages=[
            {"role": "user", "content": [base64_block(64, 64), {"type": "text", "text": "Describe"}]}]) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens >= 1 and final.stop_reason in ("end_turn", "max_tokens")


def test_private_url_is_a_400(vision_server: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(sdk(vision_server), {"type": "image", "source": {"type": "url", "url": "http://127.0.0.1:1/a.png"}})
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "non-public address" in caught.value.body["error"]["message"]


def test_a_text_only_model_refuses_image_blocks(server_factory: Any) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(sdk(server_factory()), base64_block(8, 8), model="mlx-community/Qwen3-4B-Instruct-2507-4bit")
    assert "reads text only and cannot take images" in caught.value.body["error"]["message"]
