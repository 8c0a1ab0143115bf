"""Images through /v1/responses (openai SDK): the Open Responses `image-input` case, history replay, file_id."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.responses.test_create import NON_NULL

from .conftest import VLM_ID, data_url, png
from .test_chat import image_tokens


def image_input(image: dict[str, Any], text: str = "What is in this image?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "input_text", "text": text}, {"type": "input_image", **image}]}]


def test_image_input_case(client: openai.OpenAI) -> None:
    """Open Responses compliance `image-input`: a completed response in the strict schema."""
    response = client.responses.create(model=VLM_ID, max_output_tokens=4,
                                       input=image_input({"image_url": data_url(png(64, 64))}))
    assert response.status == "completed" or response.status == "incomplete"  # random weights may hit the cap
    assert response.error is None and response.object == "response" and response.id.startswith("resp_")
    body = response.model_dump()
    assert all(body[field] is not None for field in NON_NULL), [f for f in NON_NULL if body[f] is None]
    message = response.output[-1]
    assert message.type == "message" and message.id and message.status
    assert message.content[0].type == "output_text" and message.content[0].logprobs == []
    assert response.usage.input_tokens > image_tokens(64, 64) and response.usage.output_tokens >= 1


def test_image_is_stored_and_replayed(client: openai.OpenAI) -> None:
    first = client.responses.create(model=VLM_ID, max_output_tokens=2, input=image_input(
        {"image_url": data_url(png(128, 128)), "detail": "high"}))
    items = client.responses.input_items.list(first.id).data
    part = items[0].content[1]
    assert part.type == "input_image" and part.detail == "high" and part.image_url.startswith("data:image/png")
    follow = client.responses.create(model=VLM_ID, max_output_tokens=1, input="And now?",
                                     previous_response_id=first.id)
    # the stored image is sent to the model again: the follow-up prompt holds its tokens
    assert follow.usage.input_tokens > first.usage.input_tokens
    assert follow.usage.input_tokens_details.cached_tokens > image_tokens(128, 128)


def test_input_tokens_count_the_image(vision_server: str) -> None:
    def count(size: tuple[int, int]) -> int:
        body = {"model": VLM_ID, "input": image_input({"image_url": data_url(png(*size))})}
        return httpx.post(f"{vision_server}/v1/responses/input_tokens", json=body, timeout=30).json()["input_tokens"]

    assert count((256, 256)) - count((64, 64)) == image_tokens(256, 256) - image_tokens(64, 64)


@pytest.mark.parametrize(("image", "code"), [
    ({"file_id": "file_abc"}, "file_not_found"),  # images by file_id go through /v1/files: an unknown id is a 404
    ({"image_url": "data:image/png;base64,@@@"}, "invalid_image"),
    ({"image_url": "http://127.0.0.1:1/x.png"}, "image_url_refused"),
    ({}, "invalid_request"),
    ({"image_url": data_url(png(8, 8)), "detail": "huge"}, "invalid_request"),
])
def test_bad_input_images(client: openai.OpenAI, image: dict[str, Any], code: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=VLM_ID, input=image_input(image))
    assert caught.value.body["code"] == code


def test_a_text_only_model_refuses_input_image(server_factory: Any) -> None:
    client = openai.OpenAI(base_url=f"{server_factory()}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="mlx-community/Qwen3-4B-Instruct-2507-4bit",
                                input=image_input({"image_url": data_url(png(8, 8))}))
    assert caught.value.body["code"] == "model_not_multimodal"
    assert "reads text only" in caught.value.body["message"]
