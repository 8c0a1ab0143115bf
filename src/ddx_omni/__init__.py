"""ddx-omni: one port for a local LLM, live speech-to-text and a stateful agent API."""
__version__ = "0.1.0"
