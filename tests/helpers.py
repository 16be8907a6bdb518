"""Helpers that several test modules share: the command line driven in this process or as the
installed script, a folder's contents, the one-sentence error contract, and a tiny training run.

Kept apart from the test modules so that none imports another.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dineuro import cli

DINEURO = Path(sys.executable).parent / "dineuro"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Small synthetic sets: seconds for the first (navis loads), well under one after that.
SYNTH_ARGS = ("synth", "--preset", "small", "--n", "2", "--shape", "16,48,48")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def invoke(*args) -> Result:
    """Run ``dineuro ARGS`` through the console-script entry point, in this process.

    An exception escaping ``main`` is what the installed script would print as a traceback with
    exit code 1, so it is reported that way instead of failing the test at the call.
    """
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["dineuro", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = argv
    return Result(code, ANSI.sub("", out.getvalue()), ANSI.sub("", err.getvalue()))


def run_script(*args, env: dict | None = None) -> Result:
    """Run the installed ``dineuro`` script in a subprocess (what a shell does)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS")}
    environ.update(env or {})
    proc = subprocess.run([str(DINEURO), *map(str, args)], capture_output=True, text=True,
                          env=environ, timeout=60)
    return Result(proc.returncode, ANSI.sub("", proc.stdout), ANSI.sub("", proc.stderr))


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder (None) under ``root``, hidden ones included."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def assert_input_error(result: Result, path: Path, *fragments: str) -> None:
    """Exit 2 and exactly one line on stderr: ``error: PATH: ...`` with the given fragments."""
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("error: "), line
    assert str(path) in line, line
    for fragment in fragments:
        assert fragment in line, line
    assert line.rstrip().endswith("."), line


#: The tiny model on crops that fit the 16-slice test stacks.
TINY = ["size=tiny", "transfer=scratch", "crop=[16, 32, 32]", "model_options={patch: [8, 16, 16]}",
        "batch_size=2", "lr=1e-3", "warmup_steps=2", "tensorboard=false"]


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's weights now, on the CPU (where checkpoints load), to compare with
    its weights later."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    """Bit for bit: an exact resume must give exactly the uninterrupted run's weights."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class Stop(Exception):
    """Raised by a progress callback to interrupt a run, as Ctrl-C would."""


def capsules(shape, segments, radius: float) -> np.ndarray:
    """Voxels within ``radius`` (voxels) of any (z, y, x) segment."""
    points = np.stack(np.indices(shape, dtype=np.float64), axis=-1)
    mask = np.zeros(shape, dtype=bool)
    for a, b in segments:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        d = b - a
        t = np.clip((points - a) @ d / (d @ d), 0.0, 1.0)
        mask |= np.linalg.norm(points - a - t[..., None] * d, axis=-1) <= radius
    return mask


def load_benchmark(name: str):
    """The script ``benchmarks/NAME.py`` as a module, its sibling scripts importable while it
    loads (benchmarks import one another by name, as when run from that folder)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up while defined
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))
