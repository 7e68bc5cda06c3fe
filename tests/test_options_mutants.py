"""The oracle can say no, option by option: each classic slip in a loss option is caught.

``options_loss_with`` is eq. (24) re-derived in a few lines of NumPy, written
here and not taken from any variant, with at most one term changed. Unchanged,
it must pass every option case against each oracle (the control); with any one
edit, it must fail on the gradient against each oracle, in float64 and float32.
"""

from __future__ import annotations

import numpy as np
import pytest

from softmax_grad.cases import compare_results, option_cases
from tests.conftest import DTYPES, ORACLES

CASES = option_cases()

EDITS = {
    "weighted mean divided by N": "mean_over_n",
    "smoothing without class weights": "smoothing_unweighted",
    "smoothing weighted by the label's class": "smoothing_by_label_weight",
    "ignored rows counted in the denominator": "ignored_counted",
    "z-loss gradient missing its factor 2": "z_without_2",
    "softcap derivative missing": "softcap_factor_missing",
    "soft-target gradient p - t": "soft_p_minus_t",
}


def options_loss_with(*edits: str):
    """``softmax_loss`` with the options, from eqs. (17)-(24), with the named slips made."""
    unknown = set(edits) - set(EDITS.values())
    assert not unknown, unknown

    def softmax_loss(
        scores, y, *, reduction="mean", weight=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0, softcap=None
    ):
        scores, y = np.asarray(scores), np.asarray(y)
        S = scores.astype(np.float64)
        N, C = S.shape
        w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
        e, z, c = label_smoothing, z_loss, softcap
        Z = S if c is None else c * np.tanh(S / c)  # eq. (17)
        m = Z.max(axis=1)
        lse = m + np.log(np.exp(Z - m[:, None]).sum(axis=1))
        P = np.exp(Z - lse[:, None])
        if y.ndim == 2:
            kept = np.ones(N)
            q = w * ((1 - e) * y + e / C)  # eq. (18)
            denominator = float(N)
        else:
            kept = np.ones(N) if ignore_index is None else (y != ignore_index).astype(float)
            labels = np.where(kept > 0, y, 0)
            uniform = np.ones(C) if "smoothing_unweighted" in edits else w
            q = (e / C) * np.tile(uniform, (N, 1))
            if "smoothing_by_label_weight" in edits:
                q = (e / C) * np.outer(w[labels], np.ones(C))
            q[np.arange(N), labels] += (1 - e) * w[labels]
            denominator = float(np.sum(kept * w[labels]))  # eq. (20)
        a = q.sum(axis=1)
        count = kept.sum()
        if "ignored_counted" in edits:
            denominator, count = denominator + (N - count), N
        if "mean_over_n" in edits:
            denominator = float(N)
        if reduction == "mean":
            r = kept / denominator if denominator > 0 else np.zeros(N)
            u = kept / count if count > 0 else np.zeros(N)
        else:
            r = u = kept
        row_losses = a * lse - np.sum(q * Z, axis=1)  # eq. (19)
        loss = float(np.sum(r * row_losses) + z * np.sum(u * lse**2))  # eqs. (20), (21)
        if reduction == "mean" and denominator == 0:
            loss = float("nan")
        a_grad = np.where(kept > 0, 1.0, 0.0) if ("soft_p_minus_t" in edits and y.ndim == 2) else a
        two = 1.0 if "z_without_2" in edits else 2.0
        dZ = (r * a_grad + two * z * u * lse)[:, None] * P - r[:, None] * q  # eq. (24)
        if c is not None and "softcap_factor_missing" not in edits:
            dZ *= 1 - (Z / c) ** 2
        return loss, dZ.astype(np.float32 if scores.dtype == np.float32 else np.float64)

    return softmax_loss


class Module:
    def __init__(self, softmax_loss):
        self.softmax_loss = softmax_loss


def failures(edits, oracle, dtype, oracle_result) -> list[str]:
    module = Module(options_loss_with(*edits))
    found = []
    for base in CASES:
        case = base.astype(dtype)
        for comparison in compare_results(case, case.call(module), oracle_result(case, oracle), oracle, case.id):
            if not comparison.ok:
                found.append(comparison.message)
    return found


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("oracle", ORACLES)
def test_the_re_derivation_passes_unchanged(oracle, dtype, oracle_result):
    # The control: the comparisons that catch the mutants let the correct formula through.
    found = failures((), oracle, dtype, oracle_result)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("oracle", ORACLES)
@pytest.mark.parametrize("name", EDITS)
def test_every_option_mutant_is_caught_on_the_gradient(name, oracle, dtype, oracle_result):
    found = failures((EDITS[name],), oracle, dtype, oracle_result)
    assert any(" dS " in f and "values differ" in f for f in found), f"{name!r} passed against {oracle}"
