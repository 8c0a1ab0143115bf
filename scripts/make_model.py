"""Build a local MLX chat model (random weights, trained byte-level BPE tokenizer, tool-calling chat template).

No network: the tokenizer is trained here with the `tokenizers` library on a built-in corpus, the weights are
random. Presets: `tiny` (2 layers, 64 wide; builds in about a second; for tests), `tool` (the tiny model with its
weights scripted so that greedy decoding answers every prompt with a short <think> reasoning and then one
`get_weather` tool call, for end-to-end tool-call and reasoning tests), and `bench` (Qwen3-0.6B-shaped,
float32; for benchmarks — the text it writes is gibberish, the speed is real).

    python scripts/make_model.py OUT_DIR [--preset tiny|medium|bench] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]
EOS_TOKEN = "<|im_end|>"
# No spaces: an added token's text must decode through the byte-level map unchanged.
SCRIPTED_CALL = '{"name":"get_weather","arguments":{"city":"Berlin"}}'
SCRIPTED_THOUGHT = "The_user_asks_for_the_weather:_call_get_weather."
THINK_TOKENS = ["<think>", "</think>"]

# Qwen2.5-style template: tools in the system turn, calls as <tool_call>{json}</tool_call> (mlx-lm's json_tools).
CHAT_TEMPLATE = """
{%- set ns = namespace(system='') -%}
{%- if messages and messages[0].role == 'system' -%}{%- set ns.system = messages[0].content -%}{%- endif -%}
{%- if tools -%}
<|im_start|>system
{% if ns.system %}{{ ns.system }}

{% endif %}# Tools
You may call one or more functions. Function signatures:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
For each call return: <tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif ns.system -%}
<|im_start|>system
{{ ns.system }}<|im_end|>
{% endif -%}
{%- for message in messages -%}
{%- if loop.first and message.role == 'system' -%}
{%- elif message.role == 'assistant' -%}
<|im_start|>assistant
{% if message.content %}{{ message.content }}{% endif %}
{%- for call in message.tool_calls or [] -%}
{%- if call.function is defined %}{% set call = call.function %}{% endif %}
<tool_call>
{"name": "{{ call.name }}", "arguments": {{ call.arguments if call.arguments is string else call.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == 'tool' -%}
<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else -%}
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
""".strip()

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello! How can I help you today? What is the weather like in Berlin, Paris or Tokyo?",
    "The weather in Berlin is sunny with a temperature of 21 degrees Celsius.",
    "Write a short poem about the sea, the wind and the stars above the harbour.",
    'Call the function get_weather with {"city": "Berlin", "unit": "celsius"} and return the result.',
    '{"name": "get_weather", "arguments": {"city": "Berlin"}}',
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 -42 2025-01-01",
    "def main():\n    print('hello world')\n    return 0\n",
    "You are a helpful assistant. Answer briefly and precisely.",
    "system user assistant tool function arguments name content role",
]

PRESETS: dict[str, dict[str, Any]] = {
    # vocab_size None: as many entries as the trained tokenizer has
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096, "vocab_size": None,
             "tokenizer_vocab": 600, "tie_word_embeddings": False},  # untied: greedy text varies, not one token
    # Qwen3-0.6B's shape (vocab padded with filler tokens so every id the random model samples decodes)
    "tool": {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096, "vocab_size": None,
             "tokenizer_vocab": 600, "tie_word_embeddings": False},
    # ~100 MB of float32 weights: big enough for memory to show in RSS (tests/llm/test_memory.py), quick to build
    "medium": {"hidden_size": 512, "num_hidden_layers": 8, "intermediate_size": 1536, "num_attention_heads": 8,
               "num_key_value_heads": 4, "head_dim": 64, "max_position_embeddings": 4096, "vocab_size": None,
               "tokenizer_vocab": 600, "tie_word_embeddings": False},
    "bench": {"hidden_size": 1024, "num_hidden_layers": 28, "intermediate_size": 3072, "num_attention_heads": 16,
              "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960, "vocab_size": 151936,
              "tokenizer_vocab": 4000},
}


def _train_tokenizer(vocab_target: int, pad_to: int | None) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_target, min_frequency=1, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    if pad_to is None or tok.get_vocab_size() >= pad_to:
        return tok
    # Filler entries reachable by no merge: encoding is unchanged, but every id a random model can sample decodes.
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    index = 0
    while len(vocab) < pad_to:
        name = f"Ġw{index:06d}"
        if name not in vocab:
            vocab[name] = len(vocab)
        index += 1
    return Tokenizer.from_str(json.dumps(spec))


def _save_tokenizer(tok: Any, out_dir: Path, template: str = CHAT_TEMPLATE) -> int:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:])
    fast.chat_template = template
    fast.save_pretrained(str(out_dir))
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tool_parser_type"] = "json_tools"  # mlx-lm picks its tool-call parser from this key
    if "chat_template" not in config:  # transformers 5 writes chat_template.jinja; keep both readers happy
        config["chat_template"] = template
    config_path.write_text(json.dumps(config, indent=2))
    return tok.token_to_id(EOS_TOKEN)


def build_model(out_dir: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Write config.json, model.safetensors and tokenizer files into out_dir; return out_dir."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen3

    spec = dict(PRESETS[preset])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = _train_tokenizer(spec.pop("tokenizer_vocab"), spec["vocab_size"])
    if preset == "tool":
        tok.add_special_tokens(THINK_TOKENS)  # mlx-lm sees a thinking model
        tok.add_tokens([SCRIPTED_THOUGHT, SCRIPTED_CALL])  # each one token, so that a bigram chain can write it
    eos_id = _save_tokenizer(tok, out)
    spec["vocab_size"] = spec["vocab_size"] or tok.get_vocab_size()
    config = {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "rms_norm_eps": 1e-6,
              "rope_theta": 1000000.0, "tie_word_embeddings": True, "eos_token_id": eos_id,
              "bos_token_id": tok.token_to_id("<|endoftext|>"), "torch_dtype": "float32", **spec}
    mx.random.seed(seed)
    model = qwen3.Model(qwen3.ModelArgs.from_dict(config))
    if preset == "tool":
        chain = ["\n", *THINK_TOKENS[:1], SCRIPTED_THOUGHT, THINK_TOKENS[1], "<tool_call>", SCRIPTED_CALL,
                 "</tool_call>", EOS_TOKEN]
        _script_bigrams(model, [tok.encode(t, add_special_tokens=False).ids for t in chain])
    weights = {name: value.astype(mx.float32) for name, value in tree_flatten(model.parameters())}
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return out


def _script_bigrams(model: Any, chain: list[list[int]]) -> None:
    """Make greedy decoding follow `chain` (each step one token): with the attention and MLP outputs zeroed the
    last hidden state is the current token's normalised embedding, and the head maps it to the next token."""
    import mlx.core as mx

    ids = [piece[0] for piece in chain]
    assert all(len(piece) == 1 for piece in chain) and len(set(ids)) == len(ids), f"chain not distinct tokens: {chain}"
    for layer in model.model.layers:
        layer.self_attn.o_proj.weight = mx.zeros_like(layer.self_attn.o_proj.weight)
        layer.mlp.down_proj.weight = mx.zeros_like(layer.mlp.down_proj.weight)
    embed = model.model.embed_tokens.weight
    unit = embed / mx.linalg.norm(embed, axis=-1, keepdims=True)
    head = mx.zeros_like(model.lm_head.weight)
    for current, following in zip(ids, ids[1:], strict=False):
        head[following] = unit[current] * 50.0
    model.lm_head.weight = head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = build_model(args.out_dir, args.preset, args.seed)
    print(f"wrote {args.preset} model to {path}")


if __name__ == "__main__":
    main()
