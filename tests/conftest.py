"""Shared registries and settings: every test takes its variants and oracles from here.

Hypothesis profiles: ``default`` (fast and deterministic, for every run and CI)
and ``thorough`` (thousands of examples, for using the suite as an oracle before
a release), chosen by the environment variable ``SOFTMAX_GRAD_PROFILE``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import manual
import reference
from softmax_grad.cases import Case

VARIANTS = manual.VARIANTS
ORACLES = reference.ORACLES
DTYPES = (np.float64, np.float32)

settings.register_profile(
    "default",
    max_examples=15,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("SOFTMAX_GRAD_PROFILE", "default"))


_ORACLE_CACHE: dict[tuple[str, str], Any] = {}


@pytest.fixture(scope="session")
def oracle_result():
    """``oracle_result(case, oracle)``: the oracle's output for a standard case, computed once a session."""

    def get(case: Case, oracle: str) -> Any:
        key = (case.id + case.dtype.name, oracle)
        if key not in _ORACLE_CACHE:
            _ORACLE_CACHE[key] = case.call(ORACLES[oracle])
        return _ORACLE_CACHE[key]

    return get
