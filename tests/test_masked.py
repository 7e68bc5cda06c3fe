"""Masked classes (derivation eq. 56): a score or bias of -inf is a class that does not exist.

Every NumPy variant, float64 and float32, every option group that allows a
mask (label smoothing does not: its ``e/C`` falls on every class), both loss
functions: ``p = 0`` and ``dS = 0`` exactly at masked entries and nothing
non-finite anywhere, soft-capping included; padding the vocabulary with masked
classes changes nothing (hypothesis); the contract's errors say why; an
ignored row may point at a masked class; ``stable=False`` keeps masks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import DTYPES, VARIANTS
from tests.vjp_problems import FUNCTIONS, IGNORE, OPTION_GROUPS, C, D, Problem, agree, problem

NAMES = list(VARIANTS)
MASKABLE = tuple(group for group in OPTION_GROUPS if group not in ("label_smoothing", "everything"))


def masked(prob: Problem, seed: int = 0) -> tuple[Problem, np.ndarray]:
    """``prob`` with some classes masked: scores of -inf (two per row) or a bias of -inf (two columns).

    No kept label and no soft-target mass lands on a masked class; returns the problem and the (N, C) mask.
    """
    rng = np.random.default_rng(seed)
    inputs = dict(prob.inputs)
    y = inputs["y"].copy()
    C = inputs["S"].shape[1] if "S" in inputs else inputs["W"].shape[1]
    kept = np.ones(prob.rows, bool) if y.ndim == 2 else y != prob.options.get("ignore_index", IGNORE - 1)
    if prob.function == "softmax_loss":
        mask = np.zeros(inputs["S"].shape, bool)
        for i in range(prob.rows):
            allowed = [j for j in range(C) if y.ndim == 2 or not kept[i] or j != y[i]]
            mask[i, rng.choice(allowed, 2, replace=False)] = True
        if y.ndim == 2:
            y = np.where(mask, 0, y).astype(y.dtype)
        inputs["S"] = np.where(mask, -np.inf, inputs["S"]).astype(inputs["S"].dtype)
    else:
        columns = rng.choice([j for j in range(C) if j not in set(y[kept].tolist())], 2, replace=False)
        bias = inputs.get("bias", np.zeros(C, inputs["X"].dtype)).copy()
        bias[columns] = -np.inf
        inputs["bias"] = bias
        mask = np.zeros((prob.rows, C), bool)
        mask[:, columns] = True
    inputs["y"] = y
    return Problem(prob.function, inputs, prob.options), mask


@pytest.mark.parametrize("group", MASKABLE)
@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_a_masked_class_gets_probability_zero_and_gradient_exactly_zero(name, dtype, function, group):
    module = VARIANTS[name]
    prob, mask = masked(problem(function, group, dtype, seed=11), seed=5)
    for reduction, g in (("mean", 1.0), ("sum", -2.0), ("none", np.linspace(-1, 1, prob.rows).astype(dtype))):
        loss, grads = prob.call(module, reduction, g)
        assert np.all(np.isfinite(loss)), (name, reduction, loss)
        for key, value in grads.items():
            assert np.all(np.isfinite(value)), (name, reduction, key)
        if function == "softmax_loss":
            assert np.all(grads["S"][mask] == 0), (name, reduction, grads["S"][mask])
        else:  # a bias of -inf masks a column for every row: its dW column and db entry are 0
            columns = mask[0]
            assert np.all(grads["W"][:, columns] == 0) and np.all(grads["b"][columns] == 0), (name, reduction)
    if function == "softmax_loss":
        P = module.softmax(prob.inputs["S"])
        assert np.all(P[mask] == 0) and np.all(np.isfinite(P))
        agree(P.sum(axis=1), np.ones(prob.rows), prob.dtype, f"{name} softmax rows")
        row = prob.inputs["S"][0]
        J = module.softmax_jacobian(row)
        assert np.all(J[mask[0]] == 0) and np.all(J[:, mask[0]] == 0) and np.all(np.isfinite(J))


@pytest.mark.parametrize("name", NAMES)
def test_padding_the_vocabulary_with_masked_classes_changes_nothing(name):
    module = VARIANTS[name]

    @settings(max_examples=max(2, settings.default.max_examples // (5 if name in ("per_element", "per_row") else 3)))
    @given(
        st.sampled_from(FUNCTIONS),
        st.sampled_from(MASKABLE),
        st.sampled_from(DTYPES),
        st.integers(0, 2**32 - 1),
        st.integers(1, 4),
        st.sampled_from(["mean", "sum", "none"]),
    )
    def check(function, group, dtype, seed, pad, reduction):
        rng = np.random.default_rng(seed)
        prob = problem(function, group, dtype, seed)
        g = rng.standard_normal(prob.rows).astype(dtype) if reduction == "none" else 0.75
        loss, grads = prob.call(module, reduction, g)
        inputs, options = dict(prob.inputs), dict(prob.options)
        C = inputs["S"].shape[1] if "S" in inputs else inputs["W"].shape[1]
        where = np.sort(rng.choice(C + pad, pad, replace=False))  # the padded classes' places among C + pad
        real = np.setdiff1d(np.arange(C + pad), where)
        labels = inputs["y"]
        renumber = None if labels.ndim == 2 else np.where(labels >= 0, real[np.clip(labels, 0, C - 1)], labels)

        def spread(values: np.ndarray, fill: float | np.ndarray, axis: int) -> np.ndarray:
            shape = list(values.shape)
            shape[axis] = C + pad
            out = np.empty(shape, values.dtype)
            np.moveaxis(out, axis, 0)[real] = np.moveaxis(values, axis, 0)
            np.moveaxis(out, axis, 0)[where] = fill
            return out

        if "weight" in options:
            options["weight"] = spread(options["weight"], rng.random(), 0)  # any weight on a masked class
        if function == "softmax_loss":
            if inputs["y"].ndim == 2:
                inputs["y"] = spread(inputs["y"], 0.0, 1)
            else:
                inputs["y"] = renumber
            inputs["S"] = spread(inputs["S"], -np.inf, 1)
        else:
            inputs["y"] = renumber
            W_pad = rng.standard_normal((inputs["W"].shape[0], pad)).astype(dtype)  # any columns of W
            inputs["W"] = spread(inputs["W"], 0.0, 1)
            inputs["W"][:, where] = W_pad
            inputs["bias"] = spread(inputs.get("bias", np.zeros(C, dtype)), -np.inf, 0)
            if "bias" not in prob.inputs:
                grads = {**grads, "b": prob.call(module, reduction, g, bias=np.zeros(C, dtype))[1]["b"]}
        padded_loss, padded = Problem(function, inputs, options).call(module, reduction, g)
        agree(padded_loss, loss, prob.dtype, f"{name} loss")
        for key, value in padded.items():
            if key in ("S", "W", "b"):  # class-indexed: the real classes as before, zeros on the padding
                axis = 0 if key == "b" else 1
                assert np.all(np.take(value, where, axis=axis) == 0), (name, key)
                value = np.take(value, real, axis=axis)
            agree(value, grads[key], prob.dtype, f"{name} d{key}")

    check()


# ------------------------------------------------------------------ when the loss is defined: the contract's errors
S2 = np.array([[0.0, 1.0, -np.inf], [2.0, -np.inf, 0.5]])
ERRORS = [
    ("every class masked", (np.array([[0.0, 1.0, 2.0], [-np.inf] * 3]), [0, -100]), {"ignore_index": -100},
     r"row 1 of scores is -inf at every class"),
    ("label on a masked class", (S2, [0, 1]), {}, r"y\[1\] = 1 is a masked class \(scores\[1, 1\] = -inf\)"),
    ("soft-target mass on a masked class", (S2, np.array([[0.5, 0.5, 0.0], [0.2, 0.1, 0.7]])), {},
     r"y\[1, 1\] = 0.1 puts target mass on class 1, which is masked"),
    ("label smoothing with a mask", (S2, [0, 2]), {"label_smoothing": 0.1}, r"label_smoothing=0.1 puts e/C on every"),
    ("+inf", (np.array([[0.0, np.inf, 1.0]]), [0]), {}, r"scores holds inf at index \(0, 1\); values must be finite "
     r"or -inf \(a masked class\)"),
    ("NaN", (np.array([[0.0, np.nan, 1.0]]), [0]), {}, r"scores holds nan at index \(0, 1\)"),
]  # fmt: skip
LINEAR_ERRORS = [
    ("every class masked", {"bias": [-np.inf] * 3}, r"bias is -inf at every class"),
    ("label on a masked class", {"bias": [0.0, -np.inf, 0.0]}, r"y\[1\] = 1 is a masked class \(bias\[1\] = -inf\)"),
    ("label smoothing with a mask", {"bias": [0.0, 0.0, -np.inf], "label_smoothing": 0.1}, r"label_smoothing=0.1"),
    ("+inf bias", {"bias": [0.0, np.inf, 0.0]}, r"bias holds inf at index \(1,\)"),
    ("NaN bias", {"bias": [0.0, np.nan, 0.0]}, r"bias holds nan at index \(1,\)"),
]


@pytest.mark.parametrize(("case", "args", "keywords", "message"), ERRORS, ids=[e[0] for e in ERRORS])
@pytest.mark.parametrize("name", NAMES)
def test_a_masked_problem_without_a_loss_gets_an_error_that_says_why(name, case, args, keywords, message):
    with pytest.raises(ValueError, match=message):
        VARIANTS[name].softmax_loss(*args, **keywords)


@pytest.mark.parametrize(("case", "keywords", "message"), LINEAR_ERRORS, ids=[e[0] for e in LINEAR_ERRORS])
@pytest.mark.parametrize("name", NAMES)
def test_a_masked_bias_without_a_loss_gets_an_error_that_says_why(name, case, keywords, message):
    with pytest.raises(ValueError, match=message):
        VARIANTS[name].linear_cross_entropy(np.ones((2, 2)), np.ones((2, 3)), [0, 1], **keywords)


@pytest.mark.parametrize("ignore_index", (IGNORE, 4))
@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_an_ignored_row_may_point_at_a_masked_class(name, dtype, function, ignore_index):
    # Its k_i is 0 (eq. 55) and its label is never read, not even as the pointer at class 0 that the variants
    # give an ignored row: the batch is the batch of the kept rows, the ignored rows' gradient 0.
    module = VARIANTS[name]
    rng = np.random.default_rng(8)
    y = np.array([2, ignore_index, 3, ignore_index, 1])
    ignored = y == ignore_index
    options = {"ignore_index": ignore_index, "z_loss": 0.05, "softcap": 3.0, "weight": rng.random(C) + 0.5}
    if function == "softmax_loss":
        S = (2 * rng.standard_normal((5, C))).astype(dtype)
        S[np.ix_(ignored, [0, 4])] = -np.inf  # class 0 (the pointer) and class 4 (maybe the label) masked
        prob = Problem(function, {"S": S, "y": y}, options)
    else:
        bias = rng.standard_normal(C).astype(dtype)
        bias[[0, 4]] = -np.inf  # for every row; the kept labels are 1, 2, 3
        X, W = rng.standard_normal((5, D)).astype(dtype), rng.standard_normal((D, C)).astype(dtype)
        prob = Problem(function, {"X": X, "W": W, "y": y, "bias": bias}, options)
    loss, grads = prob.call(module, "sum")
    kept_loss, kept = prob.subset(~ignored).call(module, "sum")
    agree(loss, kept_loss, prob.dtype, f"{name} loss")
    for key, value in grads.items():
        if key in ("S", "X"):
            assert np.all(value[ignored] == 0), (name, key)
            value = value[~ignored]
        agree(value, kept[key], prob.dtype, f"{name} d{key}")
    losses, _ = prob.call(module, "none")
    assert np.all(losses[ignored] == 0) and np.all(np.isfinite(losses)), (name, losses)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_the_literal_formula_keeps_a_mask_too(name, dtype):
    # stable=False is exp(s) / sum exp(s): exp(-inf) = 0 exactly, so a mask is p = 0 and dS = 0 there as well.
    if name == "compiled":
        pytest.skip("compiled has no stable=False")
    module = VARIANTS[name]
    prob, mask = masked(problem("softmax_loss", "plain", dtype, seed=4), seed=3)
    for group in ("plain", "z_loss"):
        options = {"z_loss": 0.05} if group == "z_loss" else {}
        stable = module.softmax_loss(prob.inputs["S"], prob.inputs["y"], reduction="none", **options)
        literal = module.softmax_loss(prob.inputs["S"], prob.inputs["y"], reduction="none", stable=False, **options)
        assert np.all(literal[1][mask] == 0) and np.all(np.isfinite(literal[1]))
        agree(literal[0], stable[0], prob.dtype, f"{name} loss")
        agree(literal[1], stable[1], prob.dtype, f"{name} dS")


@pytest.mark.parametrize("chunk_size", (1, 2, 3, 4))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_a_chunk_of_only_masked_classes_starts_the_running_max_at_minus_inf(name, dtype, chunk_size):
    # Eq. (26) over chunks whose first ones are all masked: the running max is -inf until a class exists,
    # and exp(-inf - (-inf)) would be NaN; the result is the dense one's (eq. 56, with softcap and z-loss).
    rng = np.random.default_rng(6)
    bias = rng.standard_normal(8).astype(dtype)
    bias[:3] = -np.inf
    inputs = {"X": rng.standard_normal((4, D)).astype(dtype), "W": rng.standard_normal((D, 8)).astype(dtype)}
    prob = Problem("linear_cross_entropy", {**inputs, "y": np.array([3, 7, 5, 4]), "bias": bias}, {"z_loss": 0.1})
    for options in ({}, {"softcap": 2.0}):
        g = np.array([1.0, -2.0, 0.5, 3.0], dtype)
        dense_loss, dense = prob.call(VARIANTS[name], "none", g, **options)
        loss, grads = prob.call(VARIANTS[name], "none", g, chunk_size=chunk_size, **options)
        agree(loss, dense_loss, prob.dtype, f"{name} loss")
        for key, value in grads.items():
            agree(value, dense[key], prob.dtype, f"{name} d{key}")
        assert np.all(grads["W"][:, :3] == 0) and np.all(grads["b"][:3] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tuned_keeps_the_shift_free_window_right_for_any_cotangent(dtype):
    # tuned skips the max shift where it is provably free (README, "Variants"): with the cotangent in the
    # scale, its test must take |g|, let g = 0 through, and still redo a row whose sum overflowed, whatever g.
    from manual import tuned

    S = np.array([[1.0, 2.0, -np.inf, 0.5], [100.0, 99.0, 0.0, -np.inf], [-30.0, -31.0, -np.inf, -29.0]], dtype)
    y = np.array([1, 0, 3])
    _, unit = tuned.softmax_loss(S, y, reduction="none")
    _, reference = VARIANTS["vectorized"].softmax_loss(S, y, reduction="none")
    agree(unit, reference, np.dtype(dtype), "tuned g=1")
    for g in ([1e30, -1e30, 0.0], [-1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [1e-30, 1.0, -1e-30]):
        g = np.array(g, dtype)
        _, dS = tuned.softmax_loss(S, y, reduction="none", grad_output=g)
        assert np.all(np.isfinite(dS)) and np.all(dS[np.isneginf(S)] == 0), (g, dS)
        agree(dS, g[:, None].astype(np.float64) * unit, np.dtype(dtype), f"tuned g={g.tolist()}")


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_soft_capping_keeps_a_mask_at_minus_inf(name, dtype, function):
    # c tanh(-inf / c) = -c would be a class that exists and takes probability e^(-c - m) / sum (eq. 56):
    # with the cap, a masked class 1 must give what the problem without class 1 gives.
    rng = np.random.default_rng(9)
    y, keep = np.array([0, 2, 3, 2]), np.array([0, 2, 3])
    options = {"softcap": 1.5, "z_loss": 0.1}
    g = np.array([1.0, -0.5, 2.0, 0.0], dtype)
    if function == "softmax_loss":
        S = (3 * rng.standard_normal((4, 4))).astype(dtype)
        S[:, 1] = -np.inf
        full = Problem(function, {"S": S, "y": y}, options)
        without = Problem(function, {"S": S[:, keep], "y": np.searchsorted(keep, y)}, options)
    else:
        X, W = rng.standard_normal((4, D)).astype(dtype), (3 * rng.standard_normal((D, 4))).astype(dtype)
        bias = rng.standard_normal(4).astype(dtype)
        bias[1] = -np.inf
        full = Problem(function, {"X": X, "W": W, "y": y, "bias": bias}, options)
        inputs = {"X": X, "W": W[:, keep], "y": np.searchsorted(keep, y), "bias": bias[keep]}
        without = Problem(function, inputs, options)
    loss, grads = full.call(VARIANTS[name], "none", g)
    expected_loss, expected = without.call(VARIANTS[name], "none", g)
    agree(loss, expected_loss, full.dtype, f"{name} loss")
    for key, value in grads.items():
        agree(value[..., keep] if key in ("S", "W", "b") else value, expected[key], full.dtype, f"{name} d{key}")
