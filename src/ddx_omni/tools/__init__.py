"""Built-in Responses tools (MCP, file search, code interpreter, web search) behind one protocol."""
