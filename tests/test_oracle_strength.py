"""Tests of the oracle itself: a comparison that cannot fail proves nothing.

Each mutant is the vectorized variant with one classic slip, built from the
outside (wrapping its results, or re-deriving one line), never by editing its
source. Every mutant must be caught by the suite's comparisons against *each*
oracle, on the standard cases, and the unmutated variant must pass them.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import manual
from manual import vectorized
from manual._forward import two_layer_forward
from softmax_grad.cases import FUNCTIONS, Case, params, standard_cases
from softmax_grad.verify import verify
from tests.conftest import ORACLES


def mutant(**overrides) -> SimpleNamespace:
    return SimpleNamespace(**{name: getattr(vectorized, name) for name in FUNCTIONS} | overrides)


def scaled(function, factor):
    """``function`` with every gradient multiplied by ``factor`` (the loss left alone)."""

    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        if isinstance(result, np.ndarray):
            return result * factor
        loss, grad = result
        if isinstance(grad, dict):
            return loss, {key: value * factor for key, value in grad.items()}
        return loss, grad * factor

    return wrapped


def two_layer_with(**edits):
    """The vectorized two-layer gradient re-derived with one term changed."""

    def two_layer_loss(params, X, y, *, reg=0.0):
        X = np.asarray(X)
        params = {key: np.asarray(value) for key, value in params.items()}
        Z1, H1, S = two_layer_forward(params, X)
        loss, dS = vectorized.softmax_loss(S, y)
        ones = np.ones(len(X), dS.dtype)
        gate = (Z1 >= 0) if edits.get("relu_at_zero") else (Z1 > 0)
        dZ1 = (dS @ params["W2"].T) * gate
        grads = {
            "W1": X.T @ dZ1 + (0.0 if edits.get("drop_reg_W1") else reg) * params["W1"],
            "b1": ones @ dZ1,
            "W2": H1.T @ dS + (0.0 if edits.get("drop_reg_W2") else reg) * params["W2"],
            "b2": dS.sum(axis=1) if edits.get("db2_wrong_axis") else ones @ dS,
        }
        if edits.get("db1_missing_ones"):
            grads["b1"] = dZ1[0]  # the bias gradient of one sample, as if b1 fed one row
        penalty = 0.5 * reg * (np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2))
        return loss + penalty, grads

    return two_layer_loss


def without_mean(function):
    """The 1/N forgotten: a "mean" call computes the "sum" gradient."""

    def wrapped(*args, **kwargs):
        loss, grad = function(*args, **{**kwargs, "reduction": "sum"})
        return loss, grad

    return wrapped


def linear_without_reg(W, X, y, *, reg=0.0, reduction="mean"):
    loss, dW = vectorized.linear_loss(W, X, y, reg=reg, reduction=reduction)
    return loss, dW - reg * np.asarray(W)


def labels_shifted(function):
    def wrapped(scores, y, **kwargs):
        C = np.shape(scores)[1]
        return function(scores, (np.asarray(y) + 1) % C, **kwargs)

    return wrapped


MUTANTS = {
    "gradient x 1.001": (mutant(softmax_loss=scaled(vectorized.softmax_loss, 1.001)), "softmax_loss"),
    "two-layer gradients x 1.001": (mutant(two_layer_loss=scaled(vectorized.two_layer_loss, 1.001)), "two_layer_loss"),
    "linear dW x 0.999": (mutant(linear_loss=scaled(vectorized.linear_loss, 0.999)), "linear_loss"),
    "Jacobian x 1.001": (mutant(softmax_jacobian=scaled(vectorized.softmax_jacobian, 1.001)), "softmax_jacobian"),
    "1/N missing": (mutant(softmax_loss=without_mean(vectorized.softmax_loss)), "softmax_loss"),
    "sign flipped": (mutant(softmax_loss=scaled(vectorized.softmax_loss, -1.0)), "softmax_loss"),
    "linear reg term missing": (mutant(linear_loss=linear_without_reg), "linear_loss"),
    "dW2 reg term missing": (mutant(two_layer_loss=two_layer_with(drop_reg_W2=True)), "two_layer_loss"),
    "dW1 reg term missing": (mutant(two_layer_loss=two_layer_with(drop_reg_W1=True)), "two_layer_loss"),
    "db2 summed over the wrong axis": (mutant(two_layer_loss=two_layer_with(db2_wrong_axis=True)), "two_layer_loss"),
    "db1 without the ones vector": (mutant(two_layer_loss=two_layer_with(db1_missing_ones=True)), "two_layer_loss"),
    "ReLU mask Z1 >= 0": (mutant(two_layer_loss=two_layer_with(relu_at_zero=True)), "two_layer_loss"),
    "labels shifted by one": (mutant(softmax_loss=labels_shifted(vectorized.softmax_loss)), "softmax_loss"),
}

CASES = standard_cases()


def square_case() -> Case:
    # N == C, so that db2 summed over samples or over classes has the same shape:
    # the mutant must be caught by its values, not only by its shape.
    rng = np.random.default_rng(3)
    return Case("N == C", "two_layer_loss", (params(3, 4, 5, 9), rng.standard_normal((5, 3)), rng.integers(0, 5, 5)))


def failed_rows(module, function, oracle, cases, dtype=np.float64):
    chosen = [c for c in cases if c.function == function]
    rows = verify({"mutant": module}, {oracle: ORACLES[oracle]}, chosen, dtypes=(dtype,))
    return [failure for row in rows for failure in row.failures]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("oracle", ORACLES)
@pytest.mark.parametrize("name", MUTANTS)
def test_every_mutant_is_caught_by_every_oracle(name, oracle, dtype):
    module, function = MUTANTS[name]
    failures = failed_rows(module, function, oracle, CASES, dtype)
    # Caught by its values (or the shape of db2), not by a dtype slip of the mutant's own making.
    assert any("values differ" in f or "shape" in f for f in failures), f"{name!r} passed against {oracle}"
    assert not any("dtype" in f for f in failures), failures


@pytest.mark.parametrize("oracle", ORACLES)
def test_db2_on_the_wrong_axis_is_caught_by_value_when_shapes_agree(oracle):
    module, _ = MUTANTS["db2 summed over the wrong axis"]
    failures = failed_rows(module, "two_layer_loss", oracle, [square_case()])
    assert any("db2" in failure and "values differ" in failure for failure in failures), failures


@pytest.mark.parametrize("oracle", ORACLES)
def test_the_relu_convention_at_zero_is_pinned(oracle):
    # Only the dead-units cases put a pre-activation at exactly 0: there the
    # mutant's >= gate lets gradient through db1 that JAX's relu'(0) = 0 does not.
    module, _ = MUTANTS["ReLU mask Z1 >= 0"]
    dead = [c for c in CASES if c.name == "dead units"]
    failures = failed_rows(module, "two_layer_loss", oracle, dead)
    assert any("db1" in failure for failure in failures), failures


@pytest.mark.parametrize("oracle", ORACLES)
@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_unmutated_variants_pass_the_same_comparisons(function, oracle):
    # The control: what catches the mutants lets the real code through.
    for name, module in manual.VARIANTS.items():
        for dtype in (np.float64, np.float32):
            assert not failed_rows(module, function, oracle, CASES, dtype), name
