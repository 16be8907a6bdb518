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


@pytest.fixture(scope="session")
def tiny_training_set(tmp_path_factory):
    """A dataset folder of 4 small synthetic stacks (16x48x48, procedural neurons only): what
    the training, resume and restart tests train on, made once."""
    from dataclasses import replace

    from dineuro.data.synth import PRESETS, write_synthetic_dataset

    config = replace(PRESETS["small"], n_stacks=4, shape=(16, 48, 48), navis_fraction=0)
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "tiny", config)
