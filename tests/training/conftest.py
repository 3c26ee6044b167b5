"""Fixtures for the training tests (helpers live in training_helpers.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from training_helpers import VOCAB, tiny_documents  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small indexed dataset (ids < 256, eod 255) that a 2-layer model learns fast."""
    from megatron_snow.indexed import write_indexed_dataset

    prefix = tmp_path_factory.mktemp("tiny_data") / "tiny"
    write_indexed_dataset(prefix, tiny_documents(), VOCAB)
    return prefix
