"""How a probability in [0, 1] is stored: float32, float16 (zarr only) or uint8."""

from __future__ import annotations

import numpy as np

from dineuro.defaults import PROB_DTYPES
from dineuro.errors import InputError

#: uint8 probabilities are round(p * UINT8_SCALE).
UINT8_SCALE = 255


def encode_probability(prob: np.ndarray, dtype: str) -> np.ndarray:
    """Store probabilities as ``dtype``: float32, float16, or uint8 = round(p * 255).

    Examples
    --------
    >>> encode_probability(np.array([0.0, 0.5, 1.0]), "uint8")
    array([  0, 128, 255], dtype=uint8)
    """
    check_choice(dtype, PROB_DTYPES, "prob_dtype")
    if dtype == "uint8":
        return np.rint(np.asarray(prob, np.float32) * UINT8_SCALE).astype(np.uint8)
    return np.asarray(prob, dtype=dtype)


def encoding_note(prob_dtype: str) -> str:
    """How to read a stored value back as a probability, for the output's metadata."""
    return f"p * {UINT8_SCALE}, rounded" if prob_dtype == "uint8" else "p"


def check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise InputError(f"{name} should be one of {list(choices)}, got {value!r}.")
