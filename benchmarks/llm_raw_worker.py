"""Raw mlx-lm peer of bench_llm.py, in its own process like the two servers: one JSON request per stdin line.

Request: {"messages": [...], "max_tokens": N, "eos": ID}. Answer (one stdout line): {"ttft_s", "decode_tps",
"tokens", "text", "total_s"}, timed from the request's arrival, chat template included.
"""

from __future__ import annotations

import json
import sys
import time

import mlx_lm
from mlx_lm.sample_utils import make_logits_processors, make_sampler


def main() -> None:
    model, tokenizer = mlx_lm.load(sys.argv[1])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        start = time.perf_counter()
        prompt = tokenizer.apply_chat_template(request["messages"], add_generation_prompt=True)
        first, pieces, n = None, [], 0
        for response in mlx_lm.stream_generate(model, tokenizer, prompt, max_tokens=request["max_tokens"],
                                               sampler=make_sampler(0.0),
                                               logits_processors=make_logits_processors({request["eos"]: -100.0})):
            first = first or time.perf_counter()
            pieces.append(response.text)
            n = response.generation_tokens
        last = time.perf_counter()
        assert first is not None
        print(json.dumps({"ttft_s": first - start, "decode_tps": (n - 1) / (last - first), "tokens": n,
                          "text": "".join(pieces), "total_s": last - start}), flush=True)


if __name__ == "__main__":
    main()
