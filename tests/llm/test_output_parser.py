"""Tool-call parsing and stop strings on literal model outputs, fed whole and in awkward chunks."""

from __future__ import annotations

import json

import pytest
from mlx_lm.tool_parsers import json_tools, qwen3_coder

from ddx_omni.llm.output import OutputParser

WEATHER_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]

# What Qwen2.5/Qwen3-Instruct (json_tools) and Qwen3-Coder write when they call tools.
JSON_TOOLS_OUTPUT = ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Berlin"}}\n'
                     '</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n'
                     '</tool_call>')
QWEN3_CODER_OUTPUT = ("<tool_call>\n<function=get_weather>\n<parameter=city>\nBerlin\n</parameter>\n"
                      "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>")


def run(parser: OutputParser, chunks: list[str]) -> tuple[str, list, bool]:
    text, calls, stopped = "", [], False
    for chunk in chunks:
        piece = parser.feed(chunk)
        text, calls, stopped = text + piece.text, calls + piece.tool_calls, stopped or piece.stopped
        if piece.stopped:
            break
    tail = parser.finish()
    return text + tail.text, calls + tail.tool_calls, stopped


def json_parser(stop: list[str] = ()) -> OutputParser:  # type: ignore[assignment]
    return OutputParser(stop, json_tools.tool_call_start, json_tools.tool_call_end, json_tools.parse_tool_call,
                        WEATHER_TOOLS)


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_json_tools_output_gives_calls_and_clean_content(size: int) -> None:
    chunks = [JSON_TOOLS_OUTPUT[i:i + size] for i in range(0, len(JSON_TOOLS_OUTPUT), size)]
    text, calls, stopped = run(json_parser(), chunks)
    assert text.strip() == "Let me check."
    assert "<tool_call>" not in text and "tool_call" not in text
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Berlin"}), ("get_weather", {"city": "Paris", "days": 2})]
    assert len({c.id for c in calls}) == 2 and all(c.id.startswith("call_") for c in calls)
    assert not stopped


def test_qwen3_coder_output_uses_the_tool_schema_for_types() -> None:
    parser = OutputParser([], qwen3_coder.tool_call_start, qwen3_coder.tool_call_end, qwen3_coder.parse_tool_call,
                          WEATHER_TOOLS)
    text, calls, _ = run(parser, [QWEN3_CODER_OUTPUT[i:i + 5] for i in range(0, len(QWEN3_CODER_OUTPUT), 5)])
    assert text == ""
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Berlin", "days": 3})]


def test_invalid_tool_call_keeps_the_words_but_not_the_markup() -> None:
    text, calls, _ = run(json_parser(), ["<tool_call>\nnot json at all\n</tool_call>"])
    assert calls == [] and text == "not json at all"


def test_unterminated_tool_call_is_parsed_at_the_end() -> None:
    text, calls, _ = run(json_parser(), ['<tool_call>\n{"name": "get_weather", "arguments": {}}'])
    assert text == "" and [c.name for c in calls] == ["get_weather"]


def test_without_a_tool_parser_markup_is_plain_text() -> None:
    text, calls, _ = run(OutputParser(["END"]), ["a <tool_call> b"])
    assert text == "a <tool_call> b" and calls == []


@pytest.mark.parametrize("chunks", [["Hello wor", "ld STOP here"], ["Hello world S", "T", "OP here"],
                                    ["Hello world STOP here"], ["Hello world ST", "OP"]])
def test_stop_string_across_chunks_is_trimmed(chunks: list[str]) -> None:
    text, _, stopped = run(json_parser(["STOP"]), chunks)
    assert text == "Hello world " and stopped


def test_held_back_prefix_is_released_when_it_is_not_a_stop() -> None:
    parser = json_parser(["STOP"])
    first = parser.feed("abc ST")
    assert first.text == "abc "  # "ST" could begin STOP: held back
    second = parser.feed("ART")
    assert second.text == "START" and not second.stopped


def test_earliest_of_several_stops_wins_and_a_tag_prefix_is_not_lost() -> None:
    text, _, stopped = run(json_parser(["zz", "yy"]), ["a <tool", "_x yy b zz"])
    assert text == "a <tool_x " and stopped


def test_calls_not_asked_for_are_dropped_with_their_markup() -> None:
    parser = OutputParser([], json_tools.tool_call_start, json_tools.tool_call_end, json_tools.parse_tool_call,
                          None, emit_calls=False)
    text, calls, _ = run(parser, [JSON_TOOLS_OUTPUT[:20], JSON_TOOLS_OUTPUT[20:]])
    assert calls == [] and text.strip() == "Let me check."


def test_a_reopened_tag_inside_a_call_does_not_leak() -> None:
    text, calls, _ = run(json_parser(),
                         ['<tool_call>\n<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>'])
    assert text == "" and [c.name for c in calls] == ["get_weather"]


QWEN3_THINKING_OUTPUT = ("<think>\nThe user wants the weather. I should call get_weather.\n</think>\n\n"
                         '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Berlin"}}\n</tool_call>')


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_reasoning_is_kept_apart_from_content_and_calls(size: int) -> None:
    parser = OutputParser(["STOP"], json_tools.tool_call_start, json_tools.tool_call_end, json_tools.parse_tool_call,
                          WEATHER_TOOLS, think=("<think>", "</think>"))
    reasoning, text, calls = "", "", []
    for i in range(0, len(QWEN3_THINKING_OUTPUT), size):
        piece = parser.feed(QWEN3_THINKING_OUTPUT[i:i + size])
        reasoning, text, calls = reasoning + piece.reasoning, text + piece.text, calls + piece.tool_calls
    tail = parser.finish()
    reasoning, text, calls = reasoning + tail.reasoning, text + tail.text, calls + tail.tool_calls
    assert reasoning.strip() == "The user wants the weather. I should call get_weather."
    assert text.strip() == "" and [c.name for c in calls] == ["get_weather"]


def test_prompt_that_opened_the_think_block_starts_in_reasoning() -> None:
    parser = OutputParser(["STOP"], think=("<think>", "</think>"), thinking=True)
    first = parser.feed("a STOP-free thought</thi")
    second = parser.feed("nk>The answer. STOP more")
    assert first.reasoning + second.reasoning == "a STOP-free thought"  # stop strings end content, not reasoning
    assert second.text == "The answer. " and second.stopped
