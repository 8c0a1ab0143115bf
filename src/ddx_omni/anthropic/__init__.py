"""The Anthropic Messages API (/v1/messages, /anthropic/v1/...) over the chat engines."""
