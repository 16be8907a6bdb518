"""The run's folder ``WORK`` (``adapted.adapt/`` beside ``adapted.pt``): its files and writes.

- ``config.yaml``: the resolved :class:`~dineuro.adapt.AdaptConfig`.
- ``synthetic/``: the synthesised dataset mixed in (when ``synthetic`` is null).
- ``round_K/``: the pseudo-labels of round K, ``NAME_label.tif`` (uint8: 0 background,
  1 foreground, 2 ignored), the trace they came from ``NAME.swc`` (coordinates rounded to
  3 decimals, as every SWC dineuro writes), and ``labels.json`` (per
  stack: :class:`~dineuro.adapt.labels.LabelStats`; written last, so a round folder without
  it is relabelled on resume).
- ``metrics.csv``: round, step (within the round), lr, loss, seconds.
- ``rounds.json``: the guard rails before and after each round, with the hold-out split.
- ``state.pt``: weights, optimizer, scheduler and every random state, written every
  ``save_every`` steps and at the end of each round; ``resume=True`` continues from it exactly
  (the same weights as a run that was not interrupted), with the same settings but
  :data:`~dineuro.adapt.loop.RESUMABLE`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from dineuro.io.atomic import atomic_file, naming

#: The names above, as :mod:`dineuro.adapt.loop` writes and reads them.
CONFIG_FILE, METRICS_FILE, ROUNDS_FILE, STATE_FILE = ("config.yaml", "metrics.csv",
                                                      "rounds.json", "state.pt")
SYNTHETIC_DIR, LABELS_FILE = "synthetic", "labels.json"
METRICS_COLUMNS = ("round", "step", "lr", "loss", "seconds")


def atomic_text(path: Path, text: str) -> None:
    """Write ``text`` under a temporary name and rename it: never a half-written file."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def append_metrics(path: Path, round_: int, step: int, lr: float, loss: float,
                   seconds: float) -> None:
    """Add one training step's row to ``metrics.csv``, the header first in a new file."""
    new = not path.exists()
    with naming(path), path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(METRICS_COLUMNS)
        writer.writerow([round_, step, f"{lr:.6g}", f"{loss:.6f}" if math.isfinite(loss)
                         else "nan", f"{seconds:.2f}"])


def truncate_metrics(path: Path, round_: int, step: int) -> None:
    """Drop rows after (round_, step): a resumed run redoes those steps."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [row for row in rows[1:] if (int(row[0]), int(row[1])) <= (round_, step)]
    atomic_text(path, "".join(",".join(row) + "\n" for row in kept))
