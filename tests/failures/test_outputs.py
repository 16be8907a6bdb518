"""Outputs when the machine or the input fails: full disks, read-only folders, NaN voxels, bad
stacks in a batch, a batch killed and finished with ``--skip-existing``.

The contract: every failure is one line on stderr (``error: ...``) without a traceback, exit code
2 for bad input and 1 for the machine (an ``OSError``); nothing that looks complete is left
half-made (no output file of an unfinished set, no hidden ``.partial`` temporary), what existed
is left byte for byte, and a stopped batch is finished by running it again with
``--skip-existing``.

A full disk is simulated at the rename that ends every atomic write (:func:`fill_disk`): the
temporary is cut to half its size and the write fails with ``ENOSPC``, as ``write()`` reports
it (no file name). What a process sees is then what a disk filling up during the write leaves: a
truncated hidden temporary and an ``OSError`` from inside ``atomic_file``'s block. From that
write on, the disk stays full.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from helpers import SYNTH_ARGS, Result, assert_input_error, invoke, snapshot

from dineuro.errors import InputError, environment_failure
from dineuro.io import probe_volume, read_volume, write_volume
from dineuro.io.atomic import atomic_file, check_writable, made_folder, undo_on_failure

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Prediction is deterministic on one thread, so outputs of different runs are compared by bytes.
ONE_THREAD = ("--threads", "1")
NO_SPACE = "No space left on device; free some space or write elsewhere."
READ_ONLY = "Read-only file system; choose an output folder on a writable disk."
#: Training settings of a run of a few seconds (configs/train_tiny.yaml's network).
TRAIN = ["size=tiny", "transfer=scratch", "crop=[16, 32, 32]",
         "model_options={patch: [8, 16, 16]}", "batch_size=2", "steps=2", "val_every=2",
         "warmup_steps=1", "tensorboard=false", "threads=1", "device=cpu"]


# --- helpers ---------------------------------------------------------------------------------

def assert_one_line(result: Result, code: int, expected: str | None = None,
                    *fragments: str, after_work: bool = False) -> str:
    """Exit ``code``, no traceback, one line ``error: ...`` on stderr (equal to ``error:
    EXPECTED`` when given, else holding every fragment); returns the line.

    That line is all of stderr, unless ``after_work``: then it is the last line, after the
    progress of the work done before the failure.
    """
    assert result.code == code, result.err
    assert "Traceback" not in result.err, result.err
    lines = [line.strip() for line in result.err_lines]
    assert len(lines) == 1 or after_work, result.err
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], result.err
    line = lines[-1]
    if expected is not None:
        assert line == f"error: {expected}"
    for fragment in fragments:
        assert fragment in line, line
    return line


def flat(text: str) -> str:
    """``text`` with every run of whitespace one space: rich wraps long lines at 80 columns."""
    return " ".join(text.split())


def hidden(root: Path) -> list[str]:
    """Every hidden file or folder under ``root``: temporaries of atomic writes, write probes."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def stamps(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime in ns, inode) of every file under ``root``: a file rewritten, even with the same
    bytes (an atomic write renames a new inode into place), changes."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_ino)
            for p in sorted(root.rglob("*")) if p.is_file()}


def fill_disk(monkeypatch, fails: Callable[[Path], bool],
              error: Callable[[], BaseException] | None = None) -> list[str]:
    """Make the disk fill up at the first atomic write whose result ``fails(path)`` names.

    That write's hidden temporary is cut to half its size and ``error()`` (default: ``ENOSPC``
    without a file name, as ``write()`` raises it) is raised where its rename would have been;
    every later atomic write fails the same way. Returns the names of the files renamed into
    place before, in order.
    """
    real = os.replace
    renamed: list[str] = []
    full = []

    def replace(src, dst, *args, **kwargs):
        src, dst = Path(src), Path(dst)
        if src.name.startswith(".") and ".partial" in src.name and (full or fails(dst)):
            full.append(dst)
            if src.is_file():
                os.truncate(src, src.stat().st_size // 2)
            raise (error or (lambda: OSError(errno.ENOSPC, "No space left on device")))()
        real(src, dst, *args, **kwargs)
        renamed.append(dst.name)

    monkeypatch.setattr(os, "replace", replace)
    return renamed


def named(name: str) -> Callable[[Path], bool]:
    return lambda path: path.name == name


def never_called(monkeypatch, *targets: str) -> list[str]:
    """Replace each ``module.attribute`` by a function that records its call (the work that
    must not start); returns the record."""
    calls: list[str] = []
    for target in targets:
        def record(*args, _target=target, **kwargs):
            calls.append(_target)
            raise RuntimeError(f"{_target} ran")
        monkeypatch.setattr(target, record)
    return calls


#: The prediction itself and the model load: what predict and run must not start on bad input.
PREDICTION = ("dineuro.predict._views.sliding_window_predict", "dineuro.checkpoint.load_model")


def read_only(monkeypatch) -> None:
    """A read-only file system: no file can be created (root ignores chmod, so it is faked)."""
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


# --- shared data -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A synthetic dataset of 3 stacks of 16 x 48 x 48 (3, so that training has a val split)."""
    out = tmp_path_factory.mktemp("data") / "data"
    result = invoke(*SYNTH_ARGS[:-4], "--n", "3", "--shape", "16,48,48", "-o", out)
    assert result.code == 0, result.err
    return out


@pytest.fixture(scope="module")
def stacks(data, tmp_path_factory) -> Path:
    """A folder of two stacks, a.tif and b.tif."""
    folder = tmp_path_factory.mktemp("stacks") / "stacks"
    folder.mkdir()
    for name, source in (("a", "synth_000"), ("b", "synth_001")):
        shutil.copyfile(data / "images" / f"{source}.tif", folder / f"{name}.tif")
    return folder


@pytest.fixture(scope="module")
def reference(stacks, tmp_path_factory) -> dict[str, Path]:
    """Output folders of uninterrupted ``predict`` and ``run`` over the two stacks."""
    root = tmp_path_factory.mktemp("reference")
    folders = {"predict": root / "predict", "run": root / "run"}
    for verb, out in folders.items():
        result = invoke(verb, stacks, "-o", out, *ONE_THREAD)
        assert result.code == 0, result.err
    assert sorted(p.name for p in folders["run"].iterdir()) == [
        "a.swc", "a_mask.tif", "a_prob.tif", "b.swc", "b_mask.tif", "b_prob.tif"]
    return folders


def _files_of(folder: Path, stack: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.name.startswith(f"{stack}_") or p.name == f"{stack}.swc"}


# --- environment_failure: the sentence -------------------------------------------------------

@pytest.mark.parametrize(("error", "sentence"), [
    (OSError(errno.ENOSPC, "No space left on device", "/data/out/a_prob.tif"),
     "/data/out/a_prob.tif: No space left on device; free some space or write elsewhere."),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/out"),
     "/mnt/out: Read-only file system; choose an output folder on a writable disk."),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x.swc"),
     "/root/x.swc: Permission denied; choose a place you may write to (or read from)."),
    # numpy's tofile on a full disk: no errno, no file name
    (OSError("1000000 requested and 0 written"),
     "1000000 requested and 0 written; the disk is probably full: free some space or write "
     "elsewhere."),
    (OSError(errno.EIO, "Input/output error", "/data/a.tif"), "/data/a.tif: Input/output error."),
])
def test_environment_failure_sentences(error, sentence):
    assert environment_failure(error) == sentence


def test_a_short_write_inside_atomic_file_names_the_result(tmp_path):
    path = tmp_path / "a.v3draw"
    with pytest.raises(OSError) as caught, atomic_file(path) as tmp:
        tmp.write_bytes(b"half")
        raise OSError("840 requested and 420 written")
    assert environment_failure(caught.value) == (
        f"{path}: 840 requested and 420 written; the disk is probably full: free some space or "
        "write elsewhere.")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_names_the_result_not_the_temporary(tmp_path):
    path = tmp_path / "a.swc"
    (path / "occupied").mkdir(parents=True)  # a real rename fails onto a non-empty folder
    with pytest.raises(OSError) as caught, atomic_file(path) as tmp:
        tmp.write_text("# a tree\n")
    assert caught.value.filename == str(path)
    assert environment_failure(caught.value).startswith(f"{path}: ")
    assert snapshot(tmp_path) == {"a.swc": None, "a.swc/occupied": None}


# --- check_writable --------------------------------------------------------------------------

def test_check_writable_leaves_a_writable_folder_as_it_was(tmp_path):
    (tmp_path / "kept.txt").write_text("x")
    before = snapshot(tmp_path)
    check_writable(tmp_path)
    check_writable(tmp_path, needed=1)
    assert snapshot(tmp_path) == before


def test_check_writable_on_a_folder_still_to_make_creates_nothing(tmp_path):
    check_writable(tmp_path / "new" / "nested" / "out")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_compares_the_free_space_with_what_is_needed(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=2_000_000))
    check_writable(tmp_path / "out", needed=2_000_000)  # exactly enough
    with pytest.raises(OSError) as caught:
        check_writable(tmp_path / "out", needed=5_000_000)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "out")
    assert "5.0 MB" in caught.value.strerror and "2.0 MB free" in caught.value.strerror
    assert list(tmp_path.iterdir()) == []


def test_check_writable_refuses_a_file_where_the_folder_should_be(tmp_path):
    """Bad input (the user named a file), not a failure of the machine: exit 2 on the CLI."""
    (tmp_path / "taken").write_text("a file")
    for folder in (tmp_path / "taken", tmp_path / "taken" / "sub"):
        with pytest.raises(InputError) as caught:
            check_writable(folder)
        assert caught.value.path == str(tmp_path / "taken")
        assert "is a file" in str(caught.value)
    assert snapshot(tmp_path) == {"taken": b"a file"}


def test_check_writable_names_the_folder_asked_for_on_a_read_only_disk(tmp_path, monkeypatch):
    read_only(monkeypatch)
    with pytest.raises(OSError) as caught:
        check_writable(tmp_path / "new" / "out")
    assert (caught.value.errno, caught.value.filename) == (errno.EROFS, str(tmp_path / "new/out"))


# --- undo_on_failure and made_folder ---------------------------------------------------------

@pytest.mark.parametrize("interrupt", [ValueError, KeyboardInterrupt])
def test_undo_on_failure_removes_only_what_the_block_created_among_its_paths(tmp_path,
                                                                             interrupt):
    old, new, other = tmp_path / "old.tif", tmp_path / "new.tif", tmp_path / "other.txt"
    never = tmp_path / "never.tif"
    old.write_bytes(b"from before")
    with pytest.raises(interrupt), undo_on_failure(old, new, never):
        new.write_bytes(b"half of a set")
        old.write_bytes(b"changed")  # what existed before is never removed, even if changed
        other.write_text("not one of the paths")
        raise interrupt()
    assert snapshot(tmp_path) == {"old.tif": b"changed", "other.txt": b"not one of the paths"}


def test_undo_on_failure_keeps_everything_when_the_block_succeeds(tmp_path):
    with undo_on_failure(tmp_path / "a", tmp_path / "b"):
        (tmp_path / "a").write_text("a")
        (tmp_path / "b").write_text("b")
    assert snapshot(tmp_path) == {"a": b"a", "b": b"b"}


@pytest.mark.parametrize("interrupt", [OSError, KeyboardInterrupt])
def test_made_folder_removes_the_folders_it_made_if_left_empty(tmp_path, interrupt):
    (tmp_path / "there").mkdir()
    with pytest.raises(interrupt), made_folder(tmp_path / "there" / "new" / "out") as folder:
        assert folder.is_dir()
        raise interrupt()
    assert snapshot(tmp_path) == {"there": None}  # the folder that was there stays


def test_made_folder_keeps_a_folder_that_holds_something(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(OSError), made_folder(out):
        (tmp_path / "new" / "note.txt").write_text("made by someone else meanwhile")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert snapshot(tmp_path) == {"new": None, "new/note.txt": b"made by someone else meanwhile"}
    with pytest.raises(ValueError), made_folder(out):
        (out / "a_prob.tif").write_bytes(b"complete")
        raise ValueError
    assert (out / "a_prob.tif").read_bytes() == b"complete"


def test_made_folder_never_removes_a_folder_that_existed(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(OSError), made_folder(tmp_path / "out"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert snapshot(tmp_path) == {"out": None}


# --- a full disk part-way through predict and run ---------------------------------------------

def test_predict_on_a_disk_that_fills_at_the_second_mask(stacks, reference, tmp_path,
                                                         monkeypatch):
    out = tmp_path / "out"
    renamed = fill_disk(monkeypatch, named("b_mask.tif"))
    result = invoke("predict", stacks, "-o", out, *ONE_THREAD)
    assert_one_line(result, 1, f"{out / 'b_mask.tif'}: {NO_SPACE}", after_work=True)
    assert renamed == ["a_prob.tif", "a_mask.tif", "b_prob.tif"]  # b's map was in place
    assert snapshot(out) == _files_of(reference["predict"], "a")  # and is gone again
    monkeypatch.undo()

    before = stamps(out)
    again = invoke("predict", stacks, "-o", out, "--skip-existing", *ONE_THREAD)
    assert again.code == 0, again.err
    assert "(1 stack(s) skipped: their outputs exist)" in flat(again.err)
    assert snapshot(out) == snapshot(reference["predict"])
    assert {name: stamp for name, stamp in stamps(out).items() if name.startswith("a_")} == before


def test_predict_on_a_full_disk_removes_the_output_folder_it_made(stacks, tmp_path,
                                                                  monkeypatch):
    out = tmp_path / "new" / "out"
    fill_disk(monkeypatch, named("a_prob.tif"))
    result = invoke("predict", stacks, "-o", out, *ONE_THREAD)
    assert_one_line(result, 1, f"{out / 'a_prob.tif'}: {NO_SPACE}", after_work=True)
    assert list(tmp_path.iterdir()) == []


def test_predict_on_a_full_disk_leaves_an_existing_folder_as_it_was(stacks, tmp_path,
                                                                    monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    fill_disk(monkeypatch, named("a_mask.tif"))
    result = invoke("predict", stacks, "-o", out, *ONE_THREAD)
    assert_one_line(result, 1, f"{out / 'a_mask.tif'}: {NO_SPACE}", after_work=True)
    assert snapshot(tmp_path) == {"out": None, "out/notes.txt": b"mine"}


def test_run_on_a_disk_that_fills_at_the_second_swc(stacks, reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    renamed = fill_disk(monkeypatch, named("b.swc"))
    result = invoke("run", stacks, "-o", out, *ONE_THREAD)
    assert_one_line(result, 1, f"{out / 'b.swc'}: {NO_SPACE}", after_work=True)
    assert renamed == ["a_prob.tif", "a_mask.tif", "a.swc", "b_prob.tif", "b_mask.tif"]
    assert snapshot(out) == _files_of(reference["run"], "a")  # all three of b are gone
    monkeypatch.undo()

    before = stamps(out)
    again = invoke("run", stacks, "-o", out, "--skip-existing", *ONE_THREAD)
    assert again.code == 0, again.err
    assert "(1 stack(s) skipped: their outputs exist)" in flat(again.err)
    assert snapshot(out) == snapshot(reference["run"])
    assert {name: stamp for name, stamp in stamps(out).items() if name.startswith("a")} == before


def test_ctrl_c_between_the_files_of_a_stack_undoes_the_stack(stacks, reference, tmp_path,
                                                             monkeypatch):
    out = tmp_path / "out"
    fill_disk(monkeypatch, named("b_mask.tif"), error=KeyboardInterrupt)
    result = invoke("run", stacks, "-o", out, *ONE_THREAD)
    assert result.code != 0 and "Traceback" not in result.err, result.err
    assert snapshot(out) == _files_of(reference["run"], "a")


# --- a full disk in the other verbs ----------------------------------------------------------

@pytest.mark.parametrize(("name", "error", "reason"), [
    ("b.tif", None, NO_SPACE),
    ("b.v3draw", lambda: OSError("840 requested and 420 written"),
     "840 requested and 420 written; the disk is probably full: free some space or write "
     "elsewhere."),
])
def test_convert_on_a_full_disk(tmp_path, monkeypatch, name, error, reason):
    src = write_volume(tmp_path / "a.tif", np.arange(120, dtype=np.uint16).reshape(2, 6, 10))
    before = snapshot(tmp_path)
    fill_disk(monkeypatch, named(name), error)
    result = invoke("convert", src, tmp_path / name)
    assert_one_line(result, 1, f"{tmp_path / name}: {reason}")
    assert snapshot(tmp_path) == before


def test_trace_on_a_full_disk(reference, tmp_path, monkeypatch):
    prob = reference["predict"] / "a_prob.tif"
    out = tmp_path / "a.swc"
    fill_disk(monkeypatch, named("a.swc"))
    result = invoke("trace", prob, "-o", out)
    assert_one_line(result, 1, f"{out}: {NO_SPACE}")
    assert list(tmp_path.iterdir()) == []


def test_show_on_a_full_disk(stacks, tmp_path, monkeypatch):
    out = tmp_path / "a.png"
    fill_disk(monkeypatch, named("a.png"))
    result = invoke("show", stacks / "a.tif", "-o", out)
    assert_one_line(result, 1, f"{out}: {NO_SPACE}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("full_at", ["metrics.csv", "metrics.md"])
def test_evaluate_on_a_full_disk_writes_no_table(reference, data, tmp_path, monkeypatch,
                                                 full_at):
    pred = tmp_path / "pred"
    shutil.copytree(reference["run"], pred)
    shutil.copyfile(data / "labels" / "synth_000.tif", tmp_path / "a.tif")
    shutil.copyfile(data / "labels" / "synth_001.tif", tmp_path / "b.tif")
    before = snapshot(tmp_path)
    fill_disk(monkeypatch, named(full_at))
    result = invoke("evaluate", pred, tmp_path)
    assert_one_line(result, 1, f"{pred / full_at}: {NO_SPACE}", after_work=True)
    assert snapshot(tmp_path) == before  # no metrics.csv without its metrics.md


def test_synth_on_a_full_disk_leaves_no_folder(tmp_path, monkeypatch):
    out = tmp_path / "data"
    fill_disk(monkeypatch, lambda path: path.name == "synth_001.tif" and path.parent.name ==
              "labels")
    result = invoke(*SYNTH_ARGS, "-o", out)
    line = assert_one_line(result, 1, None, NO_SPACE, after_work=True)
    assert list(tmp_path.iterdir()) == []
    # It names the dataset (or a file of it), not the hidden folder that is gone.
    assert line.startswith(f"error: {out}") and ".partial" not in line, line


def _train(data: Path, out: Path) -> Result:
    settings = [f"data={data}", f"out={out}", *TRAIN]
    return invoke("train", *[arg for item in settings for arg in ("--set", item)])


@pytest.mark.parametrize("full_at", ["config.yaml", "best.pt", "last.pt"])
def test_train_on_a_full_disk(data, tmp_path, monkeypatch, full_at):
    out = tmp_path / "run"
    fill_disk(monkeypatch, named(full_at))
    line = assert_one_line(_train(data, out), 1, None, NO_SPACE, after_work=True)
    assert f"{out / full_at}: " in line, line
    assert hidden(tmp_path) == []


def test_train_on_a_disk_that_fills_while_appending_to_metrics(data, tmp_path, monkeypatch):
    real_open, appends = Path.open, []

    class FillingFile:
        """A file on a disk that fills up: half of the first write lands, then ENOSPC."""

        def __init__(self, file):
            self.file = file

        def write(self, text):
            self.file.write(text[:len(text) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")  # write() names no file

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def open_(path, mode="r", *args, **kwargs):
        file = real_open(path, mode, *args, **kwargs)
        if path.name == "metrics.csv" and "a" in mode:
            appends.append(path)
            if len(appends) == 2:  # the row of step 2
                return FillingFile(file)
        return file

    monkeypatch.setattr(Path, "open", open_)
    out = tmp_path / "run"
    line = assert_one_line(_train(data, out), 1, None, NO_SPACE, after_work=True)
    assert len(appends) == 2
    assert f"{out / 'metrics.csv'}: " in line, line
    assert hidden(tmp_path) == []


def test_train_when_torch_save_meets_a_full_disk(data, tmp_path, monkeypatch):
    """torch.save, writing to a file on a full disk, raises a RuntimeError about stream
    positions (seen with torch 2.x on a full tmpfs), not an OSError: that too is one line."""
    real = torch.save
    writes = []

    def save(obj, f, *args, **kwargs):
        target = f if isinstance(f, str | os.PathLike) else getattr(f, "name", None)
        if not isinstance(target, str | os.PathLike) or not Path(target).name.startswith(
                ".last."):
            return real(obj, f, *args, **kwargs)  # in memory, or another file
        buffer = io.BytesIO()
        real(obj, buffer, *args, **kwargs)
        if f is target:
            Path(f).write_bytes(buffer.getvalue()[:1000])
        else:
            f.write(buffer.getvalue()[:1000])
        writes.append(target)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "run"
    result = _train(data, out)
    if writes:  # torch.save wrote last.pt to disk itself, and met the full disk
        line = assert_one_line(result, 1, None, after_work=True)
        assert f"{out / 'last.pt'}: " in line, line
    else:  # it only serialised in memory, and Python wrote the file (see fill_disk's cases)
        assert result.code == 0, result.err
        assert (out / "last.pt").is_file()
    assert hidden(tmp_path) == []


# --- a read-only output folder: refused before any work --------------------------------------

def _verb_case(verb: str, root: Path, data: Path, stacks: Path, reference: dict):
    """(arguments, the folder that must be named, the work that must not start) of ``verb``."""
    out = root / "out"
    prob = reference["predict"] / "a_prob.tif"
    train = [f"data={data}", f"out={out}", *TRAIN]
    return {
        "predict": ((stacks, "-o", out), out, PREDICTION),
        "run": ((stacks, "-o", out), out, PREDICTION),
        "convert": ((stacks / "a.tif", out / "a.nii.gz"), out, ("dineuro.io.volume.read_volume",)),
        "show": ((stacks / "a.tif", "-o", out / "a.png"), out, ("dineuro.io.volume.read_volume",)),
        "trace": ((prob, "-o", out / "a.swc"), out, ("dineuro.trace.trace_file",)),
        "evaluate": ((reference["predict"], data, "-o", out), out,
                     ("dineuro.evaluate.evaluate_folder",)),
        "synth": ((*SYNTH_ARGS[1:], "-o", out / "data"), out,
                  ("dineuro.data.synth.write_synthetic_dataset",)),
        "train": ([arg for item in train for arg in ("--set", item)], out,
                  ("dineuro.train.train",)),
        "adapt": ((stacks, "-o", out / "adapted.pt", "--synthetic", data), out,
                  ("dineuro.adapt.adapt",)),
    }[verb]


@pytest.mark.parametrize("verb", ["predict", "run", "convert", "show", "trace", "evaluate",
                                  "synth", "train", "adapt"])
def test_a_read_only_output_folder_is_refused_before_the_work(verb, data, stacks, reference,
                                                              tmp_path, monkeypatch):
    args, folder, work = _verb_case(verb, tmp_path, data, stacks, reference)
    before = snapshot(tmp_path), snapshot(reference["predict"])
    calls = never_called(monkeypatch, *work)
    read_only(monkeypatch)
    result = invoke(verb, *args)
    assert_one_line(result, 1, f"{folder}: {READ_ONLY}")
    assert calls == []
    assert (snapshot(tmp_path), snapshot(reference["predict"])) == before


def test_predict_needs_room_for_a_map_and_a_mask_per_voxel(stacks, tmp_path, monkeypatch):
    """The space asked for is every voxel x (bytes of the map's dtype + 1 of the mask)."""
    voxels = sum(read_volume(stacks / name).array.size for name in ("a.tif", "b.tif"))
    usage = shutil.disk_usage(tmp_path)
    out = tmp_path / "out"
    for prob_dtype, free, fits in (("float32", 5 * voxels - 1, False),
                                   ("uint8", 2 * voxels - 1, False),
                                   ("uint8", 2 * voxels, True)):
        monkeypatch.setattr(shutil, "disk_usage", lambda path, free=free: usage._replace(
            free=free))
        result = invoke("predict", stacks, "-o", out, "--prob-dtype", prob_dtype, *ONE_THREAD)
        if fits:
            assert result.code == 0, result.err
        else:
            assert_one_line(result, 1, None, f"{out}: No space left", "free some space")
            assert not out.exists()
    assert len(list(out.iterdir())) == 4


# --- NaN and infinite voxels -----------------------------------------------------------------

def _non_finite(path: Path, dtype=np.float32, shape=(16, 48, 48), seed=0) -> np.ndarray:
    """A float stack with a few NaN, +inf and -inf voxels at random places, written to
    ``path``."""
    rng = np.random.default_rng(seed)
    array = rng.random(shape).astype(dtype) * 100
    flat = array.reshape(-1)
    places = rng.choice(flat.size, size=7, replace=False)
    flat[places[:3]] = np.nan
    flat[places[3:5]] = np.inf
    flat[places[5:]] = -np.inf
    write_volume(path, array)
    return array


def _count_and_first(array: np.ndarray) -> tuple[int, tuple[int, ...]]:
    bad = np.isnan(array) | np.isinf(array)
    return int(np.count_nonzero(bad)), tuple(int(i) for i in np.argwhere(bad)[0])


def _assert_refused_as_non_finite(result: Result, path: Path, array: np.ndarray) -> None:
    count, first = _count_and_first(array)
    assert_one_line(result, 2, _non_finite_sentence(path, count, first), after_work=True)


def _non_finite_sentence(path: Path, count: int, first: tuple[int, ...]) -> str:
    return (f"{path}: holds {count} NaN or infinite voxel(s) (or beyond float32's range), the "
            f"first at (z, y, x) = {first}; replace them (with 0, say) before using the stack.")


@pytest.mark.parametrize("name", ["nan.tif", "nan.nii.gz"])
@pytest.mark.parametrize("verb", ["predict", "run"])
def test_predict_and_run_refuse_a_stack_with_nan(verb, name, tmp_path, monkeypatch):
    path = tmp_path / name
    array = _non_finite(path, np.float32 if name.endswith(".tif") else np.float64)
    before = snapshot(tmp_path)
    calls = never_called(monkeypatch, "dineuro.predict._views.sliding_window_predict")
    result = invoke(verb, path, "-o", tmp_path / "out", *ONE_THREAD)
    _assert_refused_as_non_finite(result, path, array)
    assert calls == []
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("which", ["prob", "image"])
def test_trace_refuses_a_map_or_image_with_nan(which, reference, tmp_path):
    prob = reference["predict"] / "a_prob.tif"
    bad = tmp_path / "bad.tif"
    array = _non_finite(bad, shape=read_volume(prob).array.shape)
    args = (bad, "--image", prob) if which == "prob" else (prob, "--image", bad)
    result = invoke("trace", *args, "-o", tmp_path / "a.swc")
    _assert_refused_as_non_finite(result, bad, array)
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tif"]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.uint32, np.int64])
def test_an_integer_stack_is_never_refused_as_non_finite(tmp_path, dtype):
    info = np.iinfo(dtype)
    array = np.full((2, 3, 4), info.max, dtype)
    array[0, 0, 0] = info.min
    path = write_volume(tmp_path / "a.nii.gz", array)
    np.testing.assert_array_equal(read_volume(path).array, array)


@pytest.mark.parametrize("verb", ["predict", "trace --image"])
def test_float64_values_beyond_float32_are_refused(verb, reference, tmp_path):
    array = np.ones((16, 48, 48), np.float64)
    array[3, 4, 5] = 1e300  # finite, but inf as float32, in which every stage computes
    path = write_volume(tmp_path / "huge.nii.gz", array)
    before = snapshot(tmp_path)
    if verb == "predict":
        result = invoke("predict", path, "-o", tmp_path / "out", *ONE_THREAD)
    else:
        result = invoke("trace", reference["predict"] / "a_prob.tif", "--image", path, "-o",
                        tmp_path / "a.swc")
    assert_one_line(result, 2, _non_finite_sentence(path, 1, (3, 4, 5)), after_work=True)
    assert snapshot(tmp_path) == before


def _zarr_with_nan(path: Path, at: tuple[int, int, int]) -> np.ndarray:
    import zarr

    array = np.random.default_rng(1).random((16, 48, 48)).astype(np.float32)
    array[at] = np.nan
    source = zarr.create_array(str(path), shape=array.shape, dtype=array.dtype,
                               chunks=(8, 24, 24))
    source[:] = array
    return array


@pytest.mark.parametrize(("sampled", "all_windows"), [
    (True, False),   # the percentile subsample holds the NaN
    (False, False),  # only the pass looking for signal meets it
    (False, True),   # only the block that holds it does
])
def test_predict_blocks_refuses_a_zarr_with_nan(tmp_path, monkeypatch, sampled, all_windows):
    from dineuro.data import normalize

    at = (3, 5, 5)
    if not sampled:
        # Percentiles from at most 1000 voxels: every slice, every 7th row and column.
        monkeypatch.setattr(normalize, "MAX_PERCENTILE_SAMPLES", 1000)
        assert normalize.subsample_strides((16, 48, 48)) == (1, 7, 7)
    src = tmp_path / "nan.zarr"
    array = _zarr_with_nan(src, at)
    limits = np.percentile(array[::1, ::7, ::7] if not sampled else array, [1.0, 99.9])
    assert np.isfinite(limits).all() != sampled  # where the NaN is found is as intended
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    result = invoke("predict", src, "-o", out, "--blocks", "--block", "8,24,24", *ONE_THREAD,
                    *(["--all-windows"] if all_windows else []))
    assert_one_line(result, 2, f"{src}: the stack holds NaN or infinite values; they cannot be "
                               "normalised.", after_work=True)
    assert snapshot(tmp_path) == before


# --- a batch: every stack checked before the first is predicted ------------------------------

def _corrupt(path: Path) -> None:
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 4)


def _flat(path: Path) -> None:
    tifffile.imwrite(path, np.arange(48 * 48, dtype=np.uint16).reshape(48, 48))


def _two_channels(path: Path) -> None:
    tifffile.imwrite(path, np.zeros((16, 2, 48, 48), np.uint16), imagej=True,
                     metadata={"axes": "ZCYX"})


@pytest.mark.parametrize("make_bad", [_corrupt, _flat, _two_channels])
@pytest.mark.parametrize("verb", ["predict", "run"])
def test_a_bad_stack_last_in_a_batch_stops_it_before_the_first(verb, make_bad, stacks,
                                                               tmp_path, monkeypatch):
    folder = tmp_path / "stacks"
    shutil.copytree(stacks, folder)
    bad = folder / "zz_bad.tif"
    make_bad(bad)
    before = snapshot(tmp_path)
    calls = never_called(monkeypatch, *PREDICTION)
    result = invoke(verb, folder, "-o", tmp_path / "out", *ONE_THREAD)
    assert_input_error(result, bad)
    assert calls == []
    assert snapshot(tmp_path) == before


def _v3draw(path: Path, channels: np.ndarray, big_endian: bool) -> None:
    """A v3draw file of (c, z, y, x) uint16 voxels, written by hand."""
    order = ">" if big_endian else "<"
    c, z, y, x = channels.shape
    path.write_bytes(b"raw_image_stack_by_hpeng" + (b"B" if big_endian else b"L")
                     + np.array(2, order + "i2").tobytes()
                     + np.array([x, y, z, c], order + "u4").tobytes()
                     + channels.astype(order + "u2").tobytes())


def _probe_cases(tmp: Path) -> list[tuple[Path, int | None, np.ndarray]]:
    """(path, channel, the (z, y, x) voxels expected) in every format read."""
    import nibabel as nib

    data = np.random.default_rng(2).integers(0, 4000, (2, 5, 6, 7)).astype(np.uint16)
    cases = []
    cases.append((write_volume(tmp / "a.tif", data[0], spacing=(2.0, 0.5, 0.25)), None, data[0]))
    cases.append((write_volume(tmp / "a.nii.gz", data[0].astype(np.float32),
                               spacing=(3.0, 0.75, 0.5)), None, data[0]))
    cases.append((write_volume(tmp / "a.v3draw", data[0]), None, data[0]))
    for big_endian in (False, True):
        path = tmp / f"two_{'big' if big_endian else 'little'}.v3draw"
        _v3draw(path, data, big_endian)
        cases.append((path, 1, data[1]))
    tifffile.imwrite(tmp / "two.tif", data.transpose(1, 0, 2, 3), imagej=True,
                     metadata={"axes": "ZCYX", "spacing": 2.5, "unit": "um"},
                     resolution=(4.0, 4.0))
    cases.append((tmp / "two.tif", 1, data[1]))
    image = nib.Nifti1Image(data.transpose(3, 2, 1, 0)[:, :, :, None, :], np.eye(4))
    image.header.set_zooms((0.5, 0.5, 2.0, 1.0, 1.0))
    nib.save(image, tmp / "two.nii.gz")
    cases.append((tmp / "two.nii.gz", 0, data[0]))
    (tmp / "slices").mkdir()
    for index, plane in enumerate(data[1]):
        tifffile.imwrite(tmp / "slices" / f"{index + 1}.tif", plane, imagej=True,
                         resolution=(2.0, 2.0), metadata={"unit": "um"})
    cases.append((tmp / "slices", None, data[1]))
    return cases


def test_probe_volume_agrees_with_read_volume(tmp_path):
    for path, channel, expected in _probe_cases(tmp_path):
        volume = read_volume(path, channel)
        header = probe_volume(path, channel)
        np.testing.assert_array_equal(volume.array, expected, err_msg=str(path))
        assert header.shape == volume.array.shape == expected.shape, path
        assert header.dtype == volume.array.dtype, path
        assert header.dtype.isnative, path
        assert header.spacing == volume.spacing, path


# --- --skip-existing ---------------------------------------------------------------------------

@pytest.mark.parametrize("verb", ["predict", "run"])
def test_existing_outputs_are_refused_with_a_hint(verb, stacks, reference, tmp_path,
                                                  monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(reference[verb], out)
    before = snapshot(out), stamps(out)
    calls = never_called(monkeypatch, *PREDICTION)
    result = invoke(verb, stacks, "-o", out)
    assert_input_error(result, out / "a_prob.tif", "already exists", "--skip-existing")
    assert calls == []
    assert (snapshot(out), stamps(out)) == before


@pytest.mark.parametrize("verb", ["predict", "run"])
def test_skip_existing_with_every_output_there_does_nothing(verb, stacks, reference,
                                                            tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(reference[verb], out)
    before = snapshot(out), stamps(out)
    calls = never_called(monkeypatch, "dineuro.predict._views.sliding_window_predict")
    result = invoke(verb, stacks, "-o", out, "--skip-existing")
    assert result.code == 0, result.err
    assert "of 0 stack(s)" in flat(result.err)
    assert "(2 stack(s) skipped: their outputs exist)" in flat(result.err)
    assert calls == []
    assert (snapshot(out), stamps(out)) == before


@pytest.mark.parametrize(("verb", "removed", "missing"), [
    ("predict", "b_mask.tif", "b_mask.tif"),
    ("run", "b_mask.tif", "b_mask.tif"),
    ("run", "b.swc", "b.swc"),
])
def test_skip_existing_refuses_a_stack_with_only_some_outputs(verb, removed, missing, stacks,
                                                              reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(reference[verb], out)
    (out / removed).unlink()
    before = snapshot(out), stamps(out)
    calls = never_called(monkeypatch, *PREDICTION)
    result = invoke(verb, stacks, "-o", out, "--skip-existing")
    assert_input_error(result, out / "b_prob.tif", f"exists but {missing} of the same stack")
    assert calls == []
    assert (snapshot(out), stamps(out)) == before


def test_an_untraceable_map_gets_an_swc_that_says_why(stacks, tmp_path, monkeypatch):
    import dineuro.trace

    trace_volume = dineuro.trace.trace_volume

    def refuse_b(prob, *, source, **options):
        if Path(source).name == "b_prob.tif":
            raise InputError("is mostly foreground.", source)
        return trace_volume(prob, source=source, **options)

    monkeypatch.setattr(dineuro.trace, "trace_volume", refuse_b)
    out = tmp_path / "out"
    result = invoke("run", stacks, "-o", out, *ONE_THREAD)
    assert result.code == 0, result.err
    assert "; not traced: b.tif" in flat(result.err) and "warning: b.tif: " in result.err
    lines = (out / "b.swc").read_text().splitlines()
    assert lines[0] == f"# not traced from b_prob.tif: {out / 'b_prob.tif'}: is mostly foreground."
    assert all(line.startswith("#") for line in lines)
    monkeypatch.undo()
    again = invoke("run", stacks, "-o", out, "--skip-existing")
    assert again.code == 0, again.err
    assert "(2 stack(s) skipped: their outputs exist)" in flat(again.err)


#: Runs ``dineuro ARGS`` (argv[3:]) and SIGKILLs itself at the atomic write of the file named
#: argv[2]: ``after``: once it is renamed into place; ``during``: with its temporary half
#: written, before the rename.
KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path

    from dineuro import cli

    when, name, sys.argv = sys.argv[1], sys.argv[2], ["dineuro", *sys.argv[3:]]
    rename = os.replace

    def rename_around_death(src, dst):
        if Path(dst).name == name and when == "during":
            os.truncate(src, os.path.getsize(src) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        rename(src, dst)
        if Path(dst).name == name and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = rename_around_death
    cli.main()
    sys.exit("was not killed")
""")


def _kill(tmp: Path, when: str, name: str, *args) -> None:
    script = tmp / "killer.py"
    script.write_text(KILLER)
    done = subprocess.run([sys.executable, str(script), when, name, *map(str, args)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def test_a_batch_killed_after_a_stack_is_finished_by_skip_existing(stacks, reference,
                                                                   tmp_path):
    out = tmp_path / "out"
    _kill(tmp_path, "after", "a_mask.tif", "predict", stacks, "-o", out, *ONE_THREAD)
    assert snapshot(out) == _files_of(reference["predict"], "a")
    before = stamps(out)
    result = invoke("predict", stacks, "-o", out, "--skip-existing", *ONE_THREAD)
    assert result.code == 0, result.err
    assert "(1 stack(s) skipped: their outputs exist)" in flat(result.err)
    assert snapshot(out) == snapshot(reference["predict"])
    assert {name: stamp for name, stamp in stamps(out).items() if name.startswith("a_")} == before


@pytest.fixture(scope="module")
def killed_inside_a_stack(stacks, tmp_path_factory) -> Path:
    """The output folder of ``run`` killed while b_mask.tif was half written: a's three files,
    b_prob.tif, and b_mask.tif's hidden temporary."""
    root = tmp_path_factory.mktemp("killed")
    out = root / "out"
    _kill(root, "during", "b_mask.tif", "run", stacks, "-o", out, *ONE_THREAD)
    names = list(snapshot(out))
    assert [name for name in names if not name.startswith(".")] == [
        "a.swc", "a_mask.tif", "a_prob.tif", "b_prob.tif"]
    assert len(hidden(out)) == 1 and hidden(out)[0].startswith(".b_mask."), names
    return out


def test_a_batch_killed_inside_a_stack_says_what_to_remove(killed_inside_a_stack, stacks,
                                                          reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(killed_inside_a_stack, out)
    before = snapshot(out)
    result = invoke("run", stacks, "-o", out, "--skip-existing", *ONE_THREAD)
    assert_input_error(result, out / "b_prob.tif", "exists but b_mask.tif, b.swc of the same "
                                                   "stack does not", "remove it")
    assert snapshot(out) == before
    (out / "b_prob.tif").unlink()  # as the message says
    result = invoke("run", stacks, "-o", out, "--skip-existing", *ONE_THREAD)
    assert result.code == 0, result.err
    assert {name: data for name, data in snapshot(out).items()
            if not name.startswith(".")} == snapshot(reference["run"])


def test_a_restart_clears_the_temporaries_of_a_killed_write(killed_inside_a_stack, stacks,
                                                           tmp_path):
    out = tmp_path / "out"
    shutil.copytree(killed_inside_a_stack, out)
    (out / "b_prob.tif").unlink()
    result = invoke("run", stacks, "-o", out, "--skip-existing", *ONE_THREAD)
    assert result.code == 0, result.err
    assert hidden(out) == []


# --- --device --------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["gpu", "cuda"])
@pytest.mark.parametrize("verb", ["predict", "run"])
def test_a_device_that_is_not_there_is_refused(verb, device, stacks, tmp_path):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = invoke(verb, stacks / "a.tif", "-o", tmp_path / "out", "--device", device)
    expected = ("not a device name" if device == "gpu" else "CUDA is not available")
    line = assert_one_line(result, 2, None, f"'{device}'", expected)
    assert line.endswith(".")
    assert list(tmp_path.iterdir()) == []
