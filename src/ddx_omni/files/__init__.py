"""Uploaded files, vector stores with hybrid (BM25 + dense) retrieval, and their OpenAI-shaped routes."""
