"""The dataset-folder layout: what synth writes, what users bring, and how it is read back."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from dineuro.data import open_dataset
from dineuro.data.dataset import write_sample
from dineuro.data.synth import PRESETS, split_names, write_synthetic_dataset
from dineuro.data.synth import generate as generate_module
from dineuro.errors import InputError
from dineuro.io import SwcTree, Volume, write_swc, write_volume

TINY = replace(PRESETS["small"], n_stacks=3, shape=(16, 48, 48))


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data", TINY)


def test_layout_split_and_meta(dataset_dir):
    names = [f"synth_{i:03d}" for i in range(TINY.n_stacks)]
    for folder, ext in (("images", "tif"), ("labels", "tif"), ("swc", "swc")):
        assert sorted(p.name for p in (dataset_dir / folder).iterdir()) == [
            f"{n}.{ext}" for n in names]
    split = json.loads((dataset_dir / "split.json").read_text())
    assert sorted(sum(split.values(), [])) == names
    meta = json.loads((dataset_dir / "meta.json").read_text())
    assert meta["seed"] == TINY.seed and meta["spacing"] == list(TINY.spacing)
    assert meta["generator"]["imaging"]["signal_photons"] > 0  # the resolved image model
    assert set(meta["stacks"]) == set(names)


def test_read_back_matches_what_was_generated(dataset_dir):
    dataset = open_dataset(dataset_dir)
    stack = generate_module.synthesize_stack(TINY, 1)
    image = dataset.image(stack.name)
    assert np.array_equal(image.array, stack.image)
    assert image.spacing == pytest.approx(TINY.spacing)
    assert np.array_equal(dataset.label(stack.name, image), stack.label)
    assert np.allclose(dataset.tree(stack.name).xyz, stack.tree.xyz, atol=1e-3)
    assert np.allclose(dataset.unlabelled(stack.name).xyz, stack.unlabelled.xyz, atol=1e-3)


def test_unlabelled_neurites_are_written_only_where_a_stack_has_some(dataset_dir, tmp_path):
    fragments = TINY.image_model.fragment_count
    assert fragments > 0  # else this test proves nothing
    dataset = open_dataset(dataset_dir)
    for name in dataset.names:
        assert len(dataset.unlabelled(name).roots) == fragments
    clean = replace(TINY, n_stacks=1, imaging=replace(TINY.image_model, fragment_count=0))
    folder = write_synthetic_dataset(tmp_path / "clean", clean)
    assert not (folder / "unlabelled").exists()
    assert open_dataset(folder).unlabelled("synth_000") is None


def test_labels_are_rendered_from_swc_when_absent(dataset_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dataset_dir, copy)
    shutil.rmtree(copy / "labels")
    stored, rendered = open_dataset(dataset_dir), open_dataset(copy)
    for name in stored.names:
        assert np.array_equal(rendered.label(name), stored.label(name))


def test_users_own_stacks_in_other_formats(tmp_path):
    tree = SwcTree([1, 2], [1, 3], [[2, 3, 1], [9, 3, 1]], [1.0, 1.0], [-1, 1])
    write_volume(tmp_path / "images" / "a.nii.gz", np.ones((4, 8, 12), np.uint16), (2, 1, 1))
    write_volume(tmp_path / "images" / "b.v3draw", np.ones((4, 8, 12), np.uint8))
    (tmp_path / "images" / "notes.txt").write_text("not a stack")
    write_swc(tmp_path / "swc" / "a.swc", tree)
    dataset = open_dataset(tmp_path)
    assert dataset.names == ["a", "b"]
    assert dataset.image("a").spacing == pytest.approx((2, 1, 1))
    assert dataset.label("a")[1, 3, 2:10].all()
    with pytest.raises(InputError, match="neither"):
        dataset.label("b")
    with pytest.raises(InputError, match="split.json"):
        dataset.split()


def test_swc_outside_the_stack_is_an_error(tmp_path):
    tree = SwcTree([1, 2], [1, 3], [[200, 3, 1], [290, 3, 1]], [1.0, 1.0], [-1, 1])
    write_sample(tmp_path, "a", Volume(np.zeros((4, 8, 12), np.uint8), (1, 1, 1)), None, tree)
    with pytest.raises(InputError, match="outside the stack") as info:
        open_dataset(tmp_path).label("a")
    assert "a.swc" in str(info.value)


def test_bad_folders(tmp_path):
    with pytest.raises(InputError, match="no images/"):
        open_dataset(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError, match="no stacks"):
        open_dataset(tmp_path)
    write_volume(tmp_path / "images" / "a.tif", np.zeros((4, 8, 8), np.uint8))
    (tmp_path / "split.json").write_text(json.dumps({"train": ["a", "zz"]}))
    with pytest.raises(InputError, match="zz"):
        open_dataset(tmp_path).split()
    (tmp_path / "split.json").write_text("{not json")
    with pytest.raises(InputError, match="split.json"):
        open_dataset(tmp_path).split()
    write_volume(tmp_path / "labels" / "a.tif", np.zeros((4, 8, 9), np.uint8))
    with pytest.raises(InputError, match="shape"):
        open_dataset(tmp_path).label("a")


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    real = generate_module.synthesize_stack

    def fail_on_second(config, index):
        if index == 1:
            raise RuntimeError("disk full")
        return real(config, index)

    monkeypatch.setattr(generate_module, "synthesize_stack", fail_on_second)
    with pytest.raises(RuntimeError):
        write_synthetic_dataset(tmp_path / "out", TINY)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused(dataset_dir):
    before = sorted(p.name for p in dataset_dir.rglob("*"))
    with pytest.raises(InputError, match="already exists"):
        write_synthetic_dataset(dataset_dir, TINY)
    assert sorted(p.name for p in dataset_dir.rglob("*")) == before


@pytest.mark.parametrize("n", [1, 2, 3, 6, 42])
def test_split_is_a_partition_with_the_stated_sizes(n):
    names = [f"s{i}" for i in range(n)]
    split = split_names(names, (0.7, 0.1, 0.2), seed=0)
    assert sorted(sum(split.values(), [])) == sorted(names)
    if n >= 3:
        assert len(split["val"]) == max(1, round(0.1 * n))
        assert len(split["test"]) == max(1, round(0.2 * n))
    assert split == split_names(names, (0.7, 0.1, 0.2), seed=0)
