"""Fixtures of the multi-host tests: ``two_hosts`` (see twohosts.py for what a host is and how to use it)
and the tiny training data set of tests/training (training_helpers.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "training"))

from twohosts import NamespacesUnavailable, create_two_hosts  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "multihost: runs across two network namespaces (two hosts, root)")


@pytest.fixture
def two_hosts(request):
    """Two hosts (network namespaces) linked by a veth pair; removed at teardown, also when the test fails.
    Skips in one line where namespaces cannot be made, except under CI=true, where that fails the test.
    Options of create_two_hosts through indirect parametrization:
    ``@pytest.mark.parametrize("two_hosts", [{"own_name_on_loopback": True}], indirect=True)``."""
    try:
        hosts = create_two_hosts(**getattr(request, "param", {}))
    except NamespacesUnavailable as e:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and two hosts cannot be made: {e}")
        pytest.skip(f"two hosts cannot be made here: {e}")
    try:
        yield hosts
    finally:
        hosts.destroy()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The small indexed dataset of the training tests (ids < 256, eod 255)."""
    from megatron_snow.indexed import write_indexed_dataset
    from training_helpers import VOCAB, tiny_documents

    prefix = tmp_path_factory.mktemp("tiny_data") / "tiny"
    write_indexed_dataset(prefix, tiny_documents(), VOCAB)
    return prefix
