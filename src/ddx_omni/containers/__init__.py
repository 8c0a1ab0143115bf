"""Containers: sandboxed, stateful Python per container (the code interpreter) and the /v1/containers API."""
