"""Fixtures of the experiment tests: a tiny dataset and teachers, and two tiny experiments run
once for every test module here (one scratch-vs-deformable, one with two named teachers)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dineuro.experiment import ExperimentConfig, run_experiment

#: Tiny model on crops that fit the 16-slice test stacks; 2 steps, one torch thread.
BASE = {"size": "tiny", "crop": [16, 32, 32], "model_options": {"patch": [8, 16, 16]},
        "batch_size": 1, "steps": 2, "warmup_steps": 1, "lr": 1e-3, "val_every": 2,
        "device": "cpu", "tensorboard": False, "threads": 1}


@pytest.fixture(scope="session")
def base() -> dict:
    """The shared training settings of the tiny experiments, without ``data``."""
    return dict(BASE)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    from dineuro.data.synth import PRESETS, write_synthetic_dataset

    config = replace(PRESETS["small"], n_stacks=3, shape=(16, 48, 48), navis_fraction=0.0)
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "tiny", config)


def _write_teacher(path: Path, seed: int = 0) -> Path:
    """A random DINO-layout teacher of the tiny student's width, different per seed."""
    try:
        from tests.models.conftest import make_dino_state_dict
    except ImportError:  # tests/ is not a package on every path setup
        from dineuro.models.vit2d import VisionTransformer2d

        torch.manual_seed(seed)
        state = VisionTransformer2d(embed_dim=48, depth=4, num_heads=3).state_dict()
    else:
        state = make_dino_state_dict(embed_dim=48, depth=4, num_heads=3, seed=seed)
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def teacher(tmp_path_factory) -> Path:
    return _write_teacher(tmp_path_factory.mktemp("dino") / "dino_tiny.pth")


@pytest.fixture(scope="session")
def two_teachers(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("teachers")
    return {name: str(_write_teacher(folder / f"teacher_{name}.pth", seed))
            for seed, name in enumerate(("photos", "mips"))}


def _config(dataset: Path, out: Path, teacher, **changes) -> ExperimentConfig:
    """``teacher``: a path, None, or what the config's ``teacher`` key holds (a mapping)."""
    data = {"base": {**BASE, "data": str(dataset)}, "out": str(out),
            "transfers": ["scratch", "deformable"], "seeds": [0],
            "teacher": str(teacher) if isinstance(teacher, Path) else teacher, **changes}
    return ExperimentConfig.from_dict(data)


@pytest.fixture(scope="session")
def make_config():
    """``make_config(dataset, out, teacher, **changes)``: scratch and deformable, seed 0, on
    the tiny settings; ``teacher`` a path, None, or a mapping of names to teachers."""
    return _config


@pytest.fixture(scope="session")
def experiment(dataset, teacher, tmp_path_factory):
    """(config, result, progress calls) of scratch vs deformable, one teacher, seed 0."""
    out = tmp_path_factory.mktemp("ablation") / "exp"
    config = _config(dataset, out, teacher)
    calls = []
    result = run_experiment(config, progress=lambda *args: calls.append(args))
    return config, result, calls


@pytest.fixture(scope="session")
def teachers_experiment(dataset, two_teachers, tmp_path_factory):
    """(config, result) of scratch vs center with two named teachers, seed 0."""
    out = tmp_path_factory.mktemp("teachers_ablation") / "exp"
    config = _config(dataset, out, two_teachers, transfers=["scratch", "center"])
    return config, run_experiment(config)
