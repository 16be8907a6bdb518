"""``dineuro train`` killed at its worst moments (``kill -9``), then run again.

A subprocess trains with one function patched to SIGKILL its own process at a chosen moment;
the run folder it leaves is handed to ``dineuro train`` (or ``--resume``) in this process.
Whatever the moment, that command must finish the run with exit code 0, leave no hidden
``.partial`` file, and end with the metrics.csv (seconds aside) and the weights of a run that was
never interrupted; a fresh ``train`` on a folder holding last.pt is refused and changes nothing.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import TINY, assert_input_error, invoke, snapshot

from dineuro.checkpoint import load_checkpoint
from dineuro.io.atomic import atomic_file, partial_files
from dineuro.train import load_config, loop, train
from dineuro.train.run_folder import BEST, CONFIG_FILE, LAST, METRICS_FILE, TENSORBOARD_DIR

STEPS, VAL_EVERY = 4, 2
#: One thread everywhere: trained weights depend on the thread count.
SETTINGS = [*TINY, f"steps={STEPS}", f"val_every={VAL_EVERY}", "threads=1"]

#: Trains with the settings in argv[3:] and SIGKILLs itself at the moment argv[1:3] names:
#: ``row STEP`` just after metrics.csv got STEP's row; ``before NAME`` / ``after NAME`` just
#: before / after the first rename of a temporary file onto NAME (atomic_file's last act).
KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path

    from dineuro.train import load_config, loop, train

    when, what, settings = sys.argv[1], sys.argv[2], sys.argv[3:]
    append, rename = loop.append_metrics, os.replace

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def append_then_die(path, step, *rest):
        append(path, step, *rest)
        if when == "row" and step == int(what):
            die()

    def rename_around_death(src, dst):
        if when == "before" and Path(dst).name == what:
            die()
        rename(src, dst)
        if when == "after" and Path(dst).name == what:
            die()

    loop.append_metrics, os.replace = append_then_die, rename_around_death
    train(load_config(None, settings))
    sys.exit("was not killed")
""")


def _settings(data: Path, out: Path) -> list[str]:
    return [f"data={data}", f"out={out}", *SETTINGS]


def _cli_settings(data: Path, out: Path) -> list[str]:
    return [arg for item in _settings(data, out) for arg in ("--set", item)]


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / METRICS_FILE).open(newline="") as f:
        return list(csv.DictReader(f))


def _hidden(out: Path) -> list[str]:
    """Names of hidden files in ``out``: atomic writes' temporaries, listed without their
    pattern (:func:`partial_files` is what is under test)."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def reference(tiny_training_set, tmp_path_factory) -> Path:
    """The run folder of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train(load_config(None, _settings(tiny_training_set, out)))
    return out


def _kill(data: Path, out: Path, when: str, what: str) -> Path:
    script = out.parent / "killer.py"
    script.write_text(KILLER)
    done = subprocess.run(
        [sys.executable, str(script), when, what, *_settings(data, out)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    return out


def _assert_finished_like(reference: Path, out: Path) -> None:
    """``out`` holds what the uninterrupted run wrote: the same rows (seconds aside), the same
    best.pt and last.pt weights, no temporary file; and last.pt's seconds are its row's."""
    rows, expected = _rows(out), _rows(reference)
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    assert [r["val_dice"] != "" for r in rows] == [
        step % VAL_EVERY == 0 for step in range(1, STEPS + 1)]
    columns = ("step", "lr", "loss", "val_dice")
    assert [[r[c] for c in columns] for r in rows] == [[r[c] for c in columns] for r in expected]
    seconds = [float(r["seconds"]) for r in rows]
    assert seconds == sorted(seconds)
    for name in (BEST, LAST):
        got, want = load_checkpoint(out / name), load_checkpoint(reference / name)
        assert (got["step"], got["val_dice"]) == (want["step"], want["val_dice"])
        assert got["state_dict"].keys() == want["state_dict"].keys()
        for key, value in want["state_dict"].items():
            assert torch.equal(got["state_dict"][key], value), (name, key)
    last = load_checkpoint(out / LAST)
    assert f"{last['resume']['seconds']:.2f}" == rows[-1]["seconds"]
    assert _hidden(out) == []
    assert not (out / TENSORBOARD_DIR).exists()


# -- the temporary files -----------------------------------------------------------------------
def test_partial_files_are_the_temporaries_atomic_file_leaves(tmp_path):
    target = tmp_path / "last.pt"
    assert partial_files(tmp_path / "missing" / "last.pt") == []
    others = [".last.x.abc123.partial.pt", ".best.abc123.partial.pt", ".last.abc123.partial.csv",
              "last.abc123.partial.pt"]  # last.x.pt's, best.pt's, last.csv's, not hidden
    for name in others:
        (tmp_path / name).touch()
    with atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        assert partial_files(target) == [tmp]
        assert tmp.name.startswith(".last.") and tmp.name.endswith(".partial.pt")
    assert target.read_bytes() == b"half"
    assert partial_files(target) == []
    assert _hidden(tmp_path) == sorted(n for n in others if n.startswith("."))


# -- killed before the first last.pt: started again from step 0 --------------------------------
@pytest.mark.parametrize("when, what, rows_left, best_left, resume", [
    ("row", "1", 1, False, False),  # metrics.csv has a row, nothing else does
    ("before", LAST, VAL_EVERY, True, True),  # best.pt renamed, last.pt's temporary left
], ids=["after-first-row-then-train", "in-first-last-pt-then-resume"])
def test_run_killed_before_its_first_checkpoint_starts_again(
        tiny_training_set, reference, tmp_path, monkeypatch, when, what, rows_left, best_left,
        resume):
    out = _kill(tiny_training_set, tmp_path / "run", when, what)
    left = {p.name for p in out.iterdir()}
    assert LAST not in left and {CONFIG_FILE, METRICS_FILE} <= left
    assert [int(r["step"]) for r in _rows(out)] == list(range(1, rows_left + 1))
    assert (BEST in left) == best_left
    assert len([n for n in _hidden(out) if n.startswith(".last.")]) == int(best_left)
    (out / TENSORBOARD_DIR).mkdir()  # what tensorboard=true would have left as well
    (out / TENSORBOARD_DIR / "events.out.tfevents.1").write_bytes(b"stale")

    at_first_row = {}
    append = loop.append_metrics

    def append_and_look(path, step, *rest):
        append(path, step, *rest)
        if step == 1:
            at_first_row["names"] = sorted(p.name for p in out.iterdir())
            at_first_row["steps"] = [int(r["step"]) for r in _rows(out)]

    monkeypatch.setattr(loop, "append_metrics", append_and_look)
    result = invoke("train", *_cli_settings(tiny_training_set, out),
                    *(["--resume"] if resume else []))
    assert result.code == 0, result.err
    said = " ".join(result.err.split())  # the console wraps long lines
    assert said.count("warning:") == int(resume), said
    assert ("holds no last.pt yet: the run stopped before its first checkpoint, so it starts "
            "from step 0." in said) == resume, said
    assert f"trained {STEPS} steps" in said
    # The run began again in a clean folder: no stale rows, best.pt, tensorboard/ or temporary.
    assert at_first_row == {"names": [CONFIG_FILE, METRICS_FILE], "steps": [1]}
    _assert_finished_like(reference, out)


# -- killed around a later checkpoint: resumed exactly -----------------------------------------
@pytest.mark.parametrize("when, what, rows_left", [
    ("after", LAST, VAL_EVERY),  # the first last.pt renamed into place, nothing after
    ("row", str(STEPS), STEPS),  # a validation step's row written, its last.pt not
], ids=["after-first-last-pt", "after-validation-row"])
def test_run_killed_at_a_checkpoint_resumes_to_the_uninterrupted_end(
        tiny_training_set, reference, tmp_path, when, what, rows_left):
    out = _kill(tiny_training_set, tmp_path / "run", when, what)
    assert load_checkpoint(out / LAST)["step"] == VAL_EVERY
    rows = _rows(out)
    assert [int(r["step"]) for r in rows] == list(range(1, rows_left + 1))
    assert rows[VAL_EVERY - 1]["val_dice"] != ""  # the checkpoint's own row is never lost
    assert _hidden(out) == []

    before = snapshot(out)
    refused = invoke("train", *_cli_settings(tiny_training_set, out))
    assert_input_error(refused, out, "already holds a training run")
    assert snapshot(out) == before

    resumed = invoke("train", *_cli_settings(tiny_training_set, out), "--resume")
    assert resumed.code == 0, resumed.err
    assert "warning" not in resumed.err and f"trained {STEPS} steps" in resumed.err
    _assert_finished_like(reference, out)


# -- a folder that no run made: nothing in it is removed ----------------------------------------
@pytest.mark.parametrize("resume", [False, True], ids=["train", "resume"])
@pytest.mark.parametrize("stray", [BEST, METRICS_FILE])
def test_a_folder_not_made_by_a_run_is_left_alone(tiny_training_set, tmp_path, stray, resume):
    """A best.pt or metrics.csv without the config.yaml every run writes first belongs to
    someone else: restarting "from scratch" there would delete it."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / stray).write_bytes(b"the user's own file")
    before = snapshot(out)
    result = invoke("train", *_cli_settings(tiny_training_set, out),
                    *(["--resume"] if resume else []))
    assert_input_error(result, out, stray, "no config.yaml")
    assert snapshot(out) == before
