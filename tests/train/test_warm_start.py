"""Training from a trained network (config key ``init``): same weights, resized position
embedding, refusals that name the checkpoint, and a run that continues from those weights."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import TINY, Stop, weights_of

from dineuro.checkpoint import default_model_path, load_checkpoint, load_model
from dineuro.data.normalize import NormalizationConfig
from dineuro.errors import InputError
from dineuro.train import load_config, train
from dineuro.train.warm_start import warm_start_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The tiny test network without model options, which an init config may not carry.
PLAIN = [*TINY, "model_options={}"]


@pytest.fixture(scope="module")
def trained(tiny_training_set, tmp_path_factory):
    """A 2-step run of the plain tiny network: the checkpoint that init starts from."""
    out = tmp_path_factory.mktemp("runs") / "first"
    config = load_config(None, [f"data={tiny_training_set}", f"out={out}", *PLAIN, "steps=2"])
    return config, train(config).last


def _init_config(first, tmp_path, *overrides):
    config, last = first
    return replace(load_config(None, [f"data={config.data}", f"out={tmp_path / 'ft'}", *PLAIN,
                                      *overrides]), init=str(last))


def test_same_crop_starts_from_every_weight(trained, tmp_path):
    model = warm_start_model(_init_config(trained, tmp_path))
    assert model.training
    stored, _ = load_model(trained[1])
    assert weights_of(model).keys() == weights_of(stored).keys()
    for name, value in weights_of(stored).items():
        assert torch.equal(weights_of(model)[name], value), name


def test_larger_crop_resizes_only_the_position_embedding(trained, tmp_path):
    model = warm_start_model(_init_config(trained, tmp_path, "crop=[16, 64, 64]"))
    stored = weights_of(load_model(trained[1])[0])
    mine = weights_of(model)
    assert model.config["crop"] == [16, 64, 64]
    # the tiny preset's 16-voxel patches: the token grid grows from 1x2x2 to 1x4x4
    assert stored["encoder.pos_embed"].shape[1] == 4 and mine["encoder.pos_embed"].shape[1] == 16
    assert all(torch.equal(mine[k], v) for k, v in stored.items() if k != "encoder.pos_embed")


@pytest.mark.parametrize("override, named", [
    ("transfer=average", "transfer should be 'scratch'"),
    ("model_options={drop_path: 0.1}", "model_options should be empty"),
    ("size=small", "holds a 'tiny' network"),
    ("normalization.high=99.5", "fine-tuning needs the same"),
    ("normalization={high: 99.5, background: 2}", "fine-tuning needs the same")])
def test_a_config_the_checkpoint_contradicts_is_refused(trained, tmp_path, override, named):
    config = _init_config(trained, tmp_path, override)
    with pytest.raises(InputError, match=named) as caught:
        train(config)
    assert str(trained[1]) in str(caught.value)
    assert not (tmp_path / "ft").exists()


def test_a_background_may_be_added_but_not_changed_or_dropped(trained, tmp_path):
    added = _init_config(trained, tmp_path, "normalization.background=2")
    model = warm_start_model(added)  # the network trained without one learns to see it
    assert all(torch.equal(weights_of(model)[k], v)
               for k, v in weights_of(load_model(trained[1])[0]).items())
    with_background = train(replace(added, steps=1)).last
    assert load_model(with_background)[1]["normalization"]["background"] == 2.0
    for other in ("normalization.background=3", "normalization.background=0"):
        config = replace(_init_config(trained, tmp_path, other), init=str(with_background))
        with pytest.raises(InputError, match="fine-tuning needs the same"):
            warm_start_model(config)


def test_default_is_the_packaged_model(tmp_path):
    config = load_config(None, ["data=d", f"out={tmp_path}", "size=tiny", "transfer=scratch",
                                "init=default"])
    assert config.normalization == NormalizationConfig()
    model = warm_start_model(config)
    packaged, _ = load_model(default_model_path())
    assert all(torch.equal(weights_of(model)[k], v) for k, v in weights_of(packaged).items())


def test_a_run_from_init_continues_from_its_weights(trained, tmp_path):
    config = _init_config(trained, tmp_path, "steps=1", "lr=1e-9", "warmup_steps=0")
    result = train(config)
    stored = weights_of(load_model(trained[1])[0])
    tuned = weights_of(result.model)
    # one step at a vanishing learning rate: every weight within 1e-6 of the checkpoint's
    assert all(torch.allclose(tuned[k], v, atol=1e-6) for k, v in stored.items())
    scratch = train(replace(config, init=None, out=str(tmp_path / "scratch")))
    assert not all(torch.allclose(weights_of(scratch.model)[k], v, atol=1e-3)
                   for k, v in stored.items())
    assert load_config(Path(config.out) / "config.yaml").init == str(trained[1])


def test_the_shipped_fine_tune_config_fits_the_first_stage():
    configs = Path(__file__).resolve().parents[2] / "configs"
    first = load_config(configs / "default_model.yaml")
    second = load_config(configs / "default_model_finetune.yaml")
    # what warm_start_model would otherwise refuse, checked without training the first stage
    assert second.init == str(Path(first.out) / "best.pt")
    assert (second.size, second.normalization, second.data) == (
        first.size, first.normalization, first.data)
    assert second.transfer == "scratch" and not second.model_options
    assert second.crop[0] == first.crop[0] and second.crop[1] > first.crop[1]


def test_the_shipped_third_stage_config_fits_the_second():
    configs = Path(__file__).resolve().parents[2] / "configs"
    second = load_config(configs / "default_model_finetune.yaml")
    third = load_config(configs / "default_model_hard.yaml")
    assert third.init == str(Path(second.out) / "last.pt")  # the second stage ships its last
    assert (third.size, third.normalization, third.crop, third.data, third.augment) == (
        second.size, second.normalization, second.crop, second.data, second.augment)
    assert third.extra_data and third.data not in third.extra_data
    assert third.transfer == "scratch" and not third.model_options


def test_the_background_experiment_config_fits_the_third_stage():
    configs = Path(__file__).resolve().parents[2] / "configs"
    third = load_config(configs / "default_model_hard.yaml")
    fourth = load_config(configs / "background_finetune.yaml")
    assert fourth.init == str(Path(third.out) / "last.pt")
    assert (fourth.size, fourth.crop, fourth.data, fourth.extra_data, fourth.augment) == (
        third.size, third.crop, third.data, third.extra_data, third.augment)
    assert third.normalization.background == 0 < fourth.normalization.background
    assert replace(fourth.normalization, background=0.0) == third.normalization  # added only


def test_a_run_from_init_resumes_without_the_init_file(trained, tmp_path):
    first, _ = trained
    init = tmp_path / "init.pt"
    shutil.copy(trained[1], init)
    config = replace(_init_config((first, init), tmp_path, "steps=2", "val_every=1"),
                     init=str(init))

    def stop_at_2(step, total, loss, val_dice):
        if step == 2:  # last.pt is from step 1
            raise Stop

    with pytest.raises(Stop):
        train(config, progress=stop_at_2)
    init.unlink()
    resumed = train(config, resume=True)
    assert resumed.steps == 2 and load_checkpoint(resumed.last)["step"] == 2
    with pytest.raises(InputError, match="init.pt"):  # a fresh start does need it
        train(replace(config, out=str(tmp_path / "fresh")))
