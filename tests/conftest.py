"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (and its module fixtures): the machine is shared,
    tiny convolutions on 2 contended threads run several times slower than on one, and float
    sums, hence trained weights, depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
