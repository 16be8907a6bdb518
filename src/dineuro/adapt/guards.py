"""Guard rails of an adaptation run: did the network get worse where it knew the answer?

Checked after every round, and once before the first as the reference:

- synthetic F1 and Dice: on the synthetic stacks not used for training (val and test
  splits), predicted with every window in float32 as training validates, the mean traced
  length F1 against their gold SWCs (:func:`dineuro.evaluate.compare_trees`) and the mean
  Dice of the map (:func:`synthetic_scores`). If either falls by more than ``guard_margin``
  below the starting network's, an :class:`AdaptWarning` says so (:func:`warn_if_worse`).
  Both, because on the few stacks held back the traced F1 alone missed real losses: adapting
  the default model to three synthetic shifts (``benchmarks/adapt_shift.py``) moved it by
  -0.009, -0.004 and +0.010 while the source domain's traced F1 fell by 0.030, 0.016 and
  0.023; the Dice fell by 0.037, 0.016 and 0.024. Dice also moves when the network only draws
  neurites thinner or fatter, which the trace does not mind, so a Dice warning may be a false
  alarm; a silent loss is worse.
- agreement: on the held-back lab stacks (never trained on), Dice of the network's map
  (>= ``fg_prob``) with their first-round pseudo-labels, over the voxels those labels decide
  (:func:`agreement`). It tells whether the adapted network still finds what the starting one
  was sure of.
"""

from __future__ import annotations

import warnings

import numpy as np

from dineuro.adapt.labels import FOREGROUND, IGNORE
from dineuro.errors import InputError
from dineuro.evaluate import dice
from dineuro.io.swc import SwcTree
from dineuro.train.validation import VAL_THRESHOLD


class AdaptWarning(UserWarning):
    """A guard rail tripped: the adapted network got worse on synthetic data."""


def traced_f1(prob: np.ndarray, spacing, gold: SwcTree) -> float:
    """Length F1 of the trace of ``prob`` against ``gold`` (0 for an empty or refused trace)."""
    from dineuro.evaluate import compare_trees
    from dineuro.trace import trace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = trace(prob, spacing)
        except InputError:
            return 0.0
    return compare_trees(tree, gold).f1 if len(tree) else 0.0


def agreement(prob: np.ndarray, label: np.ndarray, fg_prob: float) -> float | None:
    """Dice of ``prob >= fg_prob`` with the label's foreground, over the voxels the label
    decides (1.0 when both are empty there; None when it decides none)."""
    decided = label != IGNORE
    if not decided.any():
        return None
    ours = (prob >= fg_prob) & decided
    theirs = label == FOREGROUND
    total = int(ours.sum()) + int(theirs.sum())
    return 1.0 if total == 0 else 2.0 * int((ours & theirs).sum()) / total


def synthetic_scores(model, stacks, trees, crop, overlap, device) -> dict[str, float | None]:
    """Mean traced F1 and map Dice of ``model`` on the held-back synthetic ``stacks``, against
    their gold ``trees`` by name (None without any), every window predicted in float32."""
    from dineuro.predict import sliding_window_predict

    f1s, dices = [], []
    for stack in stacks:
        prob = sliding_window_predict(model, stack.normalized(), crop, overlap=overlap,
                                      device=device, precision="fp32", skip_empty=False)
        dices.append(dice(prob > VAL_THRESHOLD, stack.label))
        f1s.append(traced_f1(prob, stack.spacing, trees[stack.name]))
    if not f1s:
        return {"synthetic_f1": None, "synthetic_dice": None}
    return {"synthetic_f1": float(np.mean(f1s)), "synthetic_dice": float(np.mean(dices))}


#: The synthetic scores the guard watches, and how the warning names them.
GUARDED = {"synthetic_f1": "traced F1", "synthetic_dice": "map Dice"}


def warn_if_worse(reference: dict, checked: dict, guard_margin: float) -> None:
    """An :class:`AdaptWarning` when the synthetic traced F1 or map Dice of round
    ``checked["round"]`` fell more than ``guard_margin`` below that of the ``reference`` (the
    starting network); one warning naming every score that fell."""
    fallen = [f"{name} from {reference[key]:.3f} to {checked[key]:.3f}"
              for key, name in GUARDED.items()
              if reference[key] is not None and checked[key] < reference[key] - guard_margin]
    if fallen:
        warnings.warn(f"after round {checked['round']} the network's {' and its '.join(fallen)} "
                      f"fell on held-back synthetic stacks (by more than guard_margin "
                      f"{guard_margin:g}); it may have forgotten what it knew, and may trace "
                      "your other stacks worse too: fewer steps, a lower lr, a smaller blend "
                      "or a larger synthetic_share may help.", AdaptWarning, stacklevel=2)
