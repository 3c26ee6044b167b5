"""Fixtures for the phase-3 synthesis tests: the tiny real LLM server (tests/llm_server.py)."""
from __future__ import annotations

from tests.llm_server import tiny_llm_server  # noqa: F401  (session fixture: a random tiny Llama served)
