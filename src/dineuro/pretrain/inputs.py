"""What pre-training learns from when the user names no images: scikit-image's photographs and
projections of a small synthetic set, made in a temporary folder for the run.

Photographs alone teach a teacher natural-image statistics; the projections add thin bright
curves on dark noisy ground, what the student will see. The synthetic folder is temporary, so
the run's config records how it was made rather than where it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The default inputs as the run's config records them.
DEFAULT_INPUTS = ("photos", "synth --preset small")


@dataclass(frozen=True)
class PretrainInputs:
    """The inputs of a pre-training run.

    Attributes
    ----------
    paths : list of str
        What :func:`~dineuro.pretrain.collect_images` reads.
    recorded : list of str
        What the run's config records (no temporary folders).
    from_stacks : bool
        Whether stacks among them must be projected (always for the default inputs).
    """

    paths: list[str]
    recorded: list[str]
    from_stacks: bool


def prepare_inputs(images: Sequence[str] | None, workdir: str | os.PathLike,
                   on_stack: Callable[..., None] | None = None) -> PretrainInputs:
    """The user's images as given, or the default inputs, synthesised into ``workdir``.

    Parameters
    ----------
    images : sequence of str, optional
        Image files or folders, stacks or dataset folders, or "photos"; empty or None for the
        default inputs.
    workdir : str or os.PathLike
        An existing folder that outlives the run's reading of its images.
    on_stack : callable, optional
        Called as each synthetic stack is written (for a progress bar).

    Examples
    --------
    >>> prepare_inputs(["photos"], ".")
    PretrainInputs(paths=['photos'], recorded=['photos'], from_stacks=False)
    """
    if images:
        return PretrainInputs(list(images), list(images), from_stacks=False)
    from dineuro.data.synth import PRESETS, write_synthetic_dataset

    synthetic = Path(workdir) / "synthetic"
    write_synthetic_dataset(synthetic, PRESETS["small"], on_stack=on_stack)
    return PretrainInputs([DEFAULT_INPUTS[0], str(synthetic)], list(DEFAULT_INPUTS),
                          from_stacks=True)
