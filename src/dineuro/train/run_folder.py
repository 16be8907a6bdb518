"""The run folder ``OUT`` that :func:`dineuro.train.train` writes: its files and their writes.

- ``config.yaml``: the resolved :class:`~dineuro.train.TrainConfig`.
- ``metrics.csv``: one row per step: step, lr (of that step), loss (mean over processes),
  val_dice (empty between validations), seconds (wall time since the run began, across resumes).
- ``best.pt``, ``last.pt``: :mod:`dineuro.checkpoint` files.
- ``tensorboard/``: the same scalars, when ``torch.utils.tensorboard`` imports.
- ``.NAME.XXXX.partial.SUFFIX``: hidden temporary files of the atomic writes; only a killed
  process leaves one, and the next start removes it.

In what order the loop writes them, and why a killed run can always be resumed from what they
hold, is told in :mod:`dineuro.train.loop`.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from dineuro.io.atomic import atomic_file, naming, partial_files

#: The names above, as :mod:`dineuro.train.loop` writes and reads them.
CONFIG_FILE, METRICS_FILE = "config.yaml", "metrics.csv"
BEST, LAST = "best.pt", "last.pt"
TENSORBOARD_DIR = "tensorboard"
METRICS_COLUMNS = ("step", "lr", "loss", "val_dice", "seconds")


def append_metrics(path: Path, step: int, lr: float, loss: float, val_dice: float | None,
                   seconds: float) -> None:
    """Add one step's row to ``metrics.csv``, the header first in a new file."""
    new = not path.exists()
    with naming(path), path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(METRICS_COLUMNS)
        writer.writerow([step, f"{lr:.6g}", f"{loss:.6f}",
                         "" if val_dice is None else f"{val_dice:.6f}", f"{seconds:.2f}"])


def prepare_out(out: Path, step: int) -> None:
    """Ready the run folder ``out`` for a run that continues after ``step`` (0: from scratch).

    Removes the temporary files of writes a kill interrupted and the rows of ``metrics.csv``
    after ``step``; from scratch, also what a run killed before its first ``last.pt`` left.
    """
    out.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, METRICS_FILE, BEST, LAST):
        for leftover in partial_files(out / name):
            leftover.unlink()
    if step == 0:
        (out / METRICS_FILE).unlink(missing_ok=True)
        (out / BEST).unlink(missing_ok=True)
        shutil.rmtree(out / TENSORBOARD_DIR, ignore_errors=True)
    else:
        _truncate_metrics(out / METRICS_FILE, step)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows after ``step`` (written after the checkpoint a resumed run starts from)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    keep = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) <= step]
    if len(keep) == len(rows):
        return
    with atomic_file(path) as tmp, tmp.open("w", newline="") as f:
        csv.writer(f).writerows(keep)


def tensorboard_writer(out: Path):
    """A TensorBoard SummaryWriter on OUT/tensorboard, or None when TensorBoard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out / TENSORBOARD_DIR))
