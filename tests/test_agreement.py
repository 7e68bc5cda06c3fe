"""Every variant against every oracle, on every standard case, in float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest

from softmax_grad.cases import compare_results, standard_cases
from tests.conftest import DTYPES, ORACLES, VARIANTS

CASES = standard_cases()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("oracle", ORACLES)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_agrees_with_oracle(variant, case, oracle, dtype, oracle_result):
    case = case.astype(dtype)
    actual = case.call(VARIANTS[variant])
    comparisons = compare_results(case, actual, oracle_result(case, oracle), oracle, f"{variant}.{case.id}")
    failures = [c.message for c in comparisons if not c.ok]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_oracles_agree_with_each_other(case, oracle_result):
    # Two independent oracles that agree make a shared blind spot unlikely.
    comparisons = compare_results(
        case,
        oracle_result(case, "autodiff"),
        oracle_result(case, "finite_differences"),
        "finite_differences",
        f"autodiff vs finite differences, {case.id}",
    )
    failures = [c.message for c in comparisons if not c.ok]
    assert not failures, "\n".join(failures)
