"""The checker at cotangents other than 1 and on masked classes (docs/derivation.md eqs. 54-56).

The four backward slips that shipped in fused cross-entropy kernels fail, each
named by the case that caught it; torch's ``F.cross_entropy`` (after
``F.linear``) and plain JAX autodiff pass at random cotangents, "none"
included; a soft-cap that turns a mask into ``-c`` fails. Checks are costly:
each report is made once (``reports``) and read by several tests.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from reference.checker import battery as cases_of
from reference.checker import check, oracle
from reference.checker.kinds import get as kind
from softmax_grad import bounds

targets = pytest.importorskip("tests.targets.vjp_targets")  # torch is an optional extra

NONE = {"reduction": "none"}
TARGETS = {
    # name: (function, kind, framework, check options)
    "F.cross_entropy, none": (functools.partial(targets.torch_cross_entropy, reduction="none"), "scores", "torch",
                              NONE),
    "custom backward, none": (functools.partial(targets.custom_cross_entropy, reduction="none"), "scores", "torch",
                              NONE),
    "ignores grad_output": (functools.partial(targets.custom_cross_entropy, reduction="none",
                                              slip="ignores grad_output"), "scores", "torch", NONE),
    "grad_output[0] for every row": (functools.partial(targets.custom_cross_entropy, reduction="none",
                                                       slip="grad_output[0] for every row"), "scores", "torch", NONE),
    "skips the backward at 1": (functools.partial(targets.custom_cross_entropy, slip="skips the backward at 1"),
                                "scores", "torch", {}),
    "F.linear + F.cross_entropy, none": (functools.partial(targets.torch_linear_cross_entropy, reduction="none"),
                                         "linear_ce", "torch", NONE),
    "dW scaled, dX not": (functools.partial(targets.custom_linear_cross_entropy, reduction="none", slip="dX"),
                          "linear_ce", "torch", NONE),
    "JAX autodiff, none": (functools.partial(targets.jax_cross_entropy, reduction="none"), "scores", "jax", NONE),
    "NumPy with grad_output": (targets.numpy_vjp, "scores", "numpy", {}),
    "NumPy ignoring grad_output": (targets.numpy_vjp_ignored, "scores", "numpy", {}),
    "softcap keeps the mask": (targets.torch_softcapped, "scores", "torch", {"softcap": 30.0}),
    "softcap turns the mask into -c": (targets.torch_softcaps_the_mask, "scores", "torch", {"softcap": 30.0}),
}  # fmt: skip


@pytest.fixture(scope="module")
def reports():
    made = {}

    def report(name):
        if name not in made:
            fn, kind_name, framework, options = TARGETS[name]
            made[name] = check(fn, kind_name, framework=framework, **options)
        return made[name]

    return report


# Controls that other tests already stand for in the default run (test_check_frameworks' soft-capped torch
# loss keeps its masks; the custom backward without a slip is the NumPy rule's twin): thorough profile only.
THOROUGH = os.environ.get("SOFTMAX_GRAD_PROFILE") == "thorough"
ONLY_THOROUGH = pytest.mark.skipif(not THOROUGH, reason="SOFTMAX_GRAD_PROFILE=thorough runs it")


@pytest.mark.parametrize(
    "name",
    ["F.cross_entropy, none", "custom backward, none", "F.linear + F.cross_entropy, none", "JAX autodiff, none",
     pytest.param("NumPy with grad_output", marks=ONLY_THOROUGH),
     pytest.param("softcap keeps the mask", marks=ONLY_THOROUGH)],
)  # fmt: skip
def test_right_backwards_pass_at_random_cotangents(reports, name):
    report = reports(name)
    assert report.passed, str(report)
    assert any("-inf" in case.name for case in report.cases)  # the masked lanes were among the cases


# (mutant, the first case that catches it, what the verdict says)
MUTANTS = [
    ("ignores grad_output", "N=1", "dscores ignores grad_output"),
    ("grad_output[0] for every row", "C=2", "dscores uses grad_output[0] for every row"),
    ("skips the backward at 1", "C=2", "dscores"),  # at N = 1 a second 1/N is 1
    ("dW scaled, dX not", "N=1", "X ignores grad_output"),
    ("NumPy ignoring grad_output", "N=1", "dscores ignores grad_output"),
    ("softcap turns the mask into -c", "vocabulary padded with -inf (4717 classes of 4799)", "loss"),
]


@pytest.mark.parametrize(("name", "caught_by", "said"), MUTANTS, ids=[m[0] for m in MUTANTS])
def test_backward_slips_fail_where_the_cotangent_or_the_mask_shows_them(reports, name, caught_by, said):
    report = reports(name)
    assert not report.passed
    failure = report.first_failure
    assert failure.name == caught_by, str(report)
    assert any(message.startswith(said) for message in failure.messages), failure.messages


def test_a_backward_scaling_dw_but_not_dx_is_told_which(reports):
    messages = reports("dW scaled, dX not").first_failure.messages
    assert any(m.startswith("X: values differ") for m in messages)
    assert not any(m.startswith("W:") or m.startswith("W ") for m in messages), messages


def test_the_mutant_that_skips_its_backward_at_1_passes_where_the_cotangent_is_1():
    """The control: at cotangent 1 (a NumPy-style judgement) the skip is invisible; only g != 1 catches it."""
    import torch

    scores = torch.tensor(np.random.default_rng(0).standard_normal((6, 5)), requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    for slip, expected in (("skips the backward at 1", True), ("", True)):
        scores.grad = None
        targets.custom_cross_entropy(scores, y, slip=slip).backward()
        right = torch.autograd.grad(torch.nn.functional.cross_entropy(scores, y), scores)[0]
        assert torch.allclose(scores.grad, right) is expected


def test_none_is_refused_for_kinds_with_a_penalty():
    with pytest.raises(ValueError, match="reduction='none' is for the kinds"):
        check(targets.numpy_vjp, "linear", reduction="none")


def test_cotangents_are_never_1_and_none_mixes_signs_and_zeros():
    battery = cases_of.battery("scores", 0, reduction="none")
    for case in battery:
        g = case.grad_output
        assert g.shape == case.labels.shape and not np.any(np.abs(g) == 1.0)
        if len(g) >= 3:
            assert (g > 0).any() and (g < 0).any() and (g == 0).any()
    scalars = [case.grad_output for case in cases_of.battery("linear_ce", 0, reduction="mean")]
    assert all(0.5 <= abs(g) <= 3 and abs(g) != 1 for g in scalars) and min(scalars) < 0 < max(scalars)
    assert all(case.grad_output is None for case in cases_of.battery("linear", 0, reduction="mean"))
    assert not any("-inf" in case.name for case in cases_of.battery("scores", 0, masks=False))


def test_the_oracle_on_masked_lanes_is_the_oracle_without_them():
    """Eq. (56), checked against the same loss over only the classes that exist (and the softcap keeps -inf)."""
    rng = np.random.default_rng(3)
    S = 3.0 * rng.standard_normal((5, 8)) - np.array([[60.0], [0.0], [5.0], [-3.0], [40.0]])
    y = np.array([0, 1, 2, 3, 4])
    masked = S.copy()
    masked[:, 6:] = -np.inf
    g = np.array([1.5, 0.0, -2.0, 0.75, -0.5])
    spec = kind("scores")
    for softcap in (None, 30.0):
        options = {"weight": None, "ignore_index": None, "label_smoothing": 0.0, "z_loss": 1e-3, "softcap": softcap}
        loss, grads = oracle.expected(spec, (masked, y), reduction="none", options=options, grad_output=g)
        kept_loss, kept = oracle.expected(spec, (S[:, :6], y), reduction="none", options=options, grad_output=g)
        np.testing.assert_allclose(loss, kept_loss, rtol=1e-13)
        np.testing.assert_allclose(grads["dscores"][:, :6], kept["dscores"], rtol=1e-12, atol=1e-300)
        assert np.all(grads["dscores"][:, 6:] == 0.0) and np.all(grads["dscores"][1] == 0.0)


def test_the_oracle_none_and_its_vjp_agree_with_sum_and_the_scaled_gradient():
    rng = np.random.default_rng(4)
    S, y = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    options = {"weight": np.array([1.0, 2.0, 0.5, 1.5, 0.25]), "ignore_index": 2, "label_smoothing": 0.0,
               "z_loss": 0.0, "softcap": None}  # fmt: skip
    spec = kind("scores")
    g = rng.uniform(-2, 2, 6)
    rows, vjp = oracle.expected(spec, (S, y), reduction="none", options=options, grad_output=g)
    total, grad = oracle.expected(spec, (S, y), reduction="sum", options=options)
    assert rows[y == 2].tolist() == [0.0] * int(np.sum(y == 2))
    np.testing.assert_allclose(rows.sum(), total, rtol=1e-14)
    _, each = oracle.expected(spec, (S, y), reduction="sum", options=options, grad_output=-1.25)
    np.testing.assert_allclose(each["dscores"], -1.25 * grad["dscores"], rtol=1e-14)
    for i in range(6):  # row i of the VJP is g_i times row i's own gradient (eq. 54)
        _, row = oracle.expected(spec, (S[i : i + 1], y[i : i + 1]), reduction="sum", options=options)
        np.testing.assert_allclose(vjp["dscores"][i], g[i] * row["dscores"][0], rtol=1e-13, atol=1e-300)


def test_bounds_at_a_cotangent_scale_by_it_and_vanish_with_it_and_on_masks():
    rng = np.random.default_rng(5)
    S = rng.standard_normal((4, 6))
    S[:, 4:] = -np.inf
    y = np.array([0, 1, 2, 3])
    prec = bounds.precision("float32")
    g = np.array([2.0, 0.0, -0.5, 1.0])
    loss, dS, bound = bounds.scores_bounds(S, y, np.zeros_like(S), prec, reduction="none", grad_output=g)
    _, dS1, bound1 = bounds.scores_bounds(S, y, np.zeros_like(S), prec, reduction="none")
    assert loss.shape == (4,) and np.all(loss > 0)
    np.testing.assert_allclose(dS, g[:, None] * dS1)
    assert np.all(dS[1] == 0) and np.all(bound[1] <= prec.tiny)  # g_i = 0: exactly 0, beside the flush floor
    assert np.all(bound[:, 4:] == 0) and np.all(dS[:, 4:] == 0)
    assert np.all(bound[0, :4] >= 2 * bound1[0, :4]) and np.all(bound[0, :4] < 3 * bound1[0, :4])
