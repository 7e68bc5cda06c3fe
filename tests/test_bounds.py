"""Verdicts from rounding-error bounds (docs/derivation.md section 9): correct code passes, slips still fail.

The checker judges each output by ``|actual - exact| <= MULTIPLE * bound``,
the bound computed from the case in the dtype under test. These tests hold it
to both sides: the frameworks' own losses and the suite's own variants pass in
float32 where a fixed tolerance failed them (issue 19's four false FAILs), in
bfloat16 and float16 too; every named slip still fails, a 0.1% error fails
even where the logits are near 1000; and float64 keeps its strength.
"""

from __future__ import annotations

import functools
import os

import ml_dtypes
import numpy as np
import pytest
import torch

import manual
from reference.checker import check
from softmax_grad import bounds
from softmax_grad.bounds import MULTIPLE, precision, scores_bounds
from softmax_grad.compare import compare, compare_bounded
from softmax_grad.tolerances import tolerance
from tests.targets import framework_losses as own
from tests.test_check import scores_mean, two_layer
from tests.test_options_mutants import options_loss_with

THOROUGH = os.environ.get("SOFTMAX_GRAD_PROFILE") == "thorough"
WEIGHT = np.array([1.0, 2.0, 0.5, 1.5, 0.25])


# ------------------------------------------------------------------ targets (module level: importable by name)
def vectorized_linear_ce(X, W, y, bias):
    """The suite's own vectorized linear cross-entropy, as a user would wrap it."""
    return manual.VARIANTS["vectorized"].linear_cross_entropy(X, W, y, bias=bias)


def cs231n_two_layer(params, X, y, reg):
    """A correct CS231n two-layer net: the loss as -log(p_y), which is inf where p_y underflows."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    N = X.shape[0]
    hidden = np.maximum(0, X @ W1 + b1)
    scores = hidden @ W2 + b2
    scores = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        loss = -np.log(probs[np.arange(N), y]).mean() + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    dscores = probs.copy()
    dscores[np.arange(N), y] -= 1
    dscores /= N
    dhidden = dscores @ W2.T
    dhidden[hidden <= 0] = 0
    grads = {"W2": hidden.T @ dscores + reg * W2, "b2": dscores.sum(0), "W1": X.T @ dhidden + reg * W1,
             "b1": dhidden.sum(0)}  # fmt: skip
    return loss, grads


def scaled_scores(scores, y, factor=1.001):
    loss, dS = scores_mean(scores, y)
    return loss, (dS * factor).astype(scores.dtype)


def scaled_linear_ce(X, W, y, bias, factor=1.001):
    loss, grads = vectorized_linear_ce(X, W, y, bias)
    return loss, {key: (value * factor).astype(value.dtype) for key, value in grads.items()}


def without_mean(scores, y):
    loss, dS = scores_mean(scores, y)
    return loss, dS * len(y)


def reg_twice(W, X, y, reg):
    """R = reg sum W^2 (reg_scale 1) where the check asks for reg_scale 0.5."""
    loss, dW = manual.VARIANTS["vectorized"].linear_loss(W, X, y, reg=2 * reg)
    return loss, dW


def transposed_dw1(params, X, y, reg):
    return two_layer(params, X, y, reg, transpose_square_dW1=True)


def option_slip(scores, y, edit="", **options):
    loss, dS = options_loss_with(*([edit] if edit else []))(scores, y, **options)
    return loss, dS.astype(scores.dtype)


def probabilities_rounded_first(scores, y):
    """The Liger-Kernel slip (PR 1268): p / N rounded to bfloat16 before the label's -1/N is subtracted."""
    S = scores.astype(np.float32)
    shifted = np.exp(S - S.max(axis=1, keepdims=True))
    p = shifted / shifted.sum(axis=1, keepdims=True)
    N, rows = len(y), np.arange(len(y))
    dS = (p / N).astype(scores.dtype)  # rounded here...
    dS[rows, y] = (dS[rows, y].astype(np.float32) - np.float32(1 / N)).astype(scores.dtype)  # ...then cancelled
    loss = np.mean(np.log(shifted.sum(axis=1)) - (S[rows, y] - S.max(axis=1)))
    return np.float32(loss), dS


def label_entry_in_float32(scores, y):
    """The same kernel done right: p - 1 subtracted in float32, the gradient rounded once."""
    S = scores.astype(np.float32)
    shifted = np.exp(S - S.max(axis=1, keepdims=True))
    p = shifted / shifted.sum(axis=1, keepdims=True)
    N, rows = len(y), np.arange(len(y))
    p[rows, y] -= 1
    loss = np.mean(np.log(shifted.sum(axis=1)) - (S[rows, y] - S.max(axis=1)))
    return np.float32(loss), (p / N).astype(scores.dtype)


class _LigerStyle(torch.autograd.Function):
    """The Liger-Kernel slip in torch: softmax in float32, p / N rounded to the input dtype, then the label's -1/N."""

    @staticmethod
    def forward(ctx, scores, y):
        S = scores.float()
        log_p = torch.log_softmax(S, dim=1)
        rows = torch.arange(len(y))
        ctx.save_for_backward(log_p, y)
        ctx.dtype = scores.dtype
        return (-log_p[rows, y].mean()).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad):
        log_p, y = ctx.saved_tensors
        N, rows = len(y), torch.arange(len(y))
        dS = (log_p.exp() / N).to(ctx.dtype)  # rounded here...
        dS[rows, y] = (dS[rows, y].float() - 1.0 / N).to(ctx.dtype)  # ...then cancelled
        return grad.to(ctx.dtype) * dS, None


def torch_liger_style(scores, y):
    return _LigerStyle.apply(scores, y)


# ------------------------------------------------------------------ issue 19's four false FAILs
@pytest.mark.parametrize("seed", range(6) if THOROUGH else (0,))
def test_torch_cross_entropy_with_smoothing_and_ignore_index_passes_in_float32(seed):
    target = functools.partial(own.torch_linear_ce, label_smoothing=0.1, ignore_index=-100)
    report = check(target, "linear_ce", framework="torch", dtype="float32", seed=seed, label_smoothing=0.1,
                   ignore_index=-100)  # fmt: skip
    assert report.passed, report.format()
    far = next(c for c in report.cases if c.name == "rows 1000 apart in offset")
    assert 0 < far.bound_ratio < 1, far.ratios  # it fails the old table (W off by 5.6e-5): judged by its bound


def test_the_suites_own_vectorized_linear_cross_entropy_passes_in_float32():
    report = check(vectorized_linear_ce, "linear_ce", framework="numpy", dtype="float32")
    assert report.passed, report.format()


def per_element_scores_smoothed(scores, y):
    """The suite's own loop variant: smoothing's sum of C weights added one term at a time."""
    return manual.VARIANTS["per_element"].softmax_loss(scores, y, label_smoothing=0.1)


def test_a_loop_adding_smoothings_tiny_terms_one_by_one_passes_in_float32():
    # Found by benchmarks/margins.py: at C = 4799 this correct loop is off by about 1300 u relative, 8.6 of the
    # lane-wise bound of sums of positive terms; eq. (32)'s worst case, (C - 1) u, covers it.
    report = check(per_element_scores_smoothed, "scores", framework="numpy", dtype="float32", label_smoothing=0.1)
    assert report.passed, report.format()
    wide = next(c for c in report.cases if c.name.startswith("a wide vocabulary"))
    assert wide.bound_ratio > 0.05, wide.ratios  # the loop's error is a real share of the bound, not lost in it


def test_plain_jax_autodiff_of_a_soft_capped_loss_passes_in_float32():
    report = check(functools.partial(own.jax_scores, softcap=30.0), "scores", framework="jax", dtype="float32",
                   softcap=30.0)  # fmt: skip
    assert report.passed, report.format()


def test_a_correct_cs231n_net_in_float32_warns_where_p_y_underflows_and_passes():
    report = check(cs231n_two_layer, "two_layer", dtype="float32")
    assert report.passed, report.format()
    far = next(c for c in report.cases if c.name == "rows 1000 apart in offset")
    assert far.status == "warn" and "underflows to 0 in float32" in far.warnings[0], report.format()
    assert "log-sum-exp" in far.warnings[0]


# ------------------------------------------------------------------ low precision
# (framework, kind, dtype, z_loss); float16 with the z-loss meets lse^2 past 65504 on a correctness case.
LOW_PRECISION_SAMPLE = [("torch", "scores", "bfloat16", 0.0), ("torch", "linear_ce", "float16", 0.01)]
LOW_PRECISION_ALL = [
    (framework, kind, dtype, z_loss)
    for framework in ("torch", "jax")
    for kind in ("scores", "linear_ce")
    for dtype in ("bfloat16", "float16")
    for z_loss in (0.0, 0.01)
]


@pytest.mark.parametrize(
    ("framework", "kind", "dtype", "z_loss"), LOW_PRECISION_ALL if THOROUGH else LOW_PRECISION_SAMPLE
)
def test_the_frameworks_own_losses_pass_in_low_precision(framework, kind, dtype, z_loss):
    target = functools.partial(own.TARGETS[(framework, kind)], z_loss=z_loss)
    report = check(target, kind, framework=framework, dtype=dtype, z_loss=z_loss)
    assert report.passed, report.format()
    assert all(c.own_ratios for c in report.cases if c.name != "every row ignored")
    assert "your error / the framework's own" in report.format()
    if z_loss and dtype == "float16":  # lse = 1000 on a correctness case: lse^2 = 1e6 is inf in float16
        apart = next(c for c in report.cases if c.name == "rows 1000 apart in offset")
        assert apart.tier == "correctness" and apart.status == "warn", apart
        assert "the z-loss needs lse_i^2 up to 1e+06, past float16's largest number (65504)" in apart.warnings[0]


def test_jaxs_own_bfloat16_loss_passes_within_its_own_error_as_torchs_does():
    # The yardstick is JAX's plain log_softmax loss, whose autodiff forms p_y - 1 by cancellation (not the
    # oracle's eq. 30, against which the plain loss failed at 123 times its bound, C=2, measured).
    report = check(own.jax_scores, "scores", framework="jax", dtype="bfloat16")
    assert report.passed, report.format()
    assert max(c.bound_ratio for c in report.cases) > 10 * MULTIPLE
    assert any("within jax's own bfloat16 error" in t for c in report.cases for t in c.within_own.values())


def test_the_label_entry_rounded_before_its_cancellation_fails_in_bfloat16():
    # p_y / N rounded to bfloat16, then -1/N: the entry loses everything when p_y is near 1 (Liger-Kernel
    # PR 1268, 100% relative error at p_y = 0.999). NumPy has no framework yardstick: the bound alone judges.
    report = check(probabilities_rounded_first, "scores", framework="numpy", dtype="bfloat16")
    assert not report.passed, report.format()
    failed = [c for c in report.cases if c.status == "FAIL"]
    assert max(c.bound_ratio for c in failed) > 10 * MULTIPLE
    messages = [m for c in failed for m in c.messages]
    assert any("only in the label entries p_y - 1" in m for m in messages), messages
    assert not any("different function" in m for m in messages), messages
    # The same kernel with p - 1 taken in float32 and rounded once passes.
    assert check(label_entry_in_float32, "scores", framework="numpy", dtype="bfloat16").passed


def test_torch_bfloat16_has_the_same_cancellation_on_cpu_so_it_is_the_yardstick():
    # On CPU, torch's own bfloat16 cross-entropy rounds p_y before subtracting 1 (dS_y = 0 at p_y = 0.998):
    # the bound alone would fail it, and the framework's own error is what lets it pass.
    report = check(own.torch_scores, "scores", framework="torch", dtype="bfloat16")
    assert report.passed
    assert max(c.bound_ratio for c in report.cases) > MULTIPLE
    assert max(max(c.own_ratios.values(), default=0) for c in report.cases) <= 1.0


def test_torchs_own_bfloat16_loss_passes_only_within_its_own_error_and_strict_fails_it_on_cpu():
    # On CPU, torch's bfloat16 cross-entropy rounds its log-probabilities to bfloat16 and loses p_y - 1 at the
    # rows certain of their label: it passes against itself, and the report says that this is all it passes by.
    report = check(own.torch_scores, "scores", framework="torch", dtype="bfloat16")
    assert report.passed, report.format()
    allowed = [c for c in report.cases if c.within_own]
    assert allowed and all(c.status == "pass" for c in allowed)
    said = [text for c in allowed for text in c.within_own.values()]
    assert any("beyond its rounding bound (ratio" in t and "within torch's own bfloat16 error (ratio" in t
               for t in said), said  # fmt: skip
    assert any("p_y - 1 by cancellation" in t for t in said), said
    text = report.format()
    assert "only within torch's own bfloat16 error, beyond their rounding bound" in text  # the summary line
    assert "within torch's own error only" in text  # the table
    assert any(case["within_own"] for case in report.to_dict()["cases"])  # --json
    # Judged by the bound alone, it fails at the rows certain of their label, and the diagnosis says why.
    strict = check(own.torch_scores, "scores", framework="torch", dtype="bfloat16", strict=True)
    assert not strict.passed, strict.format()
    assert not any(c.within_own for c in strict.cases)
    certain = next(c for c in strict.cases if c.name.startswith("label certain"))
    assert certain.status == "FAIL"
    assert any("p_y - 1 by cancellation" in m for m in certain.messages), certain.messages
    assert "alone (strict" in strict.format()


def test_a_torch_liger_style_kernel_fails_in_bfloat16_beside_torchs_own_error():
    # p / N rounded before the -1/N: at p_y = 1 - 1e-6 its label entry is off by u/N, where torch's own is off by
    # 1e-6/N; the allowance is entry by entry, so it does not cover the kernel (measured on CPU, torch 2.13).
    report = check(torch_liger_style, "scores", framework="torch", dtype="bfloat16")
    assert not report.passed, report.format()
    certain = next(c for c in report.cases if c.name.startswith("label certain"))
    assert certain.status == "FAIL" and certain.bound_ratio > 100 * MULTIPLE, certain.ratios
    assert any("p_y - 1 by cancellation" in m for m in certain.messages), certain.messages
    assert not any("different function" in m for c in report.cases for m in c.messages)


def test_torchs_own_float32_loss_needs_no_allowance():
    report = check(own.torch_scores, "scores", framework="torch", dtype="float32")
    assert report.passed and not any(c.within_own for c in report.cases)


# ------------------------------------------------------------------ what must still fail
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    ("fn", "kind", "options"),
    [
        (scaled_scores, "scores", {}),
        (without_mean, "scores", {}),
        (reg_twice, "linear", {}),
        (transposed_dw1, "two_layer", {}),
        (functools.partial(option_slip, edit="smoothing_unweighted", weight=WEIGHT, label_smoothing=0.1), "scores",
         {"weight": WEIGHT, "label_smoothing": 0.1}),
        (functools.partial(option_slip, edit="ignored_counted", ignore_index=-100), "scores", {"ignore_index": -100}),
        (functools.partial(option_slip, edit="z_without_2", z_loss=0.01), "scores", {"z_loss": 0.01}),
        (functools.partial(option_slip, edit="softcap_factor_missing", softcap=5.0), "scores", {"softcap": 5.0}),
    ],
    ids=[
        "0.1% error",
        "1/N missing",
        "reg twice",
        "square dW1 transposed",
        "smoothing without class weights",
        "ignored rows counted",
        "z-loss without its 2",
        "softcap without 1 - tanh^2",
    ],
)
def test_every_named_slip_still_fails(fn, kind, options, dtype):
    report = check(fn, kind, framework="numpy", dtype=dtype, **options)
    assert not report.passed, report.format()


@pytest.mark.parametrize(("fn", "kind"), [(scaled_scores, "scores"), (scaled_linear_ce, "linear_ce")])
def test_a_tenth_of_a_percent_fails_where_the_logits_are_near_1000_in_float32(fn, kind):
    # Where the bound is widest: logits of magnitude 1000 carry an absolute error near 6e-5 in float32.
    report = check(fn, kind, framework="numpy", dtype="float32")
    spread = next(c for c in report.cases if c.name == "logit spread 1000")
    assert spread.status == "FAIL", report.format()
    control = check(functools.partial(fn, factor=1.0), kind, framework="numpy", dtype="float32")
    assert next(c for c in control.cases if c.name == "logit spread 1000").status == "pass"


def test_an_error_of_a_few_bounds_is_never_called_a_different_function():
    report = check(functools.partial(scaled_scores, factor=1 + 3e-6), "scores", framework="numpy", dtype="float32")
    messages = [m for c in report.cases for m in c.messages]
    assert not report.passed and messages, report.format()
    assert not any("different function" in m for m in messages)
    assert any("of its rounding-error bound" in m for m in messages), messages


def wrong_in_rows_of_large_logits(scores, y):
    """Right everywhere but in the rows whose logits are near 1000, where it is 1% off."""
    loss, dS = scores_mean(scores, y)
    large = np.abs(scores).max(axis=1) >= 100
    dS[large] *= 1.01
    return loss, dS


def test_an_error_only_in_rows_of_large_logits_is_named_as_such():
    report = check(wrong_in_rows_of_large_logits, "scores", framework="numpy", dtype="float32")
    far = next(c for c in report.cases if c.name == "rows 1000 apart in offset")
    assert far.status == "FAIL"
    assert any("only in rows of large logits" in m for m in far.messages), far.messages


# ------------------------------------------------------------------ the bound's strength, pinned
def test_the_multiple_is_two():
    bound = np.array([1.0])
    assert compare_bounded(np.array([1.9]), np.array([0.0]), bound, label="x").ok
    assert not compare_bounded(np.array([2.1]), np.array([0.0]), bound, label="x").ok


def test_float64_bounds_stay_within_a_few_dozen_roundoffs_of_each_entry():
    # The float64 bound of a moderate case is a few dozen u times the entry's size: a bound loosened 100x
    # would let a 1e-12 error through; this pins it, as the table's rows are pinned below.
    rng = np.random.default_rng(0)
    S, y = 3 * rng.standard_normal((40, 7)), rng.integers(0, 7, 40)
    u = precision("float64").u
    loss_bound, dS, bound = scores_bounds(S, y, np.zeros_like(S), precision("float64"))
    relative = bound / np.abs(dS)
    assert u < np.median(relative) < 64 * u and relative.min() > u
    assert loss_bound < 64 * u * 3


@pytest.mark.parametrize("kind", ["scores", "linear", "two_layer", "linear_ce"])
def test_a_float64_result_off_by_1e_9_fails_every_output_of_the_checker(kind):
    from reference.checker import battery, checking, kinds, oracle

    spec = kinds.get(kind)
    case = battery.battery(kind, 0)[-3]
    settings = checking.Settings.of(kind, dtype="float64", reduction="mean", reg_scale=0.5)
    expected = checking._Oracle(spec, case, settings, checking.padding_sizes(spec, [case]))
    loss, grads = expected()
    limits = expected.bounds()
    for name, value in {"loss": np.asarray(loss), **grads}.items():
        off = value * (1 + 1e-9)
        assert not compare_bounded(off, value, limits[name], label=name).ok, (kind, name)
    assert set(limits) == {"loss", *grads}
    del oracle


def test_the_float64_table_catches_1e_9_and_its_absolute_term_is_pinned():
    # issue 20 item 6: loosening the float64 row 1000x, or its absolute term 10x, went unnoticed.
    tol = tolerance(np.float64, "autodiff")
    expected = np.array([1.0, -0.5, 0.25, 0.0])
    assert not compare(expected * (1 + 1e-9), expected, tol, label="dS", gradient=True).ok
    assert not compare(expected * (1 + 1e-9), expected, tol, label="loss").ok
    at_zero = expected.copy()
    at_zero[3] = 0.5 * tol.atol  # inside the absolute term (atol times the largest entry, 1)...
    assert compare(at_zero, expected, tol, label="dS", gradient=True).ok
    at_zero[3] = 2 * tol.atol  # ...and past it
    assert not compare(at_zero, expected, tol, label="dS", gradient=True).ok
    assert tol.atol <= 1e-12 and tol.rtol <= 1e-11


def test_bfloat16_arrays_are_read_by_value():
    value = np.array([1.0, 2.5], dtype=ml_dtypes.bfloat16)
    assert compare_bounded(value, np.array([1.0, 2.5]), np.zeros(2), label="x").ok
    assert bounds.dtype_name(value.dtype) == "bfloat16"


def test_the_suites_float32_comparisons_with_autodiff_are_judged_by_bounds():
    import reference
    from softmax_grad.cases import compare_results, standard_cases

    case = next(c for c in standard_cases() if c.function == "linear_loss").astype(np.float32)
    result = case.call(manual.VARIANTS["vectorized"])
    judged = compare_results(case, result, case.call(reference), "autodiff", "vectorized")
    assert all(c.ok and np.isfinite(c.ratio) and c.ratio < 1 for c in judged), [c.message for c in judged]
    off = (result[0], result[1] * np.float32(1.001))
    assert not all(c.ok for c in compare_results(case, off, case.call(reference), "autodiff", "off"))
    case64 = next(c for c in standard_cases() if c.function == "linear_loss")
    table = compare_results(case64, case64.call(manual.VARIANTS["vectorized"]), case64.call(reference), "autodiff", "")
    assert all(np.isnan(c.ratio) for c in table)  # float64 keeps the table, pinned above
