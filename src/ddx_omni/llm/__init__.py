"""Chat: OpenAI-compatible chat completions and the model registry, over mock or MLX engines."""
