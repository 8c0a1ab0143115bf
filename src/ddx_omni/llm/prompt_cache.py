"""The prompt cache of one engine: KV prefixes of several conversations, LRU, longest-prefix match (mlx-lm's).

Only the engine's MLX thread calls it. A lookup hands out a copy (mlx-lm deep-copies), so a generation that fails
or is cancelled cannot tear a stored entry.
"""

from __future__ import annotations

from typing import Any

MAX_ENTRIES = 256  # the byte bound is the one that matters; this only caps the trie's bookkeeping


class PromptCache:
    def __init__(self, model: Any, max_bytes: int) -> None:
        from mlx_lm.models.cache import LRUPromptCache

        self._model = model
        self._key = "model"  # one cache per engine, so one key
        self._lru = LRUPromptCache(max_size=MAX_ENTRIES, max_bytes=max_bytes) if max_bytes > 0 else None

    @property
    def nbytes(self) -> int:
        return self._lru.nbytes if self._lru is not None else 0

    def __len__(self) -> int:
        return len(self._lru) if self._lru is not None else 0

    def lookup(self, prompt: list[int]) -> tuple[list[Any], int]:
        """A KV cache holding the longest stored beginning of `prompt` (fresh when none), and its length. At least
        one prompt token is always left to run, so that the model gives the first token's logits."""
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

        if self._lru is None or not prompt:
            return make_prompt_cache(self._model), 0
        cache, rest = self._lru.fetch_nearest_cache(self._key, prompt)
        if cache is None:
            return make_prompt_cache(self._model), 0
        if not rest:  # the whole prompt is stored: step back one token
            if not can_trim_prompt_cache(cache):
                return make_prompt_cache(self._model), 0
            trim_prompt_cache(cache, 1)
            rest = prompt[-1:]
        return cache, len(prompt) - len(rest)

    def keep(self, tokens: list[int], cache: list[Any]) -> None:
        """Store `cache`, which holds exactly `tokens` (prompt and generated), for later prompts that start so."""
        if self._lru is None or not tokens or not cache:
            return
        self._lru.insert_cache(self._key, list(tokens), cache)

    def clear(self) -> None:
        if self._lru is not None:
            self._lru.trim_to(n_sequences=0)
