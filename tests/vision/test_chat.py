"""Images through /v1/chat/completions (openai SDK) on the tiny Qwen2-VL, and the errors of bad image input."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from .conftest import VLM_ID, data_url, png

PATCH_MERGE = 28  # the tiny model's processor: 14-pixel patches merged 2×2


def image_tokens(width: int, height: int) -> int:
    """What Qwen2-VL's processor gives an image within min/max pixels: sides rounded to 28, one token per 28×28."""
    return round(width / PATCH_MERGE) * round(height / PATCH_MERGE)


def ask(client: openai.OpenAI, image: dict[str, Any], **kw: Any) -> Any:
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is in this image?"},
                                             {"type": "image_url", "image_url": image}]}]
    return client.chat.completions.create(model=kw.pop("model", VLM_ID), messages=messages,
                                          max_tokens=kw.pop("max_tokens", 4), **kw)


def test_registry_marks_the_vlm_multimodal(client: openai.OpenAI) -> None:
    cards = {m.id: m for m in client.models.list().data}
    assert cards[VLM_ID].multimodal is True and cards[VLM_ID].arch == "qwen2_vl"
    assert not any(m.multimodal for i, m in cards.items() if i != VLM_ID)


def test_data_url_image_is_answered(client: openai.OpenAI) -> None:
    reply = ask(client, {"url": data_url(png(64, 64))})
    assert reply.model == VLM_ID and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens >= 1


def test_prompt_tokens_grow_with_the_image_as_the_processor_says(client: openai.OpenAI) -> None:
    sizes = [(64, 64), (128, 128), (256, 200), (448, 448)]
    counts = {size: ask(client, {"url": data_url(png(*size))}, max_tokens=1).usage.prompt_tokens for size in sizes}
    base = counts[sizes[0]] - image_tokens(*sizes[0])  # the text around the image
    assert {size: counts[size] - base for size in sizes} == {size: image_tokens(*size) for size in sizes}
    assert counts[(448, 448)] - base == 256 and counts[(64, 64)] - base == 4


def test_detail_low_shrinks_a_large_image(client: openai.OpenAI) -> None:
    big = data_url(png(896, 896))
    high = ask(client, {"url": big, "detail": "high"}, max_tokens=1).usage.prompt_tokens
    low = ask(client, {"url": big, "detail": "low"}, max_tokens=1).usage.prompt_tokens
    assert high - low == image_tokens(896, 896) - image_tokens(512, 512)  # low: at most 512×512 pixels


def test_streaming_with_an_image(client: openai.OpenAI) -> None:
    chunks = list(ask(client, {"url": data_url(png(96, 64))}, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > image_tokens(96, 64)


def test_remote_image_url_is_fetched(client: openai.OpenAI, image_host: str) -> None:
    remote = ask(client, {"url": f"{image_host}/png/128/128"}, max_tokens=1).usage.prompt_tokens
    inline = ask(client, {"url": data_url(png(128, 128))}, max_tokens=1).usage.prompt_tokens
    assert remote == inline


def test_next_turn_reuses_the_cache_of_the_same_image(client: openai.OpenAI) -> None:
    image = {"type": "image_url", "image_url": {"url": data_url(png(128, 96, (10, 200, 10)))}}
    first = [{"role": "user", "content": [{"type": "text", "text": "Describe it."}, image]}]
    answer = client.chat.completions.create(model=VLM_ID, messages=first, max_tokens=3, temperature=0)
    second = [*first, {"role": "assistant", "content": answer.choices[0].message.content},
              {"role": "user", "content": "And the colour?"}]
    again = client.chat.completions.create(model=VLM_ID, messages=second, max_tokens=1, temperature=0)
    assert again.usage.prompt_tokens_details.cached_tokens > image_tokens(128, 96)
    other = {"type": "image_url", "image_url": {"url": data_url(png(128, 96, (10, 10, 200)))}}  # same size
    swapped = [{"role": "user", "content": [{"type": "text", "text": "Describe it."}, other]}, *second[1:]]
    fresh = client.chat.completions.create(model=VLM_ID, messages=swapped, max_tokens=1, temperature=0)
    # the same token ids, another image: its cache must not be reused past the image
    assert fresh.usage.prompt_tokens == again.usage.prompt_tokens
    assert fresh.usage.prompt_tokens_details.cached_tokens == 0


@pytest.mark.parametrize(("image", "code"), [
    ({"url": "data:image/png;base64,not*base64!"}, "invalid_image"),
    ({"url": "data:text/plain;base64,aGVsbG8="}, "invalid_image"),
    ({"url": "data:image/png,rawbytes"}, "invalid_image"),
    ({"url": data_url(b"this is no picture")}, "invalid_image"),
    ({"url": data_url(b"\0" * 300_000)}, "image_too_large"),  # the server caps an image at 200 000 bytes
    ({"url": "ftp://example.com/a.png"}, "invalid_image"),
    ({"url": data_url(png(8, 8)), "detail": "ultra"}, "invalid_image"),
])
def test_bad_images_are_clear_400s(client: openai.OpenAI, image: dict[str, Any], code: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, image)
    body = caught.value.body
    assert body["code"] == code and body["message"].startswith("Image 1: ")
    assert body["param"] == "messages[0].content[1]"


@pytest.mark.parametrize(("path", "code"), [("/big", "image_too_large"), ("/text", "invalid_image")])
def test_bad_remote_images(client: openai.OpenAI, image_host: str, path: str, code: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, {"url": f"{image_host}{path}"})
    assert caught.value.body["code"] == code


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/a.png", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]/a.png", "http://10.0.0.1/a.png"])
def test_private_addresses_are_refused(client: openai.OpenAI, url: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, {"url": url})
    assert caught.value.body["code"] == "image_url_refused" and "non-public address" in caught.value.body["message"]


def test_too_many_images(vision_server: str) -> None:
    parts = [{"type": "image_url", "image_url": {"url": data_url(png(8, 8))}}] * 17
    answer = httpx.post(f"{vision_server}/v1/chat/completions", timeout=30,
                        json={"model": VLM_ID, "messages": [{"role": "user", "content": parts}]})
    assert answer.status_code == 400 and answer.json()["code"] == "too_many_images"


def test_a_text_only_model_refuses_images_by_name(server_factory: Any) -> None:
    url = server_factory()  # mock mode: the default model, a text model
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, {"url": data_url(png(8, 8))}, model="mlx-community/Qwen3-4B-Instruct-2507-4bit")
    body = caught.value.body
    assert body["code"] == "model_not_multimodal" and body["param"] == "messages[0].content[1]"
    assert "Qwen3-4B-Instruct-2507-4bit reads text only" in body["message"]
    assert '"multimodal": true' in body["message"] and "/v1/models/load" in body["message"]
