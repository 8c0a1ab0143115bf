"""The embedding engine (MLX) and POST /v1/embeddings; file search embeds its chunks and queries with it."""
