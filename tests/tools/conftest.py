"""Fixtures of the built-in tool tests (each tool's own support module defines them)."""

from __future__ import annotations

from .mcp_support import demo_server, everything  # noqa: F401 - fixtures of the MCP tests
