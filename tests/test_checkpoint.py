"""Checkpoints: self-describing round trip, teacher-free rebuild, clear errors for other files."""

from __future__ import annotations

import pytest
import torch

from dineuro import __version__
from dineuro.checkpoint import (
    CHECKPOINT_FORMAT,
    build_network,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from dineuro.errors import InputError
from dineuro.models.build import build_model

CROP, PATCH = (16, 32, 32), (8, 16, 16)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Weights off their initial values, so a fresh network cannot pass for a loaded one."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=generator))
    return model


META = {"normalization": {"method": "percentile", "low": 1.0, "high": 99.9},
        "spacing": [1.0, 0.5, 0.5], "train_config": {"size": "tiny", "crop": [16, 32, 32]},
        "step": 7, "val_dice": 0.5}


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = _perturbed(build_model("tiny", "scratch", crop=CROP, patch=PATCH)).eval()
    path = save_checkpoint(tmp_path / "net.pt", model, **META)
    assert [p.name for p in tmp_path.iterdir()] == ["net.pt"]  # no temporary file left
    loaded, meta = load_model(path)
    x = torch.rand(2, 1, *CROP)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not loaded.training
    assert meta["model_config"] == model.config and loaded.config == model.config
    assert meta["format"] == CHECKPOINT_FORMAT and meta["dineuro_version"] == __version__
    assert {k: meta[k] for k in META} == META
    assert "state_dict" not in meta
    raw = torch.load(path, weights_only=True)  # plain types only
    assert raw["step"] == 7


def test_transferred_network_rebuilds_without_its_teacher(tmp_path):
    from dineuro.models.vit2d import VisionTransformer2d

    torch.manual_seed(0)
    teacher = VisionTransformer2d(embed_dim=48, depth=4, num_heads=3).state_dict()
    model = _perturbed(build_model("tiny", "deformable", teacher=teacher, crop=CROP,
                                   patch=PATCH)).eval()
    path = save_checkpoint(tmp_path / "deformable.pt", model, step=0)
    loaded, meta = load_model(path)
    assert meta["model_config"]["transfer"] == "deformable"
    assert meta["model_config"]["patch_embedding"] == "deformable"
    x = torch.rand(1, 1, *CROP)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_files_that_are_not_checkpoints(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(InputError, match=r"junk\.pt: is not a dineuro checkpoint"):
        load_model(junk)
    teacher = tmp_path / "dino.pth"
    torch.save({"pos_embed": torch.zeros(1, 5, 8)}, teacher)
    with pytest.raises(InputError, match="is not a dineuro checkpoint.*teacher"):
        load_model(teacher)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(InputError, match="not a dineuro checkpoint"):
        load_checkpoint(tensor)


def test_damaged_or_foreign_checkpoints(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny", "scratch", crop=CROP, patch=PATCH)
    path = save_checkpoint(tmp_path / "net.pt", model)
    data = torch.load(path, weights_only=True)
    torch.save({**data, "format": "dineuro-checkpoint/99"}, tmp_path / "future.pt")
    with pytest.raises(InputError, match="format 'dineuro-checkpoint/99'"):
        load_model(tmp_path / "future.pt")
    state = dict(data["state_dict"])
    state.pop("out.conv.conv.weight")
    torch.save({**data, "state_dict": state}, tmp_path / "partial.pt")
    with pytest.raises(InputError, match="do not fit its own model config"):
        load_model(tmp_path / "partial.pt")
    config = {k: v for k, v in data["model_config"].items() if k != "crop"}
    torch.save({**data, "model_config": config}, tmp_path / "noconfig.pt")
    with pytest.raises(InputError, match="lacks \\['crop'\\]"):
        load_model(tmp_path / "noconfig.pt")
    with pytest.raises(InputError, match="lacks"):
        build_network({"patch": 16})


def test_save_refuses_what_would_not_load_safely(tmp_path):
    model = build_model("tiny", "scratch", crop=CROP, patch=PATCH)
    with pytest.raises(TypeError, match="spacing"):
        save_checkpoint(tmp_path / "a.pt", model, spacing=object())
    with pytest.raises(ValueError, match="state_dict"):
        save_checkpoint(tmp_path / "a.pt", model, state_dict={})
    with pytest.raises(ValueError, match="config"):
        save_checkpoint(tmp_path / "a.pt", torch.nn.Linear(1, 1))
    assert not list(tmp_path.iterdir())
