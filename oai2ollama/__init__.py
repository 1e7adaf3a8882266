"""oai2ollama: serve the OpenAI API from a local Ollama server."""

__version__ = "0.1.0"
