"""A whole volume on dask.distributed (dineuro.scale.run_volume, `dineuro run --workers`):
the same map, trace and mask as in memory, a lost worker's block run again, failures reported
and resumed, settings and outputs guarded.

The volume is a small synthetic stack of the realistic preset (several neurons, fibres without
a soma, anisotropic voxels) cut into 8 blocks, so fibres cross many block borders; the
reference is the packaged model's in-memory prediction (float32, every window computed alike)
and :func:`dineuro.trace.trace` of it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import distributed
import numpy as np
import pytest
import zarr

from dineuro.data.synth.generate import preset_config, synthesize_stack
from dineuro.errors import InputError
from dineuro.evaluate import compare_trees
from dineuro.io import read_swc
from dineuro.io._omezarr import ome_metadata, open_image
from dineuro.scale import BlocksFailed, run_volume, volume_outputs
from dineuro.trace import as_probability, traced_mask

BLOCK = (24, 80, 80)
SMALL = (48, 48, 48)  # prediction windows that leave a far block's region clear of a voxel
EXACT = {"precision": "fp32", "prob_dtype": "float32", "block": BLOCK}


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """(path of an OME-Zarr volume, its in-memory probability map, the in-memory trace)."""
    from dineuro import Predictor
    from dineuro.trace import trace

    stack = synthesize_stack(preset_config("realistic", shape=(48, 160, 160), seed=4,
                                           n_stacks=1), 0)
    path = tmp_path_factory.mktemp("volume") / "brain.ome.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.attrs.update(ome_metadata(stack.spacing, "brain"))
    group.create_array("0", data=stack.image, chunks=(16, 64, 64))
    prob = Predictor.from_checkpoint("default", device="cpu", precision="fp32").predict(
        stack.image)
    return path, stack.spacing, prob, trace(prob, stack.spacing, image=stack.image)


def _cable_near(tree, planes, axis, spacing, width=2.0):
    """Cable (x voxels) within ``width`` voxels of each plane ``coordinate == p`` along SWC
    ``axis`` (0 x, 1 y, 2 z), by sampling every edge each 0.05 of its length."""
    parent = tree.parent_index
    child = np.flatnonzero(parent >= 0)
    a, b = tree.xyz[parent[child]], tree.xyz[child]
    t = np.linspace(0.025, 0.975, 20)
    points = a[:, None] + t[None, :, None] * (b - a)[:, None]
    step = np.linalg.norm((b - a) * (np.asarray(spacing)[::-1] / spacing[2]), axis=1) / len(t)
    return [float((step[:, None] * (np.abs(points[..., axis] - (p - 0.5)) < width)).sum())
            for p in planes]


def test_distributed_run_matches_memory(volume, tmp_path):
    path, spacing, prob, reference = volume
    run = run_volume(path, tmp_path / "out", workers=2, memory_limit="1.5GB", **EXACT)
    got = zarr.open_group(str(run.prob))["0"][:]
    assert np.abs(got - prob).max() < 1e-5
    tree = read_swc(run.swc)
    scores = compare_trees(tree, reference)
    assert max(scores.esa, scores.dsa, scores.pds) < 0.5
    assert len(np.unique(tree.xyz, axis=0)) == len(tree)  # no node twice
    # No cable lost or doubled at the seams: the same length crosses every block border.
    for axis, zyx in ((2, 0), (1, 1), (0, 2)):
        planes = list(range(BLOCK[zyx], prob.shape[zyx], BLOCK[zyx]))
        near = _cable_near(tree, planes, axis, spacing)
        expected = _cable_near(reference, planes, axis, spacing)
        assert np.allclose(near, expected, rtol=0.05, atol=0.5), (axis, near, expected)
    facts = run.facts
    assert facts["blocks"] == {"total": 8, "run_now": 8, "failed": 0}
    assert facts["seams"]["joined_exactly"] > 0 and facts["seams"]["dropped"] == 0
    assert facts["worker_memory_limits"] == [1_500_000_000] * 2
    neurons = sorted(run.neurons.iterdir())
    assert len(neurons) == facts["neurons"] == len(tree.roots) > 1
    ids = np.concatenate([read_swc(p).ids for p in neurons])
    assert np.array_equal(ids, tree.ids)  # per-neuron files keep the volume's unique ids
    level1, _, level1_spacing = open_image(run.prob, level=1)
    assert level1.shape[1:] == (80, 80)
    assert np.allclose(level1_spacing[1:], np.asarray(spacing[1:]) * 2)
    # The mask: the pieces of the map the written trace runs through, as traced_mask finds
    # them in the whole map at once; the specks of the map dropped.
    mask = zarr.open_group(str(run.mask))["0"][:]
    expected = traced_mask(got > 0.5, tree)
    assert mask.dtype == np.uint8 and np.array_equal(mask.astype(bool), expected)
    assert facts["mask_voxels"] == expected.sum() < (got > 0.5).sum()
    assert open_image(run.mask, level=1)[0].shape == level1.shape
    assert not volume_outputs(path, tmp_path / "out")["partial"].exists()


def test_distributed_run_with_a_background_view_matches_memory(volume, tmp_path):
    """Each view's signal level is measured once for the volume and every block keeps the
    larger probability of its two maps, as the in-memory map does."""
    from dineuro import Predictor

    path = volume[0]
    image = zarr.open_group(str(path), mode="r")["0"][:]
    expected = Predictor.from_checkpoint("default", device="cpu", precision="fp32",
                                         background_view=4).predict(image)
    assert np.abs(expected - volume[2]).max() > 0.1  # the view changes the map
    run = run_volume(path, tmp_path / "out", workers=2, memory_limit="1.5GB",
                     background_view=4, mask="threshold", threshold=0.3, **EXACT)
    group = zarr.open_group(str(run.prob), mode="r")
    assert np.abs(group["0"][:] - expected).max() < 1e-5
    assert group.attrs["dineuro"]["background_view"] == 4
    # mask="threshold": every voxel of the map above the threshold
    mask = zarr.open_group(str(run.mask), mode="r")["0"][:]
    assert np.array_equal(mask.astype(bool), group["0"][:] > 0.3)


def test_lost_worker_block_runs_again(volume, tmp_path):
    """A worker killed while it holds a block: the nanny restarts it, the scheduler runs the
    block again, and the map is the same as without the loss."""
    path, _, prob, _ = volume
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        before = client.run(os.getpid)
        result = {}
        worker = threading.Thread(target=lambda: result.update(run=run_volume(
            path, tmp_path / "out", client=client, **EXACT)))
        worker.start()
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and worker.is_alive():
            busy = [address for address, keys in client.processing().items() if keys]
            fragments = volume_outputs(path, tmp_path / "out")["partial"] / "fragments"
            if busy and fragments.is_dir() and any(fragments.iterdir()):
                killed = before[busy[0]]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        worker.join(timeout=300)
        assert killed is not None, "the run ended before a worker could be killed"
        after = client.run(os.getpid)
    assert killed not in after.values() and len(after) == 2  # restarted by the nanny
    got = zarr.open_group(str(result["run"].prob))["0"][:]
    assert np.abs(got - prob).max() < 1e-5
    assert result["run"].facts["blocks"]["run_now"] == 8


def test_failed_block_reported_then_resumed(volume, tmp_path, monkeypatch):
    """A block that fails for a data reason is reported, the others finish, nothing looks
    done; the same call then runs only that block; other settings are refused meanwhile."""
    import dineuro.scale.block as block_module

    path, _, prob, _ = volume
    out = tmp_path / "out"
    paths = volume_outputs(path, out)
    real = block_module.block_fragments

    def broken(region_prob, region_begin, begin, *args, **kwargs):
        if tuple(begin) == (24, 80, 80):
            raise InputError("the block holds unreadable voxels.")
        return real(region_prob, region_begin, begin, *args, **kwargs)

    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=":0") as client:
        monkeypatch.setattr(block_module, "block_fragments", broken)
        with pytest.raises(BlocksFailed, match="1 of 8 blocks failed.*z1_y1_x1"):
            run_volume(path, out, client=client, **EXACT)
        assert not any(paths[k].exists() for k in ("prob", "swc", "neurons", "summary"))
        failed = json.loads((paths["partial"] / "failed.json").read_text())
        assert list(failed) == ["z1_y1_x1"] and "unreadable voxels" in failed["z1_y1_x1"]
        with pytest.raises(InputError, match="other settings.*trace"):
            run_volume(path, out, client=client, high=0.6, **EXACT)
        monkeypatch.setattr(block_module, "block_fragments", real)
        lines = []
        run = run_volume(path, out, client=client, notify=lines.append, **EXACT)
    assert run.facts["blocks"] == {"total": 8, "run_now": 1, "failed": 0}
    assert any("7 of 8 blocks were done" in line for line in lines)
    assert np.abs(zarr.open_group(str(run.prob))["0"][:] - prob).max() < 1e-5


def test_interrupted_run_continues(volume, tmp_path):
    """A run stopped part-way (Ctrl-C, a killed client) leaves its finished blocks; the same
    call runs only the others and gives the same map."""
    path, _, prob, _ = volume
    out = tmp_path / "out"

    def stop_after_three(done, total):
        if done >= 3:
            raise KeyboardInterrupt

    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=":0") as client:
        with pytest.raises(KeyboardInterrupt):
            run_volume(path, out, client=client, progress=stop_after_three, **EXACT)
        assert not volume_outputs(path, out)["swc"].exists()
        run = run_volume(path, out, client=client, **EXACT)
    assert run.facts["blocks"]["run_now"] <= 5
    assert np.abs(zarr.open_group(str(run.prob))["0"][:] - prob).max() < 1e-5


def test_nan_voxels_refused_before_the_run_or_reported_by_their_block(volume, tmp_path,
                                                                       monkeypatch):
    """NaN that the whole-volume statistics read stops the run at once, naming the volume; NaN
    that their samples miss (a huge volume's) fails its block alone, in one sentence."""
    import dineuro.data.normalize as normalize
    from dineuro.predict import _signal

    path, *_ = volume
    image = zarr.open_group(str(path))["0"][:].astype(np.float32)
    image[40, 150, 150] = np.nan  # in block z1_y1_x1
    nan_path = tmp_path / "nan.ome.zarr"
    group = zarr.open_group(str(nan_path), mode="w")
    group.attrs.update(ome_metadata((1.0, 1.0, 1.0), "nan"))
    group.create_array("0", data=image, chunks=(16, 64, 64))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=":0") as client:
        # 48^3 windows at overlap 0.5 and a halo for bridges of 20: the default model's
        # 48x96x96 windows, 48^3 ones at overlap 0.25, or the halo of the default 30-voxel line
        # bridges would reach the NaN from every block
        near = {"block": BLOCK, "window": SMALL, "overlap": 0.5, "follow_line_gap": 20.0}
        with pytest.raises(InputError, match="nan.ome.zarr.*NaN"):
            run_volume(nan_path, tmp_path / "a", client=client, **near)
        assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
        monkeypatch.setattr(normalize, "MAX_PERCENTILE_SAMPLES", 1000)  # every 35th row
        monkeypatch.setattr(_signal, "TILE", (8, 32, 32))
        monkeypatch.setattr(_signal, "MAX_LEVEL_SAMPLES", 1000)  # one tile of 150
        with pytest.raises(BlocksFailed, match="of 8 blocks failed.*NaN"):
            run_volume(nan_path, tmp_path / "b", client=client, **near)
    # The blocks whose region (box, halo and window context) reads the voxel fail; a far one not.
    failed = json.loads((volume_outputs(nan_path, tmp_path / "b")["partial"]
                         / "failed.json").read_text())
    assert "z1_y1_x1" in failed and "z0_y0_x0" not in failed
    assert all("holds NaN" in reason for reason in failed.values())


def test_local_workers_start_without_dask_malloc_trim():
    """dask's nanny gives workers MALLOC_TRIM_THRESHOLD_, which makes torch's large
    allocations fault in afresh (a block about twice as slow); ours start without it, and
    dask's other settings (one OpenMP thread) stay."""
    from dineuro.scale.cluster import dask_client

    with dask_client(workers=1, memory_limit="1GB") as client:
        environ = client.run(lambda: {k: os.environ.get(k) for k in (
            "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")})
    assert list(environ.values()) == [{"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}]


def test_refusals(volume, tmp_path, monkeypatch):
    path, *_ = volume
    monkeypatch.setattr("dineuro.scale.cluster.CONNECT_TIMEOUT", "2s")
    (tmp_path / "brain.swc").write_text("# mine\n")
    with pytest.raises(InputError, match="already exists"):
        run_volume(path, tmp_path, workers=1)
    assert (tmp_path / "brain.swc").read_text() == "# mine\n"
    tif = tmp_path / "stack.tif"
    tif.write_bytes(b"")
    with pytest.raises(InputError, match="not an OME-Zarr"):
        run_volume(tif, tmp_path / "out", workers=1)
    with pytest.raises(InputError, match="mask should be one of"):
        run_volume(path, tmp_path / "out3", workers=1, mask="blobs")
    with pytest.raises(InputError, match="threshold should be a probability"):
        run_volume(path, tmp_path / "out3", workers=1, threshold=1.5)
    assert not (tmp_path / "out3").exists()
    with pytest.raises(InputError, match="cannot reach the dask scheduler"):
        run_volume(path, tmp_path / "out2", scheduler="tcp://127.0.0.1:1")


def test_cli_run_on_a_scheduler(volume, tmp_path):
    """`dineuro run VOLUME -o OUT --scheduler ADDRESS`: the outputs and a summary line; one
    sentence for what a cluster run cannot take."""
    from helpers import invoke

    path, *_ = volume
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        scheduler_file = tmp_path / "scheduler.json"  # as `dask scheduler` writes it
        scheduler_file.write_text(json.dumps({"address": cluster.scheduler_address}))
        result = invoke("run", path, "-o", tmp_path / "out", "--scheduler", scheduler_file,
                        "--block", "48,80,80", "--units", "um")
    assert result.code == 0, result.err
    assert "neuron(s)" in result.err and "micrometres of cable" in result.err
    summary = json.loads((tmp_path / "out" / "brain_summary.json").read_text())
    assert summary["blocks"]["total"] == 4 and summary["settings"]["trace"]["units"] == "um"
    assert read_swc(tmp_path / "out" / "brain.swc").comments[0].startswith("dineuro {")
    # the mask of a micrometre SWC: its cable read back into voxels
    prob = zarr.open_group(str(tmp_path / "out" / "brain_prob.ome.zarr"))["0"][:]
    mask = zarr.open_group(str(tmp_path / "out" / "brain_mask.ome.zarr"))["0"][:]
    assert "brain_mask.ome.zarr" in result.err
    assert np.array_equal(mask.astype(bool), traced_mask(
        as_probability(prob, "probability") > 0.5, read_swc(tmp_path / "out" / "brain.swc")))
    for args, words in (([path, path], "takes one volume"),
                        ([path, "--method", "geodesic"], "thinning")):
        bad = invoke("run", *args, "-o", tmp_path / "o2", "--workers", "1")
        assert bad.code == 2 and words in bad.err and len(bad.err_lines) == 1, bad.err
    assert not (tmp_path / "o2").exists()
