"""The diagnoses of a backward that mishandles its cotangent (docs/derivation.md eq. 54).

The gradient a VJP kind returns at a cotangent ``g`` is ``g_i`` times row i's
gradient ("none"), or ``g`` times the gradient ("mean", "sum"). The slips seen
in fused kernels: ``g`` ignored (the gradient at cotangent 1), ``g[0]`` used for
every row, and one output scaled by ``g`` while another is not; each shows as
one output matching the oracle's VJP at another cotangent, within the
rounding-error bound of that VJP.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from softmax_grad.compare import compare_bounded


def alternatives(grad_output: Any) -> list[tuple[str, Any]]:
    """The cotangents a slipping backward acts as if it were given, each with what that slip is.

    >>> [text.split(":")[0] for text, _ in alternatives(np.array([2.0, -1.0, 0.0]))]
    ['ignores grad_output', 'uses grad_output[0] for every row']
    >>> len(alternatives(1.5)), len(alternatives(np.array([2.0, 2.0])))
    (1, 1)
    """
    g = np.asarray(grad_output, np.float64)
    ones = np.ones_like(g) if g.ndim else 1.0
    found = [("ignores grad_output: it is the gradient at cotangent 1 (the incoming gradient is never multiplied "
              "in; eq. 54: row i's gradient is g_i times its own)", ones)]  # fmt: skip
    if g.ndim == 1 and not np.all(g == g[0]):
        found.append(("uses grad_output[0] for every row: it is the VJP at the cotangent (g_0, g_0, ...); each "
                      "row's gradient takes its own g_i (eq. 54)", np.full_like(g, g[0])))  # fmt: skip
    return found


def cotangent_hint(ctx: Any, name: str, actual: np.ndarray) -> str | None:
    """What ``name`` (a gradient) is, when it is the oracle's VJP at another cotangent than the case's; else None."""
    if ctx.grad_output is None or name == "loss" or ctx.bounds is None:
        return None
    for text, other in alternatives(ctx.grad_output):
        _, gradients = ctx.oracle(cotangent=other)
        if name not in gradients or np.shape(gradients[name]) != np.shape(actual):
            continue
        bound = ctx.bounds(cotangent=other)[name]
        if compare_bounded(actual, gradients[name], bound, label=name, allowance=ctx.allowance(name)).ok:
            return text
    return None
