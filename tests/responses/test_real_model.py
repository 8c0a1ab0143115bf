"""Real mode on the tiny MLX model: a chain's prompt really contains the earlier turns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import sdk

pytestmark = pytest.mark.slow


def test_chain_prompt_grows_and_equals_the_explicit_history(server_factory: Any, tiny_model_dir: Path) -> None:
    url = server_factory({"llm.use_real_model": True, "llm.model": str(tiny_model_dir)})
    client = sdk(url)
    model = str(tiny_model_dir)
    turns = ["Hello there, how are you?", "Tell me about the weather.", "And tomorrow?"]
    chain = []
    previous = None
    for text in turns:
        response = client.responses.create(model=model, input=text, previous_response_id=previous,
                                           max_output_tokens=6, temperature=0)
        assert response.status in ("completed", "incomplete") and response.usage.output_tokens > 0
        chain.append(response)
        previous = response.id
    counts = [r.usage.input_tokens for r in chain]
    assert counts[0] < counts[1] < counts[2]
    # growth covers the earlier turn's output too, not only the new input
    assert counts[1] - counts[0] > chain[0].usage.output_tokens

    # the same conversation sent in full, statelessly, costs exactly the same prompt
    history: list[dict[str, Any]] = []
    for text, response in zip(turns[:2], chain[:2], strict=True):
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": response.output_text}]
    explicit = client.responses.create(model=model, input=[*history, {"role": "user", "content": turns[2]}],
                                       max_output_tokens=1, store=False)
    assert explicit.usage.input_tokens == counts[2]
