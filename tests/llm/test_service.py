"""The LlmService / ChatEngine contract other capabilities (the Responses API) call in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddx_omni.core.errors import ContextTooLong, ModelNotFound
from ddx_omni.llm.engine import ChatDelta, ChatParams
from ddx_omni.llm.service import create_service

pytestmark = pytest.mark.slow


async def collect(engine, params: ChatParams) -> list[ChatDelta]:
    return [delta async for delta in engine.stream(params)]


async def test_real_engine_contract(make_settings, tiny_model_dir: Path) -> None:
    service = create_service(make_settings({"llm.use_real_model": True, "llm.model": str(tiny_model_dir),
                                            "llm.default_max_tokens": 5}))
    await service.start()
    try:
        engine = await service.engine(None)  # waits for the background load
        assert service.health()["state"] == "ready" and service.health()["mode"] == "real"
        assert engine.model_id == str(tiny_model_dir) and engine.context_window == 4096
        params = ChatParams(messages=[{"role": "user", "content": "hi"}], temperature=0, logit_bias={2: -100})
        prompt_tokens = await engine.count_prompt_tokens(params)
        deltas = await collect(engine, params)
        last = deltas[-1]
        assert last.finish_reason == "length" and all(d.finish_reason is None for d in deltas[:-1])
        assert last.usage is not None and last.usage.prompt_tokens == prompt_tokens
        assert last.usage.completion_tokens == 5  # llm.default_max_tokens when the params give none
        with pytest.raises(ContextTooLong):
            await collect(engine, ChatParams(messages=params.messages, max_tokens=5000))
        with pytest.raises(ModelNotFound):
            await service.engine("not-registered")
        assert (await service.engine(str(tiny_model_dir))) is engine
    finally:
        await service.stop()


async def test_mock_engine_answers_any_model(make_settings) -> None:
    service = create_service(make_settings())
    await service.start()
    engine = await service.engine("whatever/model")
    (delta,) = await collect(engine, ChatParams(messages=[{"role": "user", "content": "hi"}]))
    assert engine.model_id == "whatever/model" and delta.finish_reason == "tool_calls"
    assert delta.tool_calls[0].name == "get_weather" and delta.usage is not None
    with pytest.raises(ModelNotFound):
        await service.load("x")
    await service.stop()
