"""Agents: the stateful OpenAI Responses and Conversations APIs, persisted in SQLite."""
