"""The input contract for device arrays (``jax.Array``): the same checks and messages, no copy to the host.

``softmax_grad.contract`` validates NumPy input by reading it. A ``jax.Array``
(possibly sharded over a device mesh) stays where it is: shapes, dimensions
and dtypes come from its metadata, and the value checks (finite entries,
labels in ``[0, C)``, non-negative soft targets and class weights) are reduced
on the device to one index each; only those few integers, and the one
offending entry for the message, cross to the host.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_on_device", "is_device_call"]


def is_device_call(*arguments: object) -> bool:
    """True when any argument is a ``jax.Array``: the call then stays on the device."""
    return any(isinstance(a, jax.Array) for a in arguments)


def _first(bad: jax.Array) -> jax.Array:
    bad = bad.ravel()
    return jnp.where(jnp.any(bad), jnp.argmax(bad), -1)


@functools.partial(jax.jit, static_argnames="n_classes")
def _first_bad_entries(
    values: tuple[jax.Array, ...], y: jax.Array, weight: jax.Array | None, exempt: jax.Array, n_classes: int
) -> jax.Array:
    """The flat index of the first bad entry of each check, -1 where there is none.

    In order: a non-finite entry of each of ``values``; in ``y``, a label outside
    ``[0, n_classes)`` other than ``exempt`` (integer labels) or a non-finite
    target (soft targets); a negative soft target (soft targets only, else -1);
    a negative class weight (else -1).
    """
    none = jnp.asarray(-1)
    checks = [_first(~jnp.isfinite(a)) for a in values]
    if jnp.issubdtype(y.dtype, jnp.floating):
        checks += [_first(~jnp.isfinite(y)), _first(y < 0)]
    else:
        checks += [_first(((y < 0) | (y >= n_classes)) & (y != exempt)), none]
    checks.append(none if weight is None else _first(weight < 0))
    return jnp.stack(checks)


def check_on_device(
    arrays: Mapping[str, jax.Array | None],
    y: jax.Array,
    weight: jax.Array | None,
    ignore_index: int | None,
    n_classes: int,
) -> None:
    """Raise the contract's errors for ``arrays`` (name to floating array, or None), labels or soft targets ``y``,
    and class ``weight`` (C,), all on device; the shapes of ``arrays`` and ``y`` are the caller's to check.

    >>> import jax.numpy as jnp
    >>> check_on_device({"scores": jnp.zeros((2, 3))}, jnp.array([0, 3]), None, None, 3)
    Traceback (most recent call last):
    ValueError: y[1] = 3 is out of range: labels must lie in [0, 3) for C = 3
    """
    named = {name: a for name, a in {**arrays, "weight": weight}.items() if a is not None}
    for name, a in named.items():  # as the NumPy contract: real numbers; integers are computed in float64
        if a.dtype == jnp.bool_ or not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer)):
            raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if weight is not None and weight.shape != (n_classes,):
        raise ValueError(f"weight has shape {weight.shape}, expected (C,) = ({n_classes},)")
    soft = jnp.issubdtype(y.dtype, jnp.floating)
    if not soft and not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"y must hold integer class labels or floating soft targets, got dtype {y.dtype}")
    exempt = 0 if ignore_index is None else ignore_index  # label 0 is never out of range: exempting it exempts none
    wide = any(a.dtype.itemsize == 8 for a in (*named.values(), y))  # 64-bit arrays are read in 64-bit mode
    with jax.enable_x64(wide):
        bad = _first_bad_entries(tuple(named.values()), y, weight, jnp.asarray(exempt), n_classes=n_classes)
    found = jax.device_get(bad)  # the one transfer to the host: a handful of indices
    for (name, a), index in zip(named.items(), found, strict=False):
        if index >= 0:
            where = tuple(int(i) for i in np.unravel_index(int(index), a.shape))
            raise ValueError(f"{name} holds {float(a[where])} at index {where}; values must be finite")
    label, negative_target, negative_weight = (int(i) for i in found[len(named) :])
    if label >= 0:
        where = tuple(int(i) for i in np.unravel_index(label, y.shape))
        if soft:
            raise ValueError(f"y holds {float(y[where])} at index {where}; values must be finite")
        raise ValueError(
            f"y[{where[0]}] = {int(y[where])} is out of range: labels must lie in [0, {n_classes}) for C = {n_classes}"
        )
    if negative_target >= 0:
        where = tuple(int(i) for i in np.unravel_index(negative_target, y.shape))
        raise ValueError(f"y{list(where)} = {float(y[where])} is negative; soft targets must be >= 0")
    if negative_weight >= 0:
        value = float(weight[negative_weight])
        raise ValueError(f"weight[{negative_weight}] = {value} is negative; class weights must be >= 0")
