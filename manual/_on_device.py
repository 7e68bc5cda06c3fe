"""The input contract for device arrays (``jax.Array``): the same checks and messages, no copy to the host.

``softmax_grad.contract`` validates NumPy input by reading it. A ``jax.Array``
(possibly sharded over a device mesh) stays where it is: shapes, dimensions
and dtypes come from its metadata (``check_layout``), and the value checks
(finite entries, labels in ``[0, C)``, non-negative soft targets and class
weights; for the scores or a bias, ``-inf`` as a masked class, derivation
eq. 56, and the targets kept off it; a finite cotangent) are one boolean,
``values_are_valid`` and ``masks_are_valid``, that the compiled program
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

from softmax_grad.contract import check_cotangent_shape

__all__ = [
    "check_cotangent_layout",
    "check_cotangent_on_device",
    "check_layout",
    "check_on_device",
    "cotangent_is_valid",
    "is_device_call",
    "masks_are_valid",
    "values_are_valid",
]


def is_device_call(*arguments: object) -> bool:
    """True when any argument is a ``jax.Array``: the call then stays on the device."""
    return any(isinstance(a, jax.Array) for a in arguments)


def _first(bad: jax.Array) -> jax.Array:
    bad = bad.ravel()
    return jnp.where(jnp.any(bad), jnp.argmax(bad), -1)


@functools.partial(jax.jit, static_argnames=("n_classes", "masked"))
def _first_bad_entries(
    values: tuple[jax.Array, ...],
    y: jax.Array,
    weight: jax.Array | None,
    exempt: jax.Array,
    n_classes: int,
    masked: tuple[bool, ...],
) -> jax.Array:
    """The flat index of the first bad entry of each check, -1 where there is none.

    In order: a non-finite entry of each of ``values`` (NaN or ``+inf`` where
    ``masked`` allows ``-inf``); in ``y``, a label outside
    ``[0, n_classes)`` other than ``exempt`` (integer labels) or a non-finite
    target (soft targets); a negative soft target (soft targets only, else -1);
    a negative class weight (else -1).
    """
    none = jnp.asarray(-1)
    bad = [jnp.isnan(a) | jnp.isposinf(a) if m else ~jnp.isfinite(a) for a, m in zip(values, masked, strict=True)]
    checks = [_first(b) for b in bad]
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


def _finite_or_masked(a: jax.Array) -> jax.Array:
    """True when no entry is NaN or ``+inf`` and every row (or a 1-D bias) keeps a class that is not ``-inf``:
    all three at once from the row max, which NaN propagates through and which is ``-inf`` only for a row
    masked at every class."""
    return jnp.all(jnp.isfinite(jnp.max(a, axis=a.ndim - 1)))


def values_are_valid(
    values: tuple[jax.Array, ...],
    y: jax.Array,
    weight: jax.Array | None,
    ignore_index: int | None,
    n_classes: int,
    masked: tuple[bool, ...] | None = None,
) -> jax.Array:
    """A 0-d boolean, traced inside the caller's ``jax.jit``: True when every value check of ``check_on_device``
    passes (finite ``values`` and ``weight``, labels in ``[0, n_classes)`` or ``ignore_index``, soft targets
    finite and >= 0, weights >= 0). Where ``masked`` says so, an entry of ``values`` may be ``-inf`` (a masked
    class, eq. 56) as long as its row keeps a class; ``masks_are_valid`` checks the targets against it.

    >>> import jax.numpy as jnp
    >>> bool(values_are_valid((jnp.zeros((2, 3)),), jnp.array([0, 3]), None, None, 3))
    False
    >>> bool(values_are_valid((jnp.array([[0.0, -jnp.inf]]),), jnp.array([0]), None, None, 2, masked=(True,)))
    True
    """
    masked = masked or (False,) * len(values)
    ok = [_finite_or_masked(a) if m else _all_finite(a) for a, m in zip(values, masked, strict=True)]
    if jnp.issubdtype(y.dtype, jnp.floating):
        ok += [_all_finite(y), jnp.all(jnp.min(y, axis=1) >= 0)]  # NaN fails >= 0 too
    else:
        in_range = (y >= 0) & (y < n_classes)
        ok.append(jnp.all(in_range if ignore_index is None else in_range | (y == ignore_index)))
    if weight is not None:
        ok += [_all_finite(weight), jnp.all(weight >= 0)]
    return functools.reduce(jnp.logical_and, ok)


def _labels_on_masked(masked: jax.Array, y: jax.Array, ignore_index: int | None) -> jax.Array:
    """(N,) booleans: a kept label whose class is ``-inf`` in ``masked``, the scores (N, C) or a bias (V,)."""
    kept = jnp.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    labels = jnp.clip(jnp.where(kept, y, 0), 0, masked.shape[-1] - 1)  # out-of-range labels are refused apart
    if masked.ndim == 1:
        return kept & jnp.isneginf(masked[labels])
    return kept & jnp.isneginf(jnp.take_along_axis(masked, labels[:, None], axis=1)[:, 0])


def masks_are_valid(
    masked: jax.Array | None, y: jax.Array, ignore_index: int | None, label_smoothing: jax.Array
) -> jax.Array:
    """A 0-d boolean, traced inside the caller's ``jax.jit``: True when nothing puts loss on a masked class
    (eq. 56): no kept label on a ``-inf`` class of ``masked`` (the scores, or the bias for every row), no
    soft-target mass there, and no label smoothing while any class is masked.

    >>> import jax.numpy as jnp
    >>> bias = jnp.array([0.0, -jnp.inf])
    >>> bool(masks_are_valid(bias, jnp.array([0]), None, 0.0)), bool(masks_are_valid(bias, jnp.array([1]), None, 0.0))
    (True, False)
    """
    if masked is None or not jnp.issubdtype(masked.dtype, jnp.floating):
        return jnp.asarray(True)
    any_masked = jnp.any(jnp.isneginf(jnp.min(masked, axis=masked.ndim - 1)))
    ok = ~((label_smoothing > 0) & any_masked)
    if jnp.issubdtype(y.dtype, jnp.floating):
        return ok & ~jnp.any((y > 0) & jnp.isneginf(masked))
    return ok & ~jnp.any(_labels_on_masked(masked, y, ignore_index))


@functools.partial(jax.jit, static_argnames="ignore_index")
def _first_mask_faults(masked: jax.Array, y: jax.Array, ignore_index: int | None) -> jax.Array:
    """Flat indices, -1 where none: a row (or the bias) masked at every class, the first masked entry, the first
    soft-target mass on a masked class, the first kept label on one (the last two -1 for the other kind of y)."""
    none = jnp.asarray(-1)
    neg = jnp.isneginf(masked)
    checks = [_first(jnp.all(neg, axis=masked.ndim - 1)), _first(neg)]
    if jnp.issubdtype(y.dtype, jnp.floating):
        checks += [_first((y > 0) & neg), none]
    else:
        checks += [none, _first(_labels_on_masked(masked, y, ignore_index))]
    return jnp.stack(checks)


def _check_masks_on_device(
    name: str, masked: jax.Array, y: jax.Array, ignore_index: int | None, label_smoothing: float
) -> None:
    """Raise ``contract.check_masked_array``' and ``contract.check_masked_targets``' errors, in their order."""
    if not jnp.issubdtype(masked.dtype, jnp.floating):
        return
    with jax.enable_x64(masked.dtype.itemsize == 8 or y.dtype.itemsize == 8):
        found = jax.device_get(_first_mask_faults(masked, y, ignore_index=ignore_index))
    every, first, soft, label = (int(i) for i in found)
    if every >= 0:
        where = f"row {every} of {name}" if masked.ndim == 2 else name
        raise ValueError(f"{where} is -inf at every class: with every class masked the softmax is undefined")
    if first < 0:
        return
    if label_smoothing > 0:
        index = [int(i) for i in np.unravel_index(first, masked.shape)]
        raise ValueError(
            f"label_smoothing={label_smoothing} puts e/C on every class, but {name}{index} = -inf "
            "masks a class: the smoothed loss would be +inf; smooth over the classes that exist, or pass 0"
        )
    if soft >= 0:
        i, j = (int(k) for k in np.unravel_index(soft, y.shape))
        raise ValueError(
            f"y[{i}, {j}] = {np.asarray(y[i, j])} puts target mass on class {j}, which is masked ({name}[{i}, {j}] = "
            "-inf): the loss would be +inf"
        )
    if label >= 0:
        target = int(y[label])
        where = f"{name}[{target}]" if masked.ndim == 1 else f"{name}[{label}, {target}]"
        raise ValueError(
            f"y[{label}] = {target} is a masked class ({where} = -inf): a label must be a class that exists, "
            "and its loss would be +inf"
        )


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
    *,
    masked: str | None = None,
    label_smoothing: float = 0.0,
) -> None:
    """Raise the contract's errors for ``arrays`` (name to floating array, or None), labels or soft targets ``y``,
    and class ``weight`` (C,), all on device; the shapes of ``arrays`` and ``y`` are the caller's to check.
    ``masked`` names the array of ``arrays`` whose ``-inf`` entries are masked classes (the scores, a bias):
    its NaN and ``+inf`` are errors, and the masks are checked against ``y`` and ``label_smoothing`` (eq. 56).

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
        flags = tuple(name == masked for name in named)
        bad = _first_bad_entries(tuple(named.values()), y, weight, jnp.asarray(exempt), n_classes, flags)
    found = jax.device_get(bad)  # the one transfer to the host: a handful of indices
    for (name, a), index in zip(named.items(), found, strict=False):
        if index >= 0:
            where = tuple(int(i) for i in np.unravel_index(int(index), a.shape))
            allowed = "finite or -inf (a masked class)" if name == masked else "finite"
            raise ValueError(f"{name} holds {float(a[where])} at index {where}; values must be {allowed}")
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
    if masked is not None and named.get(masked) is not None:
        _check_masks_on_device(masked, named[masked], y, ignore_index, label_smoothing)


# ------------------------------------------------------------------------- the cotangent, grad_output
def check_cotangent_layout(g: jax.Array, reduction: str, n: int) -> None:
    """``contract.check_grad_output``'s checks that read metadata: a real dtype, (N,) for "none", else 0-d."""
    if g.dtype == jnp.bool_ or not (jnp.issubdtype(g.dtype, jnp.floating) or jnp.issubdtype(g.dtype, jnp.integer)):
        raise TypeError(f"grad_output must hold real numbers, got dtype {g.dtype}")
    check_cotangent_shape(g.shape, reduction, n)


def cotangent_is_valid(cast: jax.Array) -> jax.Array:
    """A 0-d boolean, traced inside the caller's ``jax.jit``: the cotangent, cast to the computing dtype, is finite."""
    return jnp.all(jnp.isfinite(cast))


def check_cotangent_on_device(g: jax.Array, cast: jax.Array) -> None:
    """Raise ``contract.check_grad_output``'s error for the first entry of ``g`` whose ``cast`` is not finite."""
    with jax.enable_x64(g.dtype.itemsize == 8):
        index = int(jax.device_get(_first(~jnp.isfinite(cast))))
    if index < 0:
        return
    value = np.asarray(g[index] if g.ndim else g)
    what = f"grad_output[{index}]" if g.ndim else "grad_output"
    dtype = np.dtype(cast.dtype)
    limit = f" ({dtype.name}, the computing dtype, ends near {float(np.finfo(dtype).max):.3g})"
    raise ValueError(f"{what} = {value} must be finite{limit if np.isfinite(value) else ''}")
