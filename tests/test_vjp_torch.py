"""torch itself as the reference for ``reduction="none"``, ``grad_output`` and masked classes (derivation eqs. 54-56).

``F.cross_entropy(..., reduction="none")`` gives the per-row losses the suite
claims (eq. 55), and ``loss.backward(g)`` the vector-Jacobian product at a
cotangent (eq. 54): a random (N,) vector with mixed signs and zeros for
"none", a scalar other than 1 for "mean" and "sum". Every torch option case
(weight, ignore_index, label_smoothing, soft targets) is run so, for
``softmax_loss`` and for ``linear_cross_entropy`` (``F.linear`` then the
cross-entropy), in float64 and float32, against every variant and both
oracles. Masked classes (``-inf``) are compared where torch's value is defined;
where torch's is not (a label on a masked class: +inf; label smoothing with a
mask: +inf; soft targets with a mask: a NaN loss, 0 * -inf) the suite's
contract decides instead, and that is pinned here too. z-loss and
soft-capping are not torch's: tests/test_vjp_agreement.py holds them to
finite differences.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.nn import functional

from softmax_grad.cases import Case
from tests.conftest import DTYPES, ORACLES, VARIANTS
from tests.test_options_torch import torch_cases
from tests.vjp_cases import SCALAR_COTANGENTS, compare_vjp, cotangent, failures, padded, row_masked

IMPLEMENTATIONS = {**VARIANTS, **{f"reference.{name}": module for name, module in ORACLES.items()}}
INF = np.inf
THOROUGH = os.environ.get("SOFTMAX_GRAD_PROFILE") == "thorough"


def _as_torch(value, dtype):
    return None if value is None else torch.tensor(np.asarray(value), dtype=dtype)


def _backward(loss: torch.Tensor, grad_output, reduction: str):
    """``loss.backward(g)``: the VJP at ``g``; the loss as a float ("mean", "sum") or an (N,) array ("none")."""
    g = torch.ones_like(loss) if grad_output is None else torch.as_tensor(np.asarray(grad_output), dtype=loss.dtype)
    loss.backward(g)
    value = loss.detach().numpy()
    return value if reduction == "none" else float(value)


def _cross_entropy(S, y, dtype, reduction, weight, ignore_index, label_smoothing):
    y = np.asarray(y)
    target = torch.tensor(y, dtype=dtype) if y.ndim == 2 else torch.tensor(y, dtype=torch.long)
    return functional.cross_entropy(
        S,
        target,
        weight=_as_torch(weight, dtype),
        ignore_index=-100 if ignore_index is None else ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


class Torch:
    """torch's autograd behind the suite's signatures: the third, independent reference."""

    @staticmethod
    def softmax_loss(
        scores, y, *, reduction="mean", grad_output=None, weight=None, ignore_index=None, label_smoothing=0.0
    ):
        S = torch.tensor(scores, requires_grad=True)
        loss = _cross_entropy(S, y, S.dtype, reduction, weight, ignore_index, label_smoothing)
        return _backward(loss, grad_output, reduction), S.grad.numpy()

    @staticmethod
    def linear_cross_entropy(
        X, W, y, *, bias=None, reduction="mean", grad_output=None, weight=None, ignore_index=None,
        label_smoothing=0.0, chunk_size=None,
    ):  # fmt: skip
        X_, W_ = torch.tensor(X, requires_grad=True), torch.tensor(W, requires_grad=True)
        b_ = None if bias is None else torch.tensor(bias, requires_grad=True)
        logits = functional.linear(X_, W_.T, b_)  # F.linear takes the weight as (V, D)
        loss = _cross_entropy(logits, y, X_.dtype, reduction, weight, ignore_index, label_smoothing)
        value = _backward(loss, grad_output, reduction)
        grads = {"X": X_.grad.numpy(), "W": W_.grad.numpy()}
        return value, grads if b_ is None else {**grads, "b": b_.grad.numpy()}


def _with_cotangent(case: Case, reduction: str, seed: int) -> Case:
    n = case.args[0].shape[0]
    g = cotangent(n, seed) if reduction == "none" else SCALAR_COTANGENTS[reduction]
    kwargs = {**case.kwargs, "reduction": reduction, "grad_output": g}
    return Case(case.name, case.function, case.args, kwargs, case.group)


# The option groups run with cotangents by default (each autodiff shape and option set is one more JAX
# compilation); the thorough profile runs every group of tests/test_options_torch.py.
GROUPS = {
    "ignore_index in range": "none",
    "label_smoothing=1": "none",
    "soft targets, rows not summing to 1": "none",
    "soft targets+weight+smoothing": "sum",
    "every option": "mean",
    "every option, C=2": "none",
}


def softmax_loss_cases() -> list[Case]:
    """Torch's option groups with "none" and a random cotangent, or "mean"/"sum" and a scalar; masked classes."""
    cases = []
    for seed, case in enumerate({case.group: case for case in torch_cases()}.values()):
        if THOROUGH:
            cases += [_with_cotangent(case, "none", seed), _with_cotangent(case, ("mean", "sum")[seed % 2], seed)]
        elif case.group in GROUPS:
            cases.append(_with_cotangent(case, GROUPS[case.group], seed))
    # masked classes where torch is defined: labels off the masks, no smoothing
    S = 2 * np.random.default_rng(40).standard_normal((6, 5))
    y = np.array([0, 4, -100, 1, 2, 2])
    w = np.array([0.5, 2.0, 1.0, 3.0, 0.25, 1.0, 1.5])
    R, labels, _ = row_masked()
    for seed, (name, scores, targets, options, reductions) in enumerate(
        [
            ("padded, weight", padded(S, 2), y, {"ignore_index": -100, "weight": w}, ("none", "mean")),
            ("row masks, weight, ignore_index=3", R, labels, {"weight": w[:6], "ignore_index": 3}, ("none", "sum")),
        ]
    ):
        base = Case(name, "softmax_loss", (scores, targets), options, "masked")
        cases += [_with_cotangent(base, reduction, 50 + seed) for reduction in reductions]
    return cases


def linear_cross_entropy_cases() -> list[Case]:
    """``F.linear`` + cross-entropy: torch's options, chunked and dense, a ``-inf`` bias, three reductions."""
    N, D, V = 7, 3, 9
    rng = np.random.default_rng(45)
    X, W, b = rng.standard_normal((N, D)), rng.standard_normal((D, V)), 0.5 * rng.standard_normal(V)
    y = rng.integers(0, 7, N)
    y[3] = -100
    masked = b.copy()
    masked[[7, 8]] = -INF
    w = 0.2 + 2.8 * rng.random(V)
    cases = []
    for seed, (bias, options, reductions) in enumerate(
        [
            (b, {"weight": w, "ignore_index": -100, "label_smoothing": 0.2, "chunk_size": 4}, ("none", "mean")),
            (None, {"ignore_index": -100, "chunk_size": None}, ("sum",)),
            (masked, {"weight": w, "ignore_index": -100, "chunk_size": 4}, ("none", "sum")),
        ]
    ):
        kwargs = options if bias is None else {"bias": bias, **options}
        base = Case(f"N={N} D={D} V={V} #{seed}", "linear_cross_entropy", (X, W, y), kwargs)
        cases += [_with_cotangent(base, reduction, 60 + seed) for reduction in reductions]
    return cases


CASES = softmax_loss_cases() + linear_cross_entropy_cases()


def test_the_cases_cover_every_torch_option_with_cotangents_and_masks():
    kinds = {key for case in CASES for key in case.kwargs} | {"soft" for case in CASES if case.args[1].ndim == 2}
    assert kinds >= {"weight", "ignore_index", "label_smoothing", "soft", "bias", "grad_output"}
    reductions = {(case.function, case.kwargs["reduction"]) for case in CASES}
    assert reductions == {(f, r) for f in ("softmax_loss", "linear_cross_entropy") for r in ("none", "mean", "sum")}
    assert all(np.asarray(case.kwargs["grad_output"]).size > 1 or case.kwargs["grad_output"] != 1 for case in CASES)
    assert sum(case.group == "masked" for case in CASES) == 4
    assert {case.group for case in CASES} >= set(GROUPS)  # a renamed group must not drop out unseen


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_every_implementation_agrees_with_torch_at_random_cotangents(implementation, dtype):
    module = IMPLEMENTATIONS[implementation]
    kind = "finite_differences" if implementation.endswith("finite_differences") else "autodiff"
    found = []
    for base in CASES:
        case = base.astype(dtype)
        found += failures(compare_vjp(case, case.call(module), case.call(Torch), kind, f"{implementation} vs torch"))
    assert not found, "\n".join(found)


def test_torch_itself_uses_every_entry_of_the_cotangent():
    # The guard on the test above: torch's "none" backward scales row i by g_i (not g_0, not 1), and
    # its gradient at a masked class is exactly 0, so agreeing with torch means that.
    S = np.random.default_rng(41).standard_normal((4, 3))
    S[1, 2] = -INF
    y = np.array([0, 1, 2, 1])
    g = np.array([0.0, -2.0, 0.5, 3.0])
    _, dS = Torch.softmax_loss(S, y, reduction="none", grad_output=g)
    _, dS_sum = Torch.softmax_loss(S, y, reduction="sum")
    np.testing.assert_allclose(dS, g[:, None] * dS_sum, rtol=1e-15, atol=0)
    assert dS[1, 2] == 0.0 and np.all(dS[0] == 0.0)
    losses, _ = Torch.softmax_loss(S, y, reduction="none")
    total, _ = Torch.softmax_loss(S, y, reduction="sum")
    assert losses.shape == (4,) and losses.sum() == pytest.approx(total, rel=1e-15)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_where_torch_is_infinite_on_a_mask_the_contract_refuses(implementation):
    # torch gives +inf for a label on a masked class (-log 0) and for label smoothing with a mask (e/C
    # falls on -inf); its gradient stays finite there (p - e_y), but a loss of +inf trains nothing: this
    # suite raises a ValueError that says why instead (derivation eq. 56).
    module = IMPLEMENTATIONS[implementation]
    S = np.array([[0.5, -INF, 1.0], [2.0, 0.0, -1.0]])
    on_mask = np.array([1, 0])
    for y, options in [(on_mask, {}), (np.array([0, 0]), {"label_smoothing": 0.1})]:
        torch_loss, torch_dS = Torch.softmax_loss(S, y, reduction="none", **options)
        assert np.isposinf(torch_loss[0]) and np.isfinite(torch_dS).all()
        with pytest.raises(ValueError, match=r"masked|label_smoothing"):
            module.softmax_loss(S, y, reduction="none", **options)
    X, W = np.ones((2, 1)), np.ones((1, 3))
    with pytest.raises(ValueError, match="masked"):
        module.linear_cross_entropy(X, W, on_mask, bias=np.array([0.0, -INF, 0.0]))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_soft_targets_with_a_mask_torch_nan_loss_the_suite_its_limit(implementation):
    # torch's soft-target loss is -sum_j t_ij log p_ij with 0 * -inf = NaN at a masked class; its
    # gradient (sum_j t_ij) p_i - t_i is finite. The suite's loss sums over the classes that exist
    # (derivation eq. 56): it equals torch's on the same rows with the masked columns dropped.
    module = IMPLEMENTATIONS[implementation]
    R, _, T = row_masked()
    padded_S, padded_T = padded(R[5:], 2), np.concatenate([T[5:], np.zeros((1, 2))], axis=1)
    torch_loss, torch_dS = Torch.softmax_loss(padded_S, padded_T, reduction="none")
    assert np.isnan(torch_loss).all() and np.isfinite(torch_dS).all()
    dropped_loss, _ = Torch.softmax_loss(R[5:], T[5:], reduction="none")
    loss, dS = module.softmax_loss(padded_S, padded_T, reduction="none")
    kind = "finite_differences" if implementation.endswith("finite_differences") else "autodiff"
    case = Case("soft, padded", "softmax_loss", (padded_S, padded_T), {"reduction": "none"})
    assert not failures(compare_vjp(case, (loss, dS), (dropped_loss, torch_dS), kind, implementation))
