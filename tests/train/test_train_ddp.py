"""Training under ``torchrun --nproc_per_node 2`` (gloo on CPU): both ranks end equal."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from dineuro.checkpoint import load_checkpoint, load_model

#: Run on each rank: the module entry point, then a hash of the rank's final weights.
SCRIPT = textwrap.dedent("""
    import os, sys
    from dineuro.train.__main__ import main
    from test_train_ddp import _digest

    result = main(sys.argv[1:])
    rank = os.environ["RANK"]
    with open(os.path.join(os.environ["HASH_DIR"], f"rank{rank}.txt"), "w") as f:
        f.write(f"{result.world_size} {result.steps} {_digest(result.model.state_dict())}")
""")


def _digest(state: dict) -> str:
    """SHA-256 of a state dict's names and bytes."""
    digest = hashlib.sha256()
    for key, value in sorted(state.items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _torchrun() -> list[str]:
    beside = Path(sys.executable).with_name("torchrun")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "torch.distributed.run"]


def test_two_ranks_end_with_identical_weights(tiny_training_set, tmp_path):
    script = tmp_path / "run_rank.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    config = Path(__file__).resolve().parents[2] / "configs" / "train_tiny.yaml"
    overrides = [f"data={tiny_training_set}", f"out={out}", "crop=[16, 32, 32]",
                 "model_options={patch: [8, 16, 16]}", "steps=4", "val_every=2",
                 "warmup_steps=1", "device=cpu"]
    command = [*_torchrun(), "--standalone", "--nproc_per_node", "2", str(script),
               str(config), *[arg for item in overrides for arg in ("--set", item)]]
    env = {**os.environ, "HASH_DIR": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    hashes = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert hashes[0] == hashes[1]
    assert hashes[0][:2] == ["2", "4"]
    assert "trained 4 steps" in done.stdout and "on 2 process(es)" in done.stdout
    # Rank 0 wrote the run folder; last.pt holds both ranks' crop generators, which differ.
    assert (out / "best.pt").exists() and (out / "config.yaml").exists()
    last = load_checkpoint(out / "last.pt")
    crops = [state["crops"] for state in last["resume"]["random"]]
    assert len(crops) == 2 and crops[0] != crops[1]
    model, meta = load_model(out / "last.pt")
    assert meta["step"] == 4 and _digest(model.state_dict()) == hashes[0][2]
    with (out / "metrics.csv").open() as f:
        assert len(f.read().splitlines()) == 1 + 4
