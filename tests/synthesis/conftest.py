"""Fixtures for the phase-3 synthesis tests: the tiny real LLM server (tests/llm_server.py) and test data.

Helpers are imported by file location (``tests/`` and this folder on sys.path), not as ``tests.*``:
a site-packages package named ``tests`` (shipped by some wheels) would shadow the repository's.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE.parent):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from llm_server import build_tiny_llama, serve, tiny_llm_server, warm_up  # noqa: E402,F401
from synth_data import TEMPLATE, training_pairs, write_phase2  # noqa: E402


@pytest.fixture(scope="session")
def synth_inputs(tmp_path_factory):
    """(phase-2 dataset, prompt template file) shared by the synthesis tests."""
    root = tmp_path_factory.mktemp("synth_inputs")
    phase2 = write_phase2(root / "phase2")
    template = root / "test_template.txt"
    template.write_text(TEMPLATE)
    return phase2, template


@pytest.fixture(scope="session")
def trained_server(tmp_path_factory, synth_inputs):
    """A tiny Llama trained to give each seed's planned answer, served by `transformers serve` (greedy)."""
    phase2, template = synth_inputs
    root = tmp_path_factory.mktemp("trained_llm")
    model_dir = build_tiny_llama(root / "model", pairs=training_pairs(phase2, template), hidden=64, max_steps=800)
    with serve(model_dir, log_path=root / "server.log") as server:
        warm_up(server)
        yield server
