"""The input contract for device arrays (``jax.Array``): the same checks and messages, no copy to the host.

``softmax_grad.contract`` validates NumPy input by reading it. A ``jax.Array``
(possibly sharded over a device mesh) stays where it is: shapes, dimensions
and dtypes come from its metadata (``check_layout``), and the value checks
(finite entries, labels in ``[0, C)``, non-negative soft targets and class
weights) are one boolean, ``values_are_valid``, that the compiled program
computes beside the loss from row reductions it mostly makes anyway. Only that
boolean crosses to the host; when it is False, ``check_on_device`` finds the
first bad entry of each check and raises the contract's error naming it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_layout", "check_on_device", "is_device_call", "values_are_valid"]


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


def _all_finite(a: jax.Array) -> jax.Array:
    """True when every entry is finite, from the row max and min: NaN propagates through both, +inf is a max,
    -inf a min. The max is the one the loss takes anyway (XLA computes it once), so only the min is a new pass."""
    if not jnp.issubdtype(a.dtype, jnp.floating):
        return jnp.asarray(True)
    axis = a.ndim - 1
    return jnp.all(jnp.isfinite(jnp.max(a, axis=axis))) & jnp.all(jnp.isfinite(jnp.min(a, axis=axis)))


def values_are_valid(
    values: tuple[jax.Array, ...], y: jax.Array, weight: jax.Array | None, ignore_index: int | None, n_classes: int
) -> jax.Array:
    """A 0-d boolean, traced inside the caller's ``jax.jit``: True when every value check of ``check_on_device``
    passes (finite ``values`` and ``weight``, labels in ``[0, n_classes)`` or ``ignore_index``, soft targets
    finite and >= 0, weights >= 0).

    >>> import jax.numpy as jnp
    >>> bool(values_are_valid((jnp.zeros((2, 3)),), jnp.array([0, 3]), None, None, 3))
    False
    """
    ok = [_all_finite(a) for a in values]
    if jnp.issubdtype(y.dtype, jnp.floating):
        ok += [_all_finite(y), jnp.all(jnp.min(y, axis=1) >= 0)]  # NaN fails >= 0 too
    else:
        in_range = (y >= 0) & (y < n_classes)
        ok.append(jnp.all(in_range if ignore_index is None else in_range | (y == ignore_index)))
    if weight is not None:
        ok += [_all_finite(weight), jnp.all(weight >= 0)]
    return functools.reduce(jnp.logical_and, ok)


def check_layout(
    arrays: Mapping[str, jax.Array | None], y: jax.Array, weight: jax.Array | None, n_classes: int
) -> None:
    """The checks that read metadata alone: real dtypes for ``arrays`` and ``weight``, weight (C,), label dtype."""
    named = {name: a for name, a in {**arrays, "weight": weight}.items() if a is not None}
    for name, a in named.items():  # as the NumPy contract: real numbers; integers are computed in float64
        if a.dtype == jnp.bool_ or not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer)):
            raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if weight is not None and weight.shape != (n_classes,):
        raise ValueError(f"weight has shape {weight.shape}, expected (C,) = ({n_classes},)")
    if not jnp.issubdtype(y.dtype, jnp.floating) and not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"y must hold integer class labels or floating soft targets, got dtype {y.dtype}")


def check_on_device(
    arrays: Mapping[str, jax.Array | None],
    y: jax.Array,
    weight: jax.Array | None,
    ignore_index: int | None,
    n_classes: int,
) -> None:
    """Raise the contract's errors for ``arrays`` (name to floating array, or None), labels or soft targets ``y``,
    and class ``weight`` (C,), all on device; the shapes of ``arrays`` and ``y`` are the caller's to check.

    Each check is reduced on the device to the flat index of its first bad
    entry; those few integers, and the one offending entry, cross to the host.
    The compiled functions call this only after ``values_are_valid`` came out
    False, to name what is wrong.

    >>> import jax.numpy as jnp
    >>> check_on_device({"scores": jnp.zeros((2, 3))}, jnp.array([0, 3]), None, None, 3)
    Traceback (most recent call last):
    ValueError: y[1] = 3 is out of range: labels must lie in [0, 3) for C = 3
    """
    check_layout(arrays, y, weight, n_classes)
    named = {name: a for name, a in {**arrays, "weight": weight}.items() if a is not None}
    soft = jnp.issubdtype(y.dtype, jnp.floating)
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
