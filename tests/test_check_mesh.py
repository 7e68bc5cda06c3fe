"""``check(..., mesh=...)`` and ``softmax-grad check --mesh``: a user's sharded JAX loss on simulated devices.

Each check starts a fresh child with 8 simulated CPU devices (``reference.checker.mesh``);
the targets are ``jax.shard_map`` losses in ``tests/targets/mesh_targets.py``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from reference.checker import CheckError, check
from reference.checker.mesh import parse
from softmax_grad.cli import main
from tests.targets import numpy_targets
from tests.targets.mesh_targets import SMOOTHING

TARGETS = "tests/targets/mesh_targets.py"


def _failure(report) -> str:
    assert not report, report.format()
    return "\n".join(report.first_failure.messages)


THOROUGH = pytest.mark.skipif(os.environ.get("SOFTMAX_GRAD_PROFILE") != "thorough", reason="a mesh check: thorough")


def test_a_right_smoothed_loss_passes_from_check():
    report = check(f"{TARGETS}:vocab_parallel_smoothed", "linear_ce", mesh=(2, 4), label_smoothing=SMOOTHING)
    assert report, report.format()
    assert len(report.cases) >= 8  # the battery's classes are a multiple of 4: most cases run
    assert "simulated 2x4 mesh" in report.format() and "not run there: 'N=1'" in report.format()  # 1 row, 2 shards


@THOROUGH  # the command line's --mesh reaches check(): test_a_bad_mesh_spelling_is_refused, in the default run
def test_a_right_shard_map_loss_passes_from_the_command_line(capsys):
    status = main(["check", f"{TARGETS}:vocab_parallel", "--kind", "linear_ce", "--mesh", "2x4"])
    assert status == 0, capsys.readouterr().out[-3000:]


def test_smoothing_over_the_local_slice_is_named():
    report = check(f"{TARGETS}:local_slice_smoothing", "linear_ce", mesh="2x4", label_smoothing=SMOOTHING)
    assert "label-smoothing term is 4 times the oracle's" in _failure(report)
    assert "Megatron" in _failure(report)


def test_a_pmean_where_the_psum_of_exponentials_belongs_is_named():
    report = check(f"{TARGETS}:pmean_sum_exp", "linear_ce", mesh="2x4")
    assert "log 4 = 1.386 below" in _failure(report) and "pmean" in _failure(report)


@pytest.mark.parametrize("spelling", ["2by4", "0x4", "2x3x1", "x4", "100x1", "-2"])
def test_a_bad_mesh_spelling_is_refused(spelling, capsys):
    with pytest.raises(ValueError, match="mesh"):
        parse(spelling)
    assert main(["check", f"{TARGETS}:vocab_parallel", "--kind", "linear_ce", "--mesh", spelling]) == 2
    assert "mesh" in capsys.readouterr().err


def test_mesh_spellings():
    assert parse("2x4") == (2, 4) and parse("8") == (1, 8) and parse(8) == (1, 8) and parse([8, 1]) == (8, 1)
    with pytest.raises(TypeError, match="mesh"):
        parse(2.0)


def test_a_numpy_or_torch_target_gets_a_clear_error(capsys):
    with pytest.raises(CheckError, match=r"JAX targets only.*numpy"):
        check(numpy_targets.scores_mean, "scores", mesh="2x4")
    assert main(["check", "tests/targets/torch_targets.py:custom_function", "--kind", "scores", "--framework",
                 "torch", "--mesh", "2x4"]) == 2  # fmt: skip
    assert "JAX targets only" in capsys.readouterr().err


def test_a_kind_without_classes_to_split_is_refused():
    with pytest.raises(ValueError, match="mesh applies to kinds"):
        check(f"{TARGETS}:vocab_parallel", "linear", mesh="2x4")
    with pytest.raises(ValueError, match="weight's 5 classes do not split over 4"):
        check(f"{TARGETS}:vocab_parallel", "linear_ce", mesh="2x4", weight=np.ones(5))


@THOROUGH
def test_dx_without_its_all_reduce_is_named():
    report = check(f"{TARGETS}:dx_without_all_reduce", "linear_ce", mesh="2x4")
    assert "dX is vocabulary block 0's term" in _failure(report) and "psum over 'vocab'" in _failure(report)
