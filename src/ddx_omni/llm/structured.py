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


def grammar_for(response_format: dict[str, Any] | None) -> str | None:
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
        grammar = LLMatcher.grammar_from_json_schema(schema, defaults=JSON_LAYOUT)
        failed, problems = LLMatcher.validate_grammar_with_warnings(grammar)  # (is_error, messages)
    except Exception as exc:  # llguidance reports some schema errors as exceptions
        raise RequestInvalid(f"response_format schema is not usable: {exc}", param="response_format") from None
    if failed:
        raise RequestInvalid(f"response_format schema is not usable: {'; '.join(problems)}", param="response_format")
    return grammar


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
