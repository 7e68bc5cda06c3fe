"""The one tolerance table of the suite, keyed by dtype and by kind of comparison.

An entry passes when, element by element,

    |actual - expected| <= rtol * |expected| + atol * max|expected| + floor

``rtol`` bounds the error of each entry relative to itself; ``atol`` bounds it
relative to the largest entry of the same array (cancellation in a sum such as
``H1^T dS`` leaves small entries with only absolute accuracy); ``floor`` is the
absolute noise of quantities built from terms of order 1 (the loss, whose
``log`` of a row sum near 1 is accurate to ``eps`` absolutely; probabilities;
the Jacobian's ``p (1 - p)``). ``gradient_floor`` replaces it for a gradient
that does not vanish: its entries are of the order of its own largest entry,
which ``atol`` already measures, so against autodiff it is (all but) zero. (A
gradient that vanishes, all of whose expected entries are 0, keeps ``floor``:
its computed entries are rounding noise of terms of order ``1/N``.) A 0.1%
error in entries that are small because of ``1/N`` cannot hide under it, at
any N (issue 15: a float32 floor of 1e-7 hid a 2.4e-3 relative error at
N = 100000). Finite differences carry an absolute noise of about
``1e-13 * |loss| / h`` in every output, so their rows keep a floor for
gradients too. Nothing scales with the size of the array.

Manual code against autodiff in float64 agrees to rounding: the rows are
tight. Finite differences are accurate to about 1e-9 in float64, so their rows
are looser. A float32 computation is compared with float64 oracles fed the same
float32 inputs, so its rows reflect float32 rounding (eps = 1.2e-7) through
sums of up to a few thousand terms. Every row stays at least 10x below the
smallest error the suite must catch, a gradient off by 0.1% (see
tests/test_oracle_strength.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AUTODIFF = "autodiff"
FINITE_DIFFERENCES = "finite_differences"
ORACLE_KINDS = (AUTODIFF, FINITE_DIFFERENCES)


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    floor: float
    gradient_floor: float


TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("float64", AUTODIFF): Tolerance(rtol=1e-11, atol=1e-12, floor=1e-15, gradient_floor=1e-300),
    ("float64", FINITE_DIFFERENCES): Tolerance(rtol=1e-6, atol=1e-7, floor=1e-9, gradient_floor=1e-9),
    ("float32", AUTODIFF): Tolerance(rtol=1e-4, atol=1e-5, floor=1e-7, gradient_floor=1e-300),
    ("float32", FINITE_DIFFERENCES): Tolerance(rtol=1e-4, atol=1e-5, floor=1e-7, gradient_floor=1e-9),
}


def tolerance(dtype: np.dtype | type | str, oracle: str) -> Tolerance:
    """The row for a computation in ``dtype`` compared with ``oracle``.

    >>> tolerance(np.float32, "autodiff").rtol
    0.0001
    """
    name = np.dtype(dtype).name
    try:
        return TOLERANCES[(name, oracle)]
    except KeyError:
        raise ValueError(f"no tolerance for dtype {name!r} and oracle {oracle!r}") from None
