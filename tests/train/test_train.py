"""Training: config checks, crops, augmentations, schedule, determinism, resume, run folder."""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import TINY, Stop, assert_same_weights, weights_of

from dineuro.checkpoint import load_checkpoint, load_model
from dineuro.data.normalize import NormalizationConfig
from dineuro.data.synth import PRESETS, write_synthetic_dataset
from dineuro.errors import InputError
from dineuro.train import AugmentConfig, TrainConfig, load_config, lr_factor, train
from dineuro.train.config import ZERO_FLOOR_PERCENTILES, ZERO_FLOOR_PROB
from dineuro.train.data import (
    Augmenter,
    CropSampler,
    Stack,
    TrainingCrops,
    extract,
    load_stacks,
)
from dineuro.train.losses import make_loss
from dineuro.train.optimizer import make_optimizer, train_step

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(data: Path, out: Path, *overrides: str) -> TrainConfig:
    return load_config(None, [f"data={data}", f"out={out}", *TINY, *overrides])


# -- config ---------------------------------------------------------------------------------
def test_config_yaml_round_trip(tmp_path):
    config = load_config(None, ["data=ds", "out=run", "crop=64", "lr=3e-4", "augment.noise=false",
                                "normalization.high=99.5", "model_options.patch=[8, 16, 16]",
                                "grad_clip=null", "schedule=poly", "loss=dice_ce_cldice",
                                "cldice_weight=0.25", "cldice_iterations=4"])
    assert config.crop == [64, 64, 64] and config.lr == 3e-4 and config.grad_clip is None
    assert (config.loss, config.cldice_weight, config.cldice_iterations) == (
        "dice_ce_cldice", 0.25, 4)
    assert config.augment == AugmentConfig(noise=False)
    assert config.normalization == NormalizationConfig(high=99.5)
    assert config.model_options == {"patch": [8, 16, 16]}
    config.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config
    assert TrainConfig.from_dict(yaml.safe_load(config.to_yaml())) == config


@pytest.mark.parametrize("override, named", [
    ("lr_rate=0.1", "lr_rate"), ("augment.nosie=false", "augment.nosie"),
    ("normalization.mid=50", "normalization.mid")])
def test_unknown_config_keys_are_named(override, named):
    with pytest.raises(InputError, match=named):
        load_config(None, ["data=ds", "out=run", override])


@pytest.mark.parametrize("override, key", [
    ("lr=abc", "lr"), ("steps=1.5", "steps"), ("batch_size=true", "batch_size"),
    ("augment.flip=3", "augment"), ("crop=[16, 32]", "crop"), ("schedule=linear", "schedule"),
    ("amp=fp16", "amp"), ("device=gpu", "device"), ("val_overlap=1", "val_overlap"),
    ("foreground_prob=1.5", "foreground_prob"), ("warmup_steps=-1", "warmup_steps"),
    ("teacher=[1]", "teacher"), ("model_options=3", "model_options"), ("steps=null", "steps"),
    ("normalization.low=99.95", "percentiles"), ("loss=nope", "'loss'"),
    ("cldice_weight=-1", "cldice_weight"), ("cldice_iterations=0", "cldice_iterations"),
    ("skeleton_recall_weight=-0.5", "skeleton_recall_weight")])
def test_bad_config_values_are_input_errors(override, key):
    with pytest.raises(InputError, match=key):
        load_config(None, ["data=ds", "out=run", override])


def test_zero_floor_needs_normalisation_percentiles_outside_its_own():
    load_config(None, ["data=ds", "out=run", "augment.zero_floor=true"])  # defaults 1, 99.9
    for bad in ("normalization.low=60", "normalization.high=99"):
        with pytest.raises(InputError, match="augment.zero_floor"):
            load_config(None, ["data=ds", "out=run", "augment.zero_floor=true", bad])
    load_config(None, ["data=ds", "out=run", "normalization.low=60"])  # only with the floor


def test_config_needs_data_and_out_and_well_formed_overrides(tmp_path):
    with pytest.raises(InputError, match="data"):
        load_config(None, ["out=run"])
    with pytest.raises(InputError, match="KEY=VALUE"):
        load_config(None, ["data=ds", "out=run", "lr"])
    with pytest.raises(InputError, match="not a section"):
        load_config(None, ["data=ds", "out=run", "lr=0.1", "lr.x=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: ds\nout: run\nbatchsize: 4\n")
    with pytest.raises(InputError, match=r"bad\.yaml.*batchsize"):
        load_config(bad)


@pytest.mark.parametrize("name", ["train_cpu", "train_paper", "train_tiny"])
def test_shipped_configs_load(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    expected = {"train_cpu": ("small", 64, "none"), "train_paper": ("base", 96, "bf16"),
                "train_tiny": ("tiny", 32, "none")}[name]
    assert (config.size, (config.crop or [expected[1]])[-1], config.amp) == expected


# -- schedule -------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["cosine", "poly"])
def test_lr_schedule_matches_closed_form(schedule):
    config = TrainConfig(data="d", out="o", lr=0.01, steps=10, warmup_steps=3,
                         schedule=schedule, poly_power=0.9)
    optimizer, scheduler = make_optimizer(torch.nn.Linear(1, 1), config)
    seen = []
    for _ in range(config.steps):
        seen.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()

    def closed(s):
        if s < 3:
            return 0.01 * (s + 1) / 3
        t = (s - 3) / 7
        return 0.01 * (0.5 * (1 + math.cos(math.pi * t)) if schedule == "cosine"
                       else (1 - t) ** 0.9)

    assert seen == pytest.approx([closed(s) for s in range(10)], rel=1e-12)
    assert seen[2] == seen[3] == pytest.approx(0.01)
    assert lr_factor(5, 10, 0, "cosine") == pytest.approx(0.5)


# -- crops ----------------------------------------------------------------------------------
def _stack(raw: np.ndarray, label: np.ndarray) -> Stack:
    return Stack("s", raw, label, (0.0, float(raw.max())), (1.0, 1.0, 1.0),
                 np.flatnonzero(label))


def test_sampler_centres_crops_on_foreground_at_the_configured_rate():
    rng = np.random.default_rng(1)
    raw = rng.integers(1, 200, size=(32, 32, 32)).astype(np.uint8)
    label = np.zeros(raw.shape, bool)
    label[:2, :2, :2] = True  # a corner no uniform crop can be centred on
    crop, p, draws = (8, 8, 8), 0.3, 3000
    sampler = CropSampler([_stack(raw, label)], crop, p, np.random.default_rng(0))
    hits = 0
    for _ in range(draws):
        image, crop_label, centred = sampler.draw()
        assert image.shape == crop and crop_label.shape == crop and image.dtype == np.float32
        hits += bool(crop_label[4, 4, 4])
        assert bool(crop_label[4, 4, 4]) == centred
        if centred:  # the corner crop is padded with 0 outside the stack
            assert image[0, 0, 0] == 0.0 and image[4, 4, 4] > 0
    assert abs(hits / draws - p) < 4.5 * math.sqrt(p * (1 - p) / draws)


def test_uniform_crops_stay_inside_and_small_stacks_are_padded():
    raw = np.full((4, 40, 20), 100, np.uint16)
    sampler = CropSampler([_stack(raw, np.zeros(raw.shape, bool))], (8, 16, 32), 1.0,
                          np.random.default_rng(0))
    starts = np.array([sampler.start()[1] for _ in range(500)])
    assert starts[:, 0].min() == -4 and starts[:, 0].max() == 0  # stack inside the crop in z
    assert starts[:, 1].min() == 0 and starts[:, 1].max() == 24  # crop inside the stack in y
    assert starts[:, 2].min() == -12 and starts[:, 2].max() == 0
    image, label, centred = sampler.draw()
    assert not centred and not label.any()
    assert image.sum() == pytest.approx(4 * 16 * 20)  # the stack's voxels are 1, padding 0


def test_zero_floored_crops_are_crops_of_the_clipped_stack_normalised_anew():
    """Every crop is the stack normalised as it is, or the stack less one of its percentiles,
    clipped at 0 and normalised with its own limits (worked out here on the whole stack), in
    about the configured share; the crop is the whole stack, so there is one position."""
    rng = np.random.default_rng(4)
    raw = rng.gamma(2.0, 12.0, size=(6, 20, 20)).astype(np.uint16)
    raw[2:4, 5:15, 10] += 400  # a bright fibre
    norm = NormalizationConfig()
    stack = Stack("s", raw, raw > 300, norm.limits(raw), (1.0, 1.0, 1.0),
                  np.flatnonzero(raw > 300))
    plain = norm.normalize(raw)
    floored = []
    for p in ZERO_FLOOR_PERCENTILES:
        clipped = np.maximum(raw.astype(np.float64) - np.percentile(raw, p), 0)
        floored.append(norm.normalize(clipped))
    off = AugmentConfig(flip=False, rotate90=False, scale_intensity=False,
                        shift_intensity=False, contrast=False, noise=False)
    crops = TrainingCrops([stack], raw.shape, 0.0, replace(off, zero_floor=True),
                          np.random.default_rng(0))
    draws, seen, hits = 600, set(), 0
    for _ in range(draws):
        image = crops.batch(1)[0][0, 0].numpy()
        if np.allclose(image, plain, atol=1e-5):
            continue
        hits += 1
        match = [k for k, f in enumerate(floored) if np.allclose(image, f, atol=1e-5)]
        assert match, "a crop that is neither the stack nor one clipped at a percentile"
        seen.add(ZERO_FLOOR_PERCENTILES[match[0]])
        assert (image == 0).mean() >= ZERO_FLOOR_PERCENTILES[match[0]] / 100 - 1e-9
    p = ZERO_FLOOR_PROB
    assert abs(hits / draws - p) < 4.5 * math.sqrt(p * (1 - p) / draws)
    assert len(seen) > 20 and min(seen) < 60 and max(seen) > 90
    unfloored = TrainingCrops([stack], raw.shape, 0.0, off, np.random.default_rng(0))
    assert all(np.allclose(unfloored.batch(1)[0][0, 0].numpy(), plain, atol=1e-5)
               for _ in range(50))


def test_with_a_background_crops_are_crops_of_the_whole_stack_normalised(tiny_training_set):
    """A background subtraction needs a crop's surroundings: the stacks are kept normalised
    and every crop is the whole stack's normalised voxels there (padding 0)."""
    from dineuro.data.dataset import open_dataset

    dataset = open_dataset(tiny_training_set)
    names = dataset.split()["train"][:2]
    norm = NormalizationConfig(background=2.0)
    stacks = load_stacks(dataset, names, norm)
    wholes = [norm.normalize(dataset.image(name).array) for name in names]
    for stack, whole in zip(stacks, wholes, strict=True):
        np.testing.assert_array_equal(stack.normalized(), whole)
        assert whole.min() == 0 and 0 < whole.max() <= 1
    crop = (8, 32, 32)
    where = CropSampler(stacks, crop, 0.5, np.random.default_rng(3))
    sampler = CropSampler(stacks, crop, 0.5, np.random.default_rng(3))
    for _ in range(20):
        index, start, _ = where.start()
        image, _, _ = sampler.draw()
        np.testing.assert_array_equal(image, extract(wholes[index], start, crop))
    plain = load_stacks(dataset, names, NormalizationConfig())
    assert plain[0].raw.dtype == dataset.image(names[0]).array.dtype  # kept as stored


def test_extract_pads_outside_the_array():
    array = np.arange(27).reshape(3, 3, 3)
    out = extract(array, (-1, 1, 2), (2, 3, 2), fill=-1)
    assert (out[0] == -1).all() and (out[1, 2:] == -1).all() and (out[1, :, 1:] == -1).all()
    assert out[1, 0, 0] == array[0, 1, 2] and out[1, 1, 0] == array[0, 2, 2]


# -- augmentation ---------------------------------------------------------------------------
def test_spatial_augmentation_keeps_image_and_label_aligned():
    rng = np.random.default_rng(0)
    image = rng.random((8, 16, 16), dtype=np.float32)
    label = image > 0.8
    spatial = Augmenter(AugmentConfig(scale_intensity=False, shift_intensity=False,
                                      contrast=False, noise=False), (8, 16, 16))
    changed = 0
    for seed in range(40):
        out_image, out_label = spatial(image, label, seed)
        assert out_image.shape == out_label.shape == (1, 8, 16, 16)
        assert torch.equal(out_label > 0.5, out_image > 0.8)
        changed += not torch.equal(out_image[0], torch.from_numpy(image))
    assert changed > 30  # flips and rotations happen (1/16 of draws leave the crop unchanged)
    # Every intensity transform but noise is increasing: the label stays the brightest voxels.
    monotone = Augmenter(AugmentConfig(noise=False), (8, 16, 16))
    for seed in range(40):
        out_image, out_label = monotone(image, label, seed)
        fg = out_label[0] > 0.5
        assert int(fg.sum()) == int(label.sum())
        assert out_image[0][fg].min() > out_image[0][~fg].max()


def test_augmentation_is_seeded_and_rotates_only_in_xy():
    image = np.random.default_rng(0).random((4, 8, 8), dtype=np.float32)
    augment = Augmenter(AugmentConfig(), (4, 8, 8))
    a, b = augment(image, image > 0.5, 7), augment(image, image > 0.5, 7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(InputError, match="rotate90"):
        Augmenter(AugmentConfig(), (8, 16, 32))
    Augmenter(AugmentConfig(rotate90=False), (8, 16, 32))


# -- steps ----------------------------------------------------------------------------------
def test_bf16_autocast_step_runs_on_cpu():
    from dineuro.models.build import build_model

    torch.manual_seed(0)
    model = build_model("tiny", "scratch", crop=(16, 32, 32), patch=(8, 16, 16))
    optimizer, scheduler = make_optimizer(model, TrainConfig(data="d", out="o", steps=2,
                                                             warmup_steps=0, lr=1e-3))
    before = weights_of(model)
    images = torch.rand(1, 1, 16, 32, 32)
    labels = (images > 0.9).float()
    loss = train_step(model, make_loss(), optimizer, scheduler, images, labels, 1.0,
                      autocast_device="cpu")
    assert math.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.fixture(scope="module")
def straight_run(tiny_training_set, tmp_path_factory):
    """6 steps with validation at 3 and 6, all augmentations on: weights and progress."""
    seen = []
    out = tmp_path_factory.mktemp("runs") / "straight"
    config = _config(tiny_training_set, out, "steps=6", "val_every=3")
    result = train(config, progress=lambda *a: seen.append(a))
    return config, result, weights_of(result.model), seen


def test_run_folder(straight_run):
    config, result, _, seen = straight_run
    out = Path(config.out)
    assert load_config(out / "config.yaml") == config
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert [r["val_dice"] != "" for r in rows] == [False, False, True, False, False, True]
    assert float(rows[0]["lr"]) == pytest.approx(5e-4)  # warm-up: step 1 of 2
    assert [s[:2] for s in seen] == [(s, 6) for s in range(1, 7)]
    assert seen[2][3] is not None and seen[3][3] is None
    assert result.steps == 6 and result.best.exists() and result.last.exists()
    assert 0.0 <= result.best_val_dice <= 1.0
    model, meta = load_model(result.best)
    assert meta["step"] == result.best_step and meta["val_dice"] == result.best_val_dice
    assert meta["normalization"] == config.normalization.to_dict()
    assert meta["spacing"] == [1.0, 0.5, 0.5] and meta["train_config"] == config.to_dict()
    assert "resume" in load_checkpoint(result.last) and "resume" not in load_checkpoint(
        result.best)


def test_same_seed_gives_identical_weights(straight_run, tiny_training_set, tmp_path):
    config, _, weights, seen = straight_run
    again = train(replace(config, out=str(tmp_path / "again")))
    assert_same_weights(weights_of(again.model), weights)
    other = train(replace(config, out=str(tmp_path / "other"), seed=1, steps=2))
    assert not torch.equal(other.model.state_dict()["out.conv.conv.weight"],
                           again.model.state_dict()["out.conv.conv.weight"])


def test_resume_continues_exactly(straight_run, tmp_path):
    config, _, weights, seen = straight_run
    config = replace(config, out=str(tmp_path / "resumed"))

    def stop_at_4(step, total, loss, val_dice):
        if step == 4:  # last.pt is from step 3; metrics.csv already has a row for step 4
            raise Stop

    with pytest.raises(Stop):
        train(config, progress=stop_at_4)
    with pytest.raises(InputError, match="already holds a training run"):
        train(config)
    with pytest.raises(InputError, match="other settings of \\['lr'\\]"):
        train(replace(config, lr=0.5), resume=True)
    resumed_seen = []
    result = train(config, progress=lambda *a: resumed_seen.append(a), resume=True)
    assert_same_weights(weights_of(result.model), weights)
    assert [s[2] for s in resumed_seen] == [s[2] for s in seen[3:]]  # identical losses
    with (Path(config.out) / "metrics.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 7))
    assert result.steps == 6 and result.best_val_dice == straight_run[1].best_val_dice


def test_run_older_than_the_loss_keys_resumes_with_their_defaults(tiny_training_set, tmp_path):
    config = _config(tiny_training_set, tmp_path / "old", "steps=1")
    last = train(config).last
    checkpoint = load_checkpoint(last)
    for key in ("loss", "cldice_weight", "cldice_iterations", "skeleton_recall_weight",
                "extra_data"):
        del checkpoint["train_config"][key]
    torch.save(checkpoint, last)
    with pytest.raises(InputError, match="other settings of \\['loss'\\]"):
        train(replace(config, steps=2, loss="dice_ce_cldice"), resume=True)
    assert train(replace(config, steps=2), resume=True).steps == 2


def _merged(first: Path, second: Path, out: Path) -> Path:
    """One dataset folder holding both folders' stacks (the second's renamed b_NAME) and their
    train and val splits, first's before second's: what ``extra_data`` stands for."""
    split = {"train": [], "val": [], "test": []}
    for folder, prefix in ((first, ""), (second, "b_")):
        for sub in ("images", "labels", "swc"):
            (out / sub).mkdir(parents=True, exist_ok=True)
            for file in (folder / sub).iterdir():
                shutil.copy(file, out / sub / (prefix + file.name))
        stored = json.loads((folder / "split.json").read_text())
        for key in ("train", "val"):
            split[key] += [prefix + name for name in stored[key]]
    (out / "split.json").write_text(json.dumps(split))
    return out


def test_extra_data_trains_on_both_folders_as_one(tiny_training_set, tmp_path):
    second = write_synthetic_dataset(tmp_path / "second", replace(
        PRESETS["small"], n_stacks=4, shape=(16, 48, 48), navis_fraction=0, seed=1))
    merged = _merged(tiny_training_set, second, tmp_path / "merged")
    runs = {name: train(_config(data, tmp_path / name, "steps=3", "val_every=3", *extra))
            for name, data, extra in (
                ("extra", tiny_training_set, [f"extra_data=[{second}]"]),
                ("merged", merged, []), ("first only", tiny_training_set, []))}
    assert_same_weights(weights_of(runs["extra"].model), weights_of(runs["merged"].model))
    assert runs["extra"].best_val_dice == runs["merged"].best_val_dice
    with pytest.raises(AssertionError):  # the second folder's stacks do change the run
        assert_same_weights(weights_of(runs["extra"].model), weights_of(runs["first only"].model))
    assert load_config(tmp_path / "extra" / "config.yaml").extra_data == [str(second)]


def test_an_extra_folder_without_train_stacks_is_refused(tiny_training_set, tmp_path):
    empty = tmp_path / "empty"
    shutil.copytree(tiny_training_set, empty)
    (empty / "split.json").write_text(json.dumps({"train": [], "val": [], "test": []}))
    with pytest.raises(InputError, match="empty train split"):
        train(_config(tiny_training_set, tmp_path / "run", "steps=1",
                      f"extra_data=[{empty}]"))


@pytest.mark.parametrize("how", ["same path", "a link to it"])
def test_a_folder_named_twice_is_refused(tiny_training_set, tmp_path, how):
    again = tiny_training_set
    if how == "a link to it":
        again = tmp_path / "link"
        again.symlink_to(tiny_training_set, target_is_directory=True)
    with pytest.raises(InputError, match="named twice") as error:
        train(_config(tiny_training_set, tmp_path / "run", "steps=1", f"extra_data=[{again}]"))
    assert again.name in str(error.value)
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("loss_name", ["dice_ce_cldice", "dice_ce_skeleton_recall"])
def test_topology_losses_train(tiny_training_set, tmp_path, loss_name):
    losses = []
    config = _config(tiny_training_set, tmp_path / "run", "steps=3", "val_every=3",
                     f"loss={loss_name}")
    result = train(config, progress=lambda step, total, loss, dice: losses.append(loss))
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert load_model(result.last)[1]["train_config"]["loss"] == loss_name


def test_resume_without_a_checkpoint_starts_from_step_0(tiny_training_set, tmp_path):
    with pytest.warns(UserWarning, match="holds no last.pt yet.*starts from step 0"):
        result = train(_config(tiny_training_set, tmp_path / "none", "steps=1"), resume=True)
    assert result.steps == 1 and load_checkpoint(result.last)["step"] == 1


def test_loss_decreases(tiny_training_set, tmp_path):
    losses = []
    config = _config(tiny_training_set, tmp_path / "run", "steps=20", "val_every=20",
                     "foreground_prob=1.0", "augment.noise=false")
    train(config, progress=lambda step, total, loss, dice: losses.append(loss))
    assert len(losses) == 20
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05


def test_bf16_on_cpu_is_ignored_with_a_warning(tiny_training_set, tmp_path):
    config = _config(tiny_training_set, tmp_path / "run", "steps=1", "amp=bf16", "device=cpu")
    with pytest.warns(UserWarning, match="bf16 is only used on CUDA"):
        result = train(config)
    assert math.isfinite(result.loss)


def test_module_entry_point_reports_bad_keys(tiny_training_set, tmp_path):
    from dineuro.train.__main__ import main

    config = tmp_path / "c.yaml"
    config.write_text(f"data: {tiny_training_set}\nout: {tmp_path / 'run'}\nlearning_rate: 0.1\n")
    with pytest.raises(InputError, match="learning_rate"):
        main([str(config)])


def test_teacher_is_resolved_and_required(tiny_training_set, tmp_path):
    from dineuro.models.vit2d import VisionTransformer2d

    with pytest.raises(InputError, match="needs a DINO teacher"):
        train(_config(tiny_training_set, tmp_path / "a", "steps=1", "transfer=center"))
    with pytest.raises(InputError, match="neither an existing file nor a known weights name"):
        train(_config(tiny_training_set, tmp_path / "b", "steps=1", "transfer=center",
                      "teacher=dino_vitx99"))
    teacher = tmp_path / "dino_tiny.pth"
    torch.save(VisionTransformer2d(embed_dim=48, depth=4, num_heads=3).state_dict(), teacher)
    result = train(_config(tiny_training_set, tmp_path / "c", "steps=1", "transfer=center",
                           f"teacher={teacher}"))
    _, meta = load_model(result.last)
    assert meta["model_config"]["transfer"] == "center"
    assert meta["model_config"]["teacher"] == str(teacher)


def test_without_val_split_only_last_is_written(tiny_training_set, tmp_path):
    import json
    import shutil

    data = tmp_path / "noval"
    shutil.copytree(tiny_training_set, data)
    split = json.loads((data / "split.json").read_text())
    (data / "split.json").write_text(json.dumps({**split, "val": []}))
    result = train(_config(data, tmp_path / "run", "steps=1"))
    assert result.best is None and result.best_val_dice is None
    assert result.last.exists() and not (tmp_path / "run" / "best.pt").exists()
    assert load_model(result.last)[1]["val_dice"] is None
