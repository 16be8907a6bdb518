"""adapt's guard rail: it warns when the held-back synthetic traced F1 or map Dice fell."""

from __future__ import annotations

import warnings

import pytest

from dineuro.adapt import AdaptWarning
from dineuro.adapt.guards import warn_if_worse

BEFORE = {"synthetic_f1": 0.60, "synthetic_dice": 0.50}


def checked(f1, dice):
    return {"synthetic_f1": f1, "synthetic_dice": dice, "round": 1}


def caught(after, margin=0.01, before=BEFORE) -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warn_if_worse(before, after, margin)
    assert all(issubclass(w.category, AdaptWarning) for w in seen)
    return [str(w.message) for w in seen]


def test_no_warning_while_both_scores_hold_within_the_margin():
    assert caught(checked(0.595, 0.491)) == []
    assert caught(checked(0.70, 0.60)) == []  # better is never a warning


def test_a_fallen_traced_f1_is_named():
    (message,) = caught(checked(0.58, 0.50))
    assert "traced F1 from 0.600 to 0.580" in message and "Dice" not in message
    assert "after round 1" in message and "guard_margin 0.01" in message


def test_a_fallen_dice_warns_even_when_the_f1_holds():
    (message,) = caught(checked(0.61, 0.47))
    assert "map Dice from 0.500 to 0.470" in message and "traced F1" not in message


def test_both_fallen_give_one_warning_naming_both():
    (message,) = caught(checked(0.55, 0.45))
    assert "traced F1 from 0.600 to 0.550" in message and "map Dice from 0.500 to 0.450" in message


@pytest.mark.parametrize("margin, warned", [(0.02, False), (0.019, True)])
def test_the_margin_is_the_largest_fall_allowed(margin, warned):
    assert bool(caught(checked(0.60, 0.48), margin)) is warned


def test_no_reference_scores_no_warning():
    """Without held-back synthetic stacks the scores are None and nothing is compared."""
    none = {"synthetic_f1": None, "synthetic_dice": None}
    assert caught({**none, "round": 1}, before=none) == []
