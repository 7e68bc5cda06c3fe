"""The oracles: JAX autodiff of the losses, and finite differences.

The package's own six functions are the autodiff oracle (``reference.autodiff``):
the losses of ``reference.losses`` differentiated by ``jax.vjp`` (the backward at a
cotangent, eq. 54), ``jax.value_and_grad`` and
``jax.jacobian``, in float64 inside a local x64 context. The second, independent
oracle is ``reference.finite_differences``, with the same six functions. Nothing
here imports ``manual``: an oracle that shares the code it checks proves nothing.

``reference.check(fn, kind=...)`` checks a user's own implementation against the
autodiff oracle (see ``reference.checker``).

>>> import reference
>>> loss, dS = reference.softmax_loss([[2.0, 1.0, 0.1]], [0])
>>> round(loss, 6)
0.41703
"""

from __future__ import annotations

from reference import autodiff, finite_differences, losses
from reference.autodiff import (
    linear_cross_entropy,
    linear_loss,
    softmax,
    softmax_jacobian,
    softmax_loss,
    two_layer_loss,
)
from reference.checker import check

# The oracles by name, as manual.VARIANTS names the variants: each module has the same public functions.
ORACLES = {"autodiff": autodiff, "finite_differences": finite_differences}

__all__ = [
    "ORACLES",
    "autodiff",
    "check",
    "finite_differences",
    "linear_cross_entropy",
    "linear_loss",
    "losses",
    "softmax",
    "softmax_jacobian",
    "softmax_loss",
    "two_layer_loss",
]
