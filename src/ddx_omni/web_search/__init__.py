"""Web search for the Responses `web_search` tool: pluggable search providers, page reading, a short cache."""
