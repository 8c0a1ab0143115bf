"""Structured output: `response_format` json_object / json_schema enforced by constrained decoding (llguidance).

The grammar becomes an mlx-lm logits processor: before each token, every token that would break the JSON (or
the schema) gets -inf, and once the value is complete only the end-of-sequence token is left.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import RequestInvalid

# One layout, as OpenAI writes JSON: free whitespace would let a weak model pad the answer with blank lines.
JSON_LAYOUT = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}
# A forced tool call: at most one space where JSON allows whitespace, so both `{"a":1}` and `{"a": 1}` (the two
# layouts chat templates print calls in) are open to the model, and none can pad without end.
CALL_LAYOUT = {"whitespace_flexible": True, "whitespace_pattern": "[ ]?"}
SAFE_INTEGER = 2**53 - 1


def grammar_for(response_format: dict[str, Any] | None, layout: Any = JSON_LAYOUT) -> str | None:
    """The llguidance grammar a response_format asks for; None for plain text."""
    from llguidance import LLMatcher

    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        schema: Any = {"type": "object"}
    elif kind == "json_schema":
        schema = ((response_format or {}).get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise RequestInvalid("response_format.json_schema.schema must be a JSON Schema object",
                                 param="response_format")
    else:
        raise RequestInvalid(f"response_format type '{kind}' is not one of text, json_object, json_schema",
                             param="response_format")
    try:
        grammar = LLMatcher.grammar_from_json_schema(schema, defaults=layout)
        failed, problems = LLMatcher.validate_grammar_with_warnings(grammar)  # (is_error, messages)
    except Exception as exc:  # llguidance reports some schema errors as exceptions
        raise RequestInvalid(f"response_format schema is not usable: {exc}", param="response_format") from None
    if failed:
        raise RequestInvalid(f"response_format schema is not usable: {'; '.join(problems)}", param="response_format")
    return grammar


def forced_call_format(tools: list[dict[str, Any]] | None, choice: Any) -> dict[str, Any] | None:
    """The json_schema response_format a forced tool call must satisfy (tool_choice "required" or named):
    `{"name": <one of the tools>, "arguments": <that tool's parameters>}`, the body of a JSON tool call. None
    when nothing is forced."""
    if not tools or choice in (None, "auto", "none"):
        return None
    wanted = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    options = []
    for tool in tools:
        function = tool.get("function") or {}
        if wanted is not None and function.get("name") != wanted:
            continue
        arguments = _bounded(function.get("parameters") or {"type": "object", "properties": {}})
        options.append({"type": "object", "properties": {"name": {"const": function.get("name")},
                                                         "arguments": arguments},
                        "required": ["name", "arguments"], "additionalProperties": False})
    if not options:
        return None
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema}}


def _bounded(schema: Any) -> Any:
    """A tool's parameters, closed for a forced call so that any model ends it: objects take only their declared
    properties (unless the schema says otherwise), integers stay within JSON's safe range. Strings stay
    unbounded (code, queries), so a model that never closes one runs into max_output_tokens."""
    if isinstance(schema, list):
        return [_bounded(part) for part in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _bounded(value) if key in ("items", "anyOf", "oneOf", "allOf", "prefixItems") else value
           for key, value in schema.items()}
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {name: _bounded(part) for name, part in schema["properties"].items()}
    if (schema.get("type") == "object" or "properties" in schema) and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    if schema.get("type") == "integer":
        out.setdefault("minimum", -SAFE_INTEGER)
        out.setdefault("maximum", SAFE_INTEGER)
    return out


def grammar_tokenizer(tokenizer: Any) -> Any:
    """llguidance's view of an mlx-lm TokenizerWrapper (built once per model: ~1-2 s for a 150k vocabulary)."""
    from llguidance import LLTokenizer

    backend = getattr(getattr(tokenizer, "_tokenizer", None), "backend_tokenizer", None)
    if backend is None:
        raise RequestInvalid("response_format needs a fast (tokenizer.json) tokenizer, which this model lacks",
                             param="response_format")
    eos = tokenizer.eos_token_id
    if eos is None and tokenizer.eos_token_ids:
        eos = min(tokenizer.eos_token_ids)
    return LLTokenizer(backend.to_str(), eos_token=eos)


class GrammarProcessor:
    """An mlx-lm logits processor (called with all tokens so far and the next logits) for one request."""

    def __init__(self, ll_tokenizer: Any, grammar: str) -> None:
        from llguidance import LLMatcher
        from llguidance.numpy import allocate_token_bitmask

        self.matcher = LLMatcher(ll_tokenizer, grammar)
        if self.matcher.is_error():
            raise RequestInvalid(f"response_format schema is not usable: {self.matcher.get_error()}",
                                 param="response_format")
        self.bitmask = allocate_token_bitmask(1, ll_tokenizer.vocab_size)
        self.vocab_size = ll_tokenizer.vocab_size
        self.seen: int | None = None  # tokens already accounted for (the first call sees only the prompt)

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx
        from llguidance.numpy import fill_next_token_bitmask

        count = int(tokens.size)
        if self.seen is not None and count > self.seen:
            for token in tokens[self.seen:].tolist():
                self.matcher.consume_token(int(token))
        self.seen = count
        fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        bits = np.unpackbits(self.bitmask.view(np.uint8), bitorder="little")[:self.vocab_size]
        width = logits.shape[-1]  # the model's head may be wider than the tokenizer: those ids stay banned
        allowed = np.zeros(width, dtype=np.bool_)
        allowed[:min(width, bits.size)] = bits[:width]
        mask = mx.array(allowed)
        return mx.where(mask, logits, mx.array(-float("inf"), dtype=logits.dtype))
