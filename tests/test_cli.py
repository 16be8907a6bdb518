"""The ``dineuro`` command line, driven the way users drive it, and how it fails on bad input.

Most cases call the console-script entry point :func:`dineuro.cli.main` in this process with
``sys.argv`` set (:func:`invoke`); a few run the installed ``dineuro`` script in a subprocess to
check what a shell really sees. For bad input the contract is: exit code 2, one sentence on
stderr naming the file and the problem, no traceback, and nothing written: no output file or
folder, no hidden ``.partial`` file beside it, and any existing file left byte for byte.
"""

from __future__ import annotations

import errno
import itertools
import json
import re
import urllib.error
from dataclasses import replace
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import tifffile
from helpers import SYNTH_ARGS, assert_input_error, invoke, run_script, snapshot

from dineuro.data.synth import PRESETS
from dineuro.io import SwcTree, read_volume, write_swc, write_volume
from dineuro.models.weights import REGISTRY

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VERBS = ("convert", "synth", "show", "demo", "weights")


def coded(shape, dtype=np.uint16) -> np.ndarray:
    """Voxels that spell their index and use the whole 16-bit range (no two equal)."""
    values = np.arange(np.prod(shape), dtype=np.int64) * 997 % 65536
    return values.reshape(shape).astype(dtype)


# --- help ------------------------------------------------------------------------------------

def test_help_through_the_installed_script_lists_every_verb():
    result = run_script("--help")
    assert result.code == 0, result.err
    for verb in VERBS:
        assert re.search(rf"\b{verb}\b", result.out), verb


def test_synth_help_names_the_presets():
    result = invoke("synth", "--help")
    assert result.code == 0
    for preset in PRESETS:
        assert preset in result.out


# --- convert ---------------------------------------------------------------------------------

def test_convert_round_trip_tif_v3draw_nifti_tif(tmp_path):
    array = coded((5, 6, 7))
    chain = [tmp_path / name for name in ("a.tif", "b.v3draw", "c.nii.gz", "d.tif")]
    write_volume(chain[0], array, spacing=(2.0, 0.5, 0.25))
    for src, dst in itertools.pairwise(chain):
        result = invoke("convert", src, dst)
        assert result.code == 0, result.err
        volume = read_volume(dst)
        assert volume.array.dtype == np.uint16
        np.testing.assert_array_equal(volume.array, array)
        # v3draw has no spacing field: it is dropped there and reads as 1 from then on.
        assert volume.spacing == (1.0, 1.0, 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in chain]


def test_convert_keeps_spacing_where_the_format_stores_it(tmp_path):
    array = coded((4, 5, 6))
    spacing = (2.0, 0.5, 0.25)
    chain = [tmp_path / name for name in ("a.tif", "b.nii.gz", "c.nii", "d.tif")]
    write_volume(chain[0], array, spacing=spacing)
    for src, dst in itertools.pairwise(chain):
        assert invoke("convert", src, dst).code == 0
        volume = read_volume(dst)
        assert volume.array.dtype == np.uint16
        np.testing.assert_array_equal(volume.array, array)
        assert volume.spacing == pytest.approx(spacing)


def test_convert_slice_folder_in_natural_order(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for name in ("10.tif", "2.tif", "1.tif"):  # created out of order on purpose
        plane = np.full((4, 5), int(name.split(".")[0]), np.uint16)
        plane[0, 0] = 1000  # not constant, so the slice is surely stored as data
        tifffile.imwrite(folder / name, plane)
    out = tmp_path / "stack.tif"
    result = invoke("convert", folder, out)
    assert result.code == 0, result.err
    volume = read_volume(out)
    assert volume.array.shape == (3, 4, 5) and volume.array.dtype == np.uint16
    assert volume.array[:, 1, 1].tolist() == [1, 2, 10]


def test_convert_picks_a_channel_of_an_imagej_hyperstack(tmp_path):
    data = coded((3, 2, 4, 5))  # Z, C, Y, X
    src = tmp_path / "two_channels.tif"
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": "ZCYX"})
    out = tmp_path / "channel1.tif"
    result = invoke("convert", src, out, "--channel", "1")
    assert result.code == 0, result.err
    volume = read_volume(out)
    assert volume.array.dtype == np.uint16
    np.testing.assert_array_equal(volume.array, data[:, 1])


def _tif(path: Path, shape=(3, 4, 5)) -> Path:
    write_volume(path, coded(shape))
    return path


def _missing(tmp):
    return [tmp / "missing.tif", tmp / "out.tif"], tmp / "missing.tif", "does not exist"


def _unknown_input_extension(tmp):
    src = tmp / "stack.png"
    src.write_bytes(PNG_SIGNATURE + bytes(64))
    return [src, tmp / "out.tif"], src, "unsupported file type"


def _unknown_output_extension(tmp):
    return [_tif(tmp / "a.tif"), tmp / "out.png"], tmp / "out.png", "unsupported file type"


def _two_d(tmp):
    src = tmp / "plane.tif"
    tifffile.imwrite(src, coded((4, 5)))
    return [src, tmp / "out.tif"], src, "is 2D"


def _empty_folder(tmp):
    (tmp / "slices").mkdir()
    return [tmp / "slices", tmp / "out.tif"], tmp / "slices", "no TIFF slices"


def _output_exists(tmp):
    dst = tmp / "out.tif"
    dst.write_bytes(b"precious bytes that must survive")
    return [_tif(tmp / "a.tif"), dst], dst, "already exists"


def _output_is_input(tmp):
    src = _tif(tmp / "a.tif")
    return [src, src], src, "both the input and the output"


def _truncated_v3draw(tmp):
    src = write_volume(tmp / "a.v3draw", coded((3, 4, 5)))
    src.write_bytes(src.read_bytes()[:-7])
    return [src, tmp / "out.tif"], src, "truncated"


def _channels_not_chosen(tmp):
    src = tmp / "two_channels.tif"
    tifffile.imwrite(src, coded((3, 2, 4, 5)), imagej=True, metadata={"axes": "ZCYX"})
    return [src, tmp / "out.tif"], src, "--channel"


def _channel_out_of_range(tmp):
    args, src, _ = _channels_not_chosen(tmp)
    return [*args, "--channel", "2"], src, "out of range"


@pytest.mark.parametrize("case", [
    _missing, _unknown_input_extension, _unknown_output_extension, _two_d, _empty_folder,
    _output_exists, _output_is_input, _truncated_v3draw, _channels_not_chosen,
    _channel_out_of_range,
], ids=lambda case: case.__name__.strip("_"))
def test_convert_bad_input(tmp_path, case):
    args, named, problem = case(tmp_path)
    before = snapshot(tmp_path)
    result = invoke("convert", *args)
    assert_input_error(result, named, problem)
    assert snapshot(tmp_path) == before  # no output, no .partial, existing files untouched


def test_convert_bad_input_through_the_installed_script(tmp_path):
    """The real script: one line on stderr, exit 2, no traceback, nothing on stdout."""
    src = tmp_path / "missing.v3draw"
    result = run_script("convert", src, tmp_path / "out.tif")
    assert_input_error(result, src, "does not exist")
    assert result.out == ""
    assert list(tmp_path.iterdir()) == []


def test_error_message_keeps_brackets_in_file_names(tmp_path):
    src = tmp_path / "scan[b]1.tif"
    result = invoke("convert", src, tmp_path / "out.tif")
    assert_input_error(result, src, "does not exist")


# --- synth -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth_seed3(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "seed3"
    result = invoke(*SYNTH_ARGS, "--seed", "3", "-o", out)
    assert result.code == 0, result.err
    return out


def _files(root: Path, folder: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / folder).iterdir())}


def test_synth_writes_the_dataset_layout(synth_seed3):
    names = ["synth_000", "synth_001"]
    assert sorted(p.name for p in synth_seed3.iterdir()) == [
        "images", "labels", "meta.json", "split.json", "swc", "unlabelled"]  # nothing hidden
    for folder, ext in (("images", "tif"), ("labels", "tif"), ("swc", "swc"),
                        ("unlabelled", "swc")):
        assert list(_files(synth_seed3, folder)) == [f"{n}.{ext}" for n in names]
    for name in names:
        image = read_volume(synth_seed3 / "images" / f"{name}.tif")
        assert image.array.shape == (16, 48, 48) and image.array.dtype == np.uint8
        assert read_volume(synth_seed3 / "labels" / f"{name}.tif").array.shape == (16, 48, 48)
    split = json.loads((synth_seed3 / "split.json").read_text())
    assert set(split) == {"train", "val", "test"}
    listed = [name for key in ("train", "val", "test") for name in split[key]]
    assert sorted(listed) == names  # every stack exactly once
    meta = json.loads((synth_seed3 / "meta.json").read_text())
    assert meta["seed"] == 3
    config = replace(PRESETS["small"], n_stacks=2, shape=(16, 48, 48), seed=3)
    assert meta["generator"] == json.loads(json.dumps(config.resolved()))
    assert meta["generator"]["imaging"] is not None  # the image model, resolved


def test_synth_same_seed_gives_identical_files(synth_seed3, tmp_path):
    again = tmp_path / "again"
    assert invoke(*SYNTH_ARGS, "--seed", "3", "-o", again).code == 0
    for folder in ("images", "labels", "swc"):
        assert _files(again, folder) == _files(synth_seed3, folder), folder
    assert (again / "split.json").read_bytes() == (synth_seed3 / "split.json").read_bytes()


def test_synth_different_seed_differs(synth_seed3, tmp_path):
    other = tmp_path / "seed4"
    assert invoke(*SYNTH_ARGS, "--seed", "4", "-o", other).code == 0
    for folder in ("images", "swc"):
        ours, theirs = _files(other, folder), _files(synth_seed3, folder)
        assert list(ours) == list(theirs)
        assert all(ours[name] != theirs[name] for name in ours), folder
    assert json.loads((other / "meta.json").read_text())["seed"] == 4


@pytest.mark.parametrize("options, fragments", [
    (["--preset", "huge"], ["'huge'", "small", "bench"]),
    (["--shape", "1,2"], ["--shape", "'1,2'"]),
    (["--shape", "4,48,48"], ["shape", "8"]),
    (["--n", "0"], ["n_stacks"]),
    (["--difficulty", "2"], ["--difficulty", "less than or equal to 1"]),
], ids=["preset", "shape-two-numbers", "shape-too-small", "n-zero", "difficulty"])
def test_synth_rejects_bad_options(tmp_path, options, fragments):
    out = tmp_path / "data"
    result = invoke("synth", "-o", out, *options)
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err, result.err
    assert list(tmp_path.iterdir()) == []


def test_synth_refuses_an_existing_folder(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    before = snapshot(tmp_path)
    result = invoke(*SYNTH_ARGS, "-o", out)
    assert result.code == 2
    assert "Traceback" not in result.err
    errors = [line for line in result.err_lines if line.startswith("error:")]
    assert errors == [f"error: {out}: already exists; choose another output path or remove it "
                      "first."], result.err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("failure", ["full disk", "bug"])
def test_synth_crash_leaves_no_partial_folder(tmp_path, monkeypatch, failure):
    """A failure mid-generation, once the first stack is written into the hidden partial
    folder, leaves no folder, hidden or not: a full disk says so in one sentence, exit 1; an
    unexpected error fails too (its traceback is for a bug report)."""
    from dineuro.data.synth import generate

    out = tmp_path / "data"
    written, partial_at_crash = [], []
    real_write = generate.write_sample

    def write_then_crash(root, name, *args):
        if written:  # the second stack
            partial_at_crash.extend(snapshot(tmp_path))
            if failure == "full disk":
                raise OSError(errno.ENOSPC, "No space left on device", str(root / name))
            raise RuntimeError("an unexpected bug")
        real_write(root, name, *args)
        written.append(name)

    monkeypatch.setattr(generate, "write_sample", write_then_crash)
    result = invoke(*SYNTH_ARGS, "-o", out)
    # Generation was reached: the first stack's files were in the partial folder at the crash.
    assert written == ["synth_000"]
    partial = [p for p in partial_at_crash if re.fullmatch(r"\.data\.[^/]*\.partial", p)]
    assert len(partial) == 1, partial_at_crash
    assert f"{partial[0]}/images/synth_000.tif" in partial_at_crash, partial_at_crash
    assert list(tmp_path.iterdir()) == []  # neither data nor .data.*.partial
    assert result.code != 0
    if failure == "full disk":
        # One sentence (beside the progress bar) naming the folder asked for, not the partial.
        errors = [line for line in result.err_lines if line.startswith("error:")]
        assert result.code == 1 and "Traceback" not in result.err, result.err
        assert len(errors) == 1 and errors[0].endswith("."), result.err
        assert errors[0].startswith(f"error: {out}: No space left on device"), result.err


@pytest.mark.parametrize("options", [["--dtype", "float32"], ["--seed", "-1"]],
                         ids=["dtype", "seed"])
def test_synth_unchecked_options_fail_cleanly(tmp_path, options):
    result = invoke(*SYNTH_ARGS, "-o", tmp_path / "data", *options)
    assert result.code == 2 and "Traceback" not in result.err, result.err
    assert list(tmp_path.iterdir()) == []


# --- show ------------------------------------------------------------------------------------

SHOW_SHAPE = (6, 20, 24)
SHOW_SPACING = (2.0, 1.0, 1.0)


@pytest.fixture
def show_inputs(tmp_path) -> dict[str, Path]:
    """A stack with a bright diagonal neurite, its SWC and its mask, in tmp_path/inputs."""
    folder = tmp_path / "inputs"
    z, y, x = SHOW_SHAPE
    image = np.random.default_rng(0).integers(0, 50, SHOW_SHAPE).astype(np.uint16)
    mask = np.zeros(SHOW_SHAPE, np.uint8)
    xs = np.arange(2, 20)
    ys, zs = xs * 3 // 4, xs * (z - 1) // 20
    image[zs, ys, xs] = 1000
    mask[zs, ys, xs] = 1
    ids = np.arange(1, len(xs) + 1)
    tree = SwcTree(ids=ids, types=[3] * len(xs), xyz=np.stack([xs, ys, zs], axis=1),
                   radius=[1.0] * len(xs), parents=np.r_[-1, ids[:-1]])
    return {"stack": write_volume(folder / "stack.tif", image, SHOW_SPACING),
            "mask": write_volume(folder / "mask.tif", mask, SHOW_SPACING),
            "swc": write_swc(folder / "neuron.swc", tree)}


def test_show_writes_a_png(show_inputs, tmp_path):
    out = tmp_path / "pictures" / "overview.png"
    result = invoke("show", show_inputs["stack"], "--swc", show_inputs["swc"],
                    "--mask", show_inputs["mask"], "-o", out)
    assert result.code == 0, result.err
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left
    pixels = matplotlib.image.imread(out)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    # Two sets of views (plain + overlay) side by side on a 14-inch-wide figure at 150 dpi,
    # as tall as the physical (y + z) / (x + z) ratio asks.
    z, y, x = (n * s for n, s in zip(SHOW_SHAPE, SHOW_SPACING, strict=True))
    assert pixels.shape[1] == 14 * 150
    assert abs(pixels.shape[0] - (7 * (y + z) / (x + z) + 0.5) * 150) <= 1
    assert pixels[..., :3].std() > 0.05  # something is drawn


def _mask_of_other_shape(inputs, tmp):
    mask = write_volume(tmp / "small_mask.tif", np.ones((6, 20, 23), np.uint8))
    return ["--swc", inputs["swc"], "--mask", mask], mask, "shape"


def _swc_with_cycle(inputs, tmp):
    swc = tmp / "cycle.swc"
    swc.write_text("1 1 5 5 2 1 3\n2 3 6 5 2 1 1\n3 3 7 5 2 1 2\n")
    return ["--swc", swc], swc, "cycle"


def _unreadable_stack(inputs, tmp):
    stack = tmp / "broken.tif"
    stack.write_bytes(b"this is not a TIFF file at all")
    return [], stack, "cannot be read as a TIFF file"


def _existing_output(inputs, tmp):
    out = tmp / "overview.png"
    out.write_bytes(b"an older picture")
    return [], out, "already exists"


def _swc_outside_stack(inputs, tmp):
    swc = tmp / "far.swc"
    swc.write_text("1 1 500 500 50 1 -1\n2 3 510 500 50 1 1\n")
    return ["--swc", swc], swc, "outside"


@pytest.mark.parametrize("case", [
    _mask_of_other_shape, _swc_with_cycle, _unreadable_stack, _existing_output,
    _swc_outside_stack,
], ids=lambda case: case.__name__.strip("_"))
def test_show_bad_input(show_inputs, tmp_path, case):
    options, named, problem = case(show_inputs, tmp_path)
    stack = named if case is _unreadable_stack else show_inputs["stack"]
    before = snapshot(tmp_path)
    result = invoke("show", stack, *options, "-o", tmp_path / "overview.png")
    assert_input_error(result, named, problem)
    assert snapshot(tmp_path) == before


def test_show_truncated_tiff_fails_cleanly(tmp_path):
    stack = tmp_path / "cut.tif"
    stack.write_bytes(write_volume(tmp_path / "whole.tif", coded((3, 4, 5))).read_bytes()[:8])
    result = invoke("show", stack, "-o", tmp_path / "overview.png")
    assert_input_error(result, stack)
    assert not (tmp_path / "overview.png").exists()


@pytest.mark.parametrize("name", ["overview.xyz", "overview"])
def test_show_refuses_an_unknown_picture_type(show_inputs, tmp_path, name):
    out = tmp_path / "pictures" / name
    result = invoke("show", show_inputs["stack"], "-o", out)
    assert_input_error(result, out)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


# --- demo ------------------------------------------------------------------------------------

@pytest.fixture
def quick_demo(monkeypatch):
    """The demo's stages as they are, on two smaller stacks."""
    from dineuro import demo

    real = demo.demo_synth_config
    monkeypatch.setattr(demo, "demo_synth_config", lambda: replace(real(), n_stacks=2,
                                                                    shape=(24, 64, 64)))


#: Colour distance (per channel, 0-1) within which a PNG pixel counts as an overlay's colour.
COLOR_TOLERANCE = 0.08
#: The fewest pixels that show an overlay was drawn: a line of the demo picture's width about
#: 150 pixels long; a tinted mask covers far more.
OVERLAY_PIXELS = 200


def _overlay_pixels(picture: Path) -> dict[str, tuple[int, int]]:
    """Pixels of each overlay's colour in the left and right half of a ``mip_figure`` PNG.

    The left half holds the plain projections, the right half the same projections with the
    overlays. A line (trace, gold SWC) is its flat colour; the mask is tinted with alpha over a
    grey projection, so a masked pixel's red and blue exceed its green by alpha times the mask
    colour's, whatever the grey beneath.
    """
    from dineuro.report import GOLD_COLOR, MASK_RGBA, SWC_COLOR

    pixels = matplotlib.image.imread(picture)[..., :3].astype(float)
    *mask_rgb, alpha = MASK_RGBA
    tint = alpha * (np.array(mask_rgb) - mask_rgb[1])  # (r - g, 0, b - g) over any grey
    found = {"mask": np.abs(pixels - pixels[..., 1:2] - tint).max(axis=-1) < COLOR_TOLERANCE}
    for name, color in (("trace", SWC_COLOR), ("gold", GOLD_COLOR)):
        rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)]) / 255
        found[name] = np.abs(pixels - rgb).max(axis=-1) < COLOR_TOLERANCE
    half = pixels.shape[1] // 2
    return {name: (int(hit[:, :half].sum()), int(hit[:, half:].sum()))
            for name, hit in found.items()}


def test_demo_runs_the_pipeline_then_reuses_it(tmp_path, quick_demo):
    out = tmp_path / "demo"
    first = invoke("demo", "-o", out)
    assert first.code == 0, first.err
    data = out / "data"
    assert sorted(p.name for p in data.iterdir()) == [
        "images", "labels", "meta.json", "split.json", "swc", "unlabelled"]
    names = json.loads((data / "split.json").read_text())["test"]
    assert len(names) == 2 and not (out / "run").exists()  # nothing trained
    predictions = sorted(p.name for p in (out / "predictions").iterdir())
    assert predictions == sorted(f"{n}{suffix}" for n in names
                                 for suffix in ("_mask.tif", "_prob.tif", ".swc"))
    for name in names:  # Dice next to the reconstruction scores, per stack
        assert re.search(rf"^\| {name} \| {name}_mask.tif \| [01]\.\d{{3}} \|.*\| [01]\.\d{{3}} \|",
                         first.out, re.MULTILINE), first.out
    assert "F1" in first.out and "ESA" in first.out
    picture = out / f"{names[0]}_trace.png"
    assert picture.read_bytes().startswith(PNG_SIGNATURE)
    # Trace (yellow), predicted mask (magenta) and gold SWC (cyan) drawn over the right-hand
    # projections, none over the plain ones on the left.
    overlays = _overlay_pixels(picture)
    assert all(left == 0 and right > OVERLAY_PIXELS for left, right in overlays.values()), overlays
    stored = {p: (p.stat().st_mtime_ns, p.read_bytes())
              for p in out.rglob("*") if p.is_file() and p != picture}

    second = invoke("demo", "-o", out)
    assert second.code == 0, second.err
    assert {p: (p.stat().st_mtime_ns, p.read_bytes())
            for p in out.rglob("*") if p.is_file() and p != picture} == stored  # reused
    assert second.out == first.out


def test_demo_on_existing_data_without_test_stacks(tmp_path, quick_demo):
    data = tmp_path / "demo" / "data"
    assert invoke(*SYNTH_ARGS, "-o", data).code == 0
    assert json.loads((data / "split.json").read_text())["test"] == []
    result = invoke("demo", "-o", tmp_path / "demo")
    assert result.code == 0, result.err  # no test split: the first stack is the demo's
    assert (tmp_path / "demo" / "synth_000_trace.png").is_file()
    assert (tmp_path / "demo" / "predictions" / "synth_000.swc").is_file()


# --- weights ---------------------------------------------------------------------------------

def test_weights_list_shows_every_name_and_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DINEURO_CACHE", str(cache))
    result = invoke("weights", "list")
    assert result.code == 0, result.err
    assert str(cache) in result.out
    for name, entry in REGISTRY.items():
        assert re.search(rf"^{name}\b.*not downloaded", result.out, re.MULTILINE), name
        assert entry.url in result.out
    assert not cache.exists()  # listing creates nothing


def test_weights_fetch_without_network(tmp_path, monkeypatch):
    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    monkeypatch.setenv("DINEURO_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "weights"
    entry = REGISTRY["dino_vits16"]
    result = invoke("weights", "fetch", "dino_vits16", "--to", folder)
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    errors = [line for line in result.err_lines if line.startswith("error:")]
    assert len(errors) == 1, result.err
    assert result.err_lines[-1] == errors[0]
    assert entry.url in errors[0] and str(folder / entry.file_name) in errors[0]
    assert "no network in tests" in errors[0]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
