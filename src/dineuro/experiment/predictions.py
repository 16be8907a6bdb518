"""A run's checkpoint predicting the evaluation split, kept while the checkpoint is unchanged.

Experiments compare networks, so every stack is predicted alike: every window, in float32.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dineuro.io.atomic import atomic_dir

#: The file of a predictions folder that records the checkpoint and options that made it.
PREDICTION_RECORD = "prediction.json"


def predict_split(checkpoint: Path, data: Path, names: list[str], options: dict, folder: Path,
                  device: str, threads: int | None) -> Path:
    """Predictions of ``names`` by ``checkpoint`` in ``folder``, reused while still valid.

    ``folder`` appears only complete (written under a temporary name) and records in
    ``prediction.json`` the checkpoint (path, size, mtime) and options that made it; a folder
    whose record differs is replaced.

    Parameters
    ----------
    checkpoint : Path
        The run's checkpoint (loaded by :meth:`dineuro.predictor.Predictor.from_checkpoint`).
    data : Path
        The dataset folder.
    names : list of str
        The stacks to predict (the evaluation split).
    options : dict
        ``overlap``, ``flips`` and ``batch_size`` of the sliding window.
    folder : Path
        Where ``NAME_prob.tif`` and ``NAME_mask.tif`` of each stack go.
    device : str
        "auto", "cpu", "cuda" or "cuda:N".
    threads : int or None
        Torch threads while predicting (the run's); None leaves them as they are.

    Returns
    -------
    Path
        ``folder``.
    """
    import torch

    from dineuro.data.dataset import open_dataset
    from dineuro.predictor import Predictor

    stat = checkpoint.stat()
    record = {"checkpoint": str(checkpoint), "checkpoint_size": stat.st_size,
              "checkpoint_mtime_ns": stat.st_mtime_ns, "names": list(names), **options}
    if folder.is_dir() and _read_record(folder / PREDICTION_RECORD) == record:
        return folder
    if folder.exists():
        shutil.rmtree(folder)  # made by an older checkpoint of this run
    # Experiments compare networks: every window, in float32, as the predictions they made
    # before skipping and bf16 existed (and may still find cached).
    predictor = Predictor.from_checkpoint(checkpoint, device=device, precision="fp32",
                                          skip_empty=False, overlap=options["overlap"],
                                          flips=options["flips"],
                                          batch_size=options["batch_size"])
    dataset = open_dataset(data)
    default_threads = torch.get_num_threads()
    if threads is not None:  # as in training: the run's thread count
        torch.set_num_threads(threads)
    try:
        with atomic_dir(folder) as tmp:
            for name in names:
                predictor.predict_to(dataset.images[name], tmp)
            (tmp / PREDICTION_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    finally:
        torch.set_num_threads(default_threads)
    return folder


def _read_record(path: Path) -> dict | None:
    """The JSON ``path`` holds, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
