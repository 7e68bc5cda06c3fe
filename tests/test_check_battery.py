"""The battery meets the sizes and regimes kernels meet: wrong kernels fail there, and the battery's own parts
cannot quietly shrink (each test below killed a mutant of the battery that survived the rest of the suite).
"""

from __future__ import annotations

import numpy as np
import pytest

from reference.checker import check
from reference.checker.battery import CERTAIN, CORRECTNESS, LARGE_REG, REGS, battery
from tests.targets import numpy_targets, wrong_kernels


@pytest.mark.parametrize(
    ("fn", "kind", "failing"),
    [
        (wrong_kernels.online_lse_without_rescale, "scores", "a wide vocabulary"),
        (wrong_kernels.chunked_tail_bias_from_zero, "linear_ce", "a wide vocabulary"),
        (wrong_kernels.wrong_past_8_classes, "scores", "a wide vocabulary"),
        (wrong_kernels.row_blocks_of_80, "scores", "N="),
    ],
    ids=["online lse without rescale", "tail chunk bias from 0", "wrong past 8 classes", "row blocks of 80"],
)
def test_kernels_wrong_only_at_kernel_sizes_fail(fn, kind, failing):
    report = check(fn, kind)
    assert not report
    assert report.first_failure.name.startswith(failing), str(report)
    assert all(c.tier == CORRECTNESS for c in report.failures)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_kind_has_a_batch_past_128_rows_that_no_block_size_divides(seed):
    for kind in ("scores", "linear", "two_layer", "linear_ce"):
        rows = [len(c.labels) for c in battery(kind, seed)]
        assert any(130 <= n < 300 and n % 8 for n in rows), (kind, rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_and_linear_ce_have_a_wide_class_count_that_no_chunk_width_divides(seed):
    for kind, axis in (("scores", "scores"), ("linear_ce", "W")):
        widths = [c.inputs[axis].shape[1] for c in battery(kind, seed)]
        assert any(w > 4096 and w % 2 for w in widths), (kind, widths)
        uniform = next(c for c in battery(kind, seed) if c.name.startswith("near-uniform"))
        logits = uniform.inputs["scores"] if kind == "scores" else uniform.inputs["X"] @ uniform.inputs["W"]
        assert logits.shape[1] >= 4096 and np.ptp(logits, axis=1).max() < 0.1


@pytest.mark.parametrize("kind", ["scores", "linear_ce"])
def test_rows_with_a_certain_label_reach_each_level(kind):
    case = next(c for c in battery(kind, 0) if c.name.startswith("label certain"))
    S = case.inputs["scores"] if kind == "scores" else case.inputs["X"] @ case.inputs["W"] + case.inputs["bias"]
    p = np.exp(S - S.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    gap = 1 - p[np.arange(len(case.labels)), case.labels]
    for delta in CERTAIN:
        assert np.isclose(gap, delta, rtol=1e-6).any(), (delta, gap)


def test_the_penalty_is_tried_small_moderate_above_1_and_large():
    # At a reg above 1 penalty and data term are of one size; at a large one the penalty dominates.
    assert REGS == (0.05, 0.3, 1.7) and LARGE_REG >= 10
    for kind in ("linear", "two_layer"):
        named = {c.inputs["reg"] for c in battery(kind, 0) if c.name.startswith("reg ")}
        assert any(0 < r < 0.1 for r in named) or kind == "two_layer", (kind, named)
        assert any(1 < r < 10 for r in named) and any(r >= 10 for r in named), (kind, named)


def test_ignored_rows_are_several_per_case_so_counting_all_but_the_first_fails():
    with np.errstate(invalid="ignore"):
        right = check(numpy_targets.ignored_rows, "scores", ignore_index=-100)
        wrong = check(
            lambda S, y: numpy_targets.ignored_rows(S, y, count_after_the_first=True), "scores", ignore_index=-100
        )
    assert right, str(right)
    assert any(c.tier == CORRECTNESS for c in wrong.failures), str(wrong)


def test_a_finite_loss_where_every_row_is_ignored_warns():
    with np.errstate(invalid="ignore"):
        report = check(lambda S, y: numpy_targets.ignored_rows(S, y, empty_loss=0.0), "scores", ignore_index=-100)
    assert report and [c.name for c in report.warned] == ["every row ignored"], str(report)
    assert "the loss is 0.0 where no row is kept; the mean of nothing is NaN" in report.warned[0].warnings
