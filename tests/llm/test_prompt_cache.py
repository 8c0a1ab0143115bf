"""The multi-conversation prompt cache: each conversation's next turn starts from its own stored prefix, however
many other conversations ran in between, on chat and on Responses (`input_tokens_details.cached_tokens`)."""

from __future__ import annotations

from pathlib import Path

import openai

from .conftest import EOS_BIAS

OTHERS = [f"Conversation {i}: tell me about the number {i}" for i in range(4)]


def test_each_conversation_keeps_its_prefix_while_others_run(client: openai.OpenAI, eos_id: int) -> None:
    def turn(messages: list[dict]) -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(model=None, messages=messages, max_tokens=6, temperature=0,  # type: ignore[arg-type]
                                              logit_bias={str(eos_id): EOS_BIAS})

    histories = {text: [{"role": "user", "content": text}] for text in ["Main thread: the harbour", *OTHERS]}
    earlier: dict[str, int] = {}  # each conversation's previous prompt length
    for round_ in range(3):
        for name, history in histories.items():  # five conversations, interleaved turn by turn
            answer = turn(history)
            cached = answer.usage.prompt_tokens_details.cached_tokens
            if name in earlier:  # its whole previous prompt came from the cache, four other conversations later
                assert cached >= earlier[name], (round_, name, cached, earlier[name])
            else:
                assert cached < answer.usage.prompt_tokens // 2  # nothing of it was stored yet
            earlier[name] = answer.usage.prompt_tokens
            history += [{"role": "assistant", "content": answer.choices[0].message.content},
                        {"role": "user", "content": f"and then, part {round_}?"}]


def test_responses_report_the_cached_prefix_of_a_chain(server_factory, tiny_model_dir: Path) -> None:
    url = server_factory({"llm.use_real_model": True, "llm.model": str(tiny_model_dir)})
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=60)
    model = str(tiny_model_dir)
    first = sdk.responses.create(model=model, input="Hello there, tell me a story.", max_output_tokens=6,
                                 temperature=0)
    assert first.usage.input_tokens_details.cached_tokens < first.usage.input_tokens
    for other in OTHERS:  # other conversations in between
        sdk.responses.create(model=model, input=other, max_output_tokens=4, temperature=0, store=False)
    second = sdk.responses.create(model=model, input="And then?", previous_response_id=first.id,
                                  max_output_tokens=6, temperature=0)
    # the first turn's prompt (and what the model said) was not prefilled again
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
