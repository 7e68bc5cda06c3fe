"""Hints for results that no slip can be matched against: non-finite gradients, and where the logits say why.

A NaN where the oracle has numbers, on a case whose rows' logits lie hundreds
apart, comes from the shift: one max over the whole batch (``S - S.max()``)
sends every row far below it to ``exp`` = 0, so its probabilities are 0 / 0;
no shift overflows ``exp`` past 709.78. Both are cured by eq. (15)'s
per-row shift, ``m_i = max_j s_ij``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reference.checker.kinds import Kind

# exp(-x) is 0 in the dtype once x passes this (float64 subnormals end near 745, float32's near 104)
_UNDERFLOW = {np.dtype(np.float64): 745.0, np.dtype(np.float32): 104.0}


def logits(kind: Kind, inputs: Mapping[str, Any]) -> np.ndarray | None:
    """The case's logits S (N, C), computed in float64, or None for a kind this does not know.

    >>> from reference.checker.kinds import get
    >>> logits(get("linear"), {"X": np.eye(2), "W": np.array([[1.0, 2.0], [3.0, 4.0]])}).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    f64 = {k: (np.asarray(v, np.float64) if isinstance(v, np.ndarray) else v) for k, v in inputs.items()}
    if "scores" in f64:
        return f64["scores"]
    if "params" in f64:
        p = {k: np.asarray(v, np.float64) for k, v in f64["params"].items()}
        return np.maximum(f64["X"] @ p["W1"] + p["b1"], 0.0) @ p["W2"] + p["b2"]
    if "X" in f64 and "W" in f64:
        bias = f64.get("bias")
        return f64["X"] @ f64["W"] + (0.0 if bias is None else bias)
    return None


def non_finite_hints(
    kind: Kind, inputs: Mapping[str, Any], got: Mapping[str, np.ndarray], wrong: set[str], dtype: np.dtype
) -> list[str]:
    """The per-row shift hint, when a wrong gradient is non-finite and the rows' maxima lie past exp's range."""
    broken = [n for n in wrong if n in got and got[n].dtype.kind == "f" and not np.isfinite(got[n]).all()]
    S = logits(kind, inputs) if broken else None
    if S is None or S.size == 0:
        return []
    row_max = S.max(axis=1)
    gap = float(row_max.max() - row_max.min())
    if gap < _UNDERFLOW.get(np.dtype(dtype), 745.0):
        return []
    return [
        f"{', '.join(sorted(broken))} non-finite where the rows' maxima lie {gap:.0f} apart: shift each row by its "
        "own max, m_i = max_j s_ij (eq. 15); one max over the whole batch (S - S.max()) sends the far rows to "
        "exp = 0 and 0 / 0, and no shift overflows exp"
    ]
