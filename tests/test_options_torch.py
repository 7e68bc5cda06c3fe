"""PyTorch's ``F.cross_entropy`` as a third, independent reference for the conventions it shares.

The suite claims torch's conventions for class weights, ignore_index, label
smoothing, soft targets and both reductions (derivation section 7, README
"Loss options"). Both oracles could share a misreading of them; torch cannot.
Every option case without z-loss or soft-capping (torch has neither) is run
through torch's autograd and compared with every variant and both oracles.
The one place the suite departs from torch on purpose is pinned as well.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional

from softmax_grad.cases import Case, compare_results, option_cases
from softmax_grad.tolerances import tolerance
from tests.conftest import DTYPES, ORACLES, VARIANTS

IMPLEMENTATIONS = {**VARIANTS, **{f"reference.{name}": module for name, module in ORACLES.items()}}
# The compiled variant meets torch through autodiff (test_options.py holds it to autodiff on every
# option case): its own JAX compilations of these shapes would double this file's time for nothing new.
AGAINST_TORCH = {name: module for name, module in IMPLEMENTATIONS.items() if name != "compiled"}
TORCH_OPTIONS = ("reduction", "weight", "ignore_index", "label_smoothing")


def torch_cases() -> list[Case]:
    """The option cases with z-loss and soft-capping removed; one case per distinct remainder."""
    cases, seen = [], set()
    for case in option_cases():
        if case.group == "kept rows weigh 0":  # the deliberate departure, tested below
            continue
        kwargs = {k: v for k, v in case.kwargs.items() if k in TORCH_OPTIONS}
        trimmed = Case(case.name, case.function, case.args, kwargs, case.group)
        if trimmed.id not in seen:
            seen.add(trimmed.id)
            cases.append(trimmed)
    return cases


CASES = torch_cases()


def torch_softmax_loss(scores, y, *, reduction="mean", weight=None, ignore_index=None, label_smoothing=0.0):
    """``F.cross_entropy`` and its autograd gradient, in the scores' dtype."""
    S = torch.tensor(scores, requires_grad=True)
    y = np.asarray(y)
    target = torch.tensor(y, dtype=S.dtype) if y.ndim == 2 else torch.tensor(y, dtype=torch.long)
    loss = functional.cross_entropy(
        S,
        target,
        weight=None if weight is None else torch.tensor(weight, dtype=S.dtype),
        ignore_index=-100 if ignore_index is None else ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )
    loss.backward()
    return loss.item(), S.grad.numpy()


class Torch:
    softmax_loss = staticmethod(torch_softmax_loss)


def test_the_torch_cases_cover_its_options():
    assert len(CASES) >= 30
    kinds = {key for case in CASES for key in case.kwargs} | {"soft" for case in CASES if case.args[1].ndim == 2}
    assert kinds == {*TORCH_OPTIONS, "soft"}
    assert any(case.kwargs.get("ignore_index") == 2 for case in CASES)
    assert any(case.kwargs.get("label_smoothing") == 1.0 for case in CASES)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("implementation", AGAINST_TORCH)
def test_every_implementation_agrees_with_torch(implementation, dtype):
    module = AGAINST_TORCH[implementation]
    kind = "finite_differences" if implementation.endswith("finite_differences") else "autodiff"
    failures = []
    for base in CASES:
        case = base.astype(dtype)
        for comparison in compare_results(
            case, case.call(module), case.call(Torch), kind, f"{implementation} vs torch"
        ):
            if not comparison.ok:
                failures.append(f"{case.id}: {comparison.message}")
    assert not failures, "\n".join(failures)


def test_torch_itself_is_held_to_the_convention_it_is_cited_for():
    # The guard on the test above: torch's weighted mean divides by sum_kept w[y_i], not by N,
    # so a variant dividing by N would disagree with torch, not only with the oracles.
    S = np.random.default_rng(1).standard_normal((4, 3))
    y = np.array([0, 2, -100, 1])
    w = np.array([0.5, 2.0, 3.0])
    mean, _ = torch_softmax_loss(S, y, weight=w, ignore_index=-100)
    total, _ = torch_softmax_loss(S, y, weight=w, ignore_index=-100, reduction="sum")
    assert mean == pytest.approx(total / (0.5 + 3.0 + 2.0), rel=1e-14)
    assert mean != pytest.approx(total / 4, rel=1e-3) and mean != pytest.approx(total / 3, rel=1e-3)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_kept_rows_of_weight_zero_nan_loss_and_zero_gradient_where_torch_gives_nan(implementation):
    # "mean" over kept rows whose label weights are all 0: 0/0. Torch returns NaN for the loss and for
    # every gradient entry; this suite returns the NaN loss and a zero gradient (derivation, eq. 20 and
    # the table of section 7), as it does when every row is ignored.
    S = np.random.default_rng(2).standard_normal((3, 4))
    y, w = np.array([0, 1, 0]), np.array([0.0, 0.0, 1.0, 1.0])
    torch_loss, torch_dS = torch_softmax_loss(S, y, weight=w)
    assert np.isnan(torch_loss) and np.isnan(torch_dS).all()
    loss, dS = IMPLEMENTATIONS[implementation].softmax_loss(S, y, weight=w)
    tol = tolerance(np.float64, "finite_differences" if "finite" in implementation else "autodiff")
    assert np.isnan(loss) and np.all(np.abs(dS) <= tol.floor)
