"""Cross-entropy on a device mesh: the batch and the vocabulary split over mesh axes, eqs. (45)-(53).

``manual.compiled`` sends its device arrays here when they span more than one
device. The rows of ``X`` (or of the scores) may be split over one mesh axis,
the *batch axis*; the columns of ``W`` (with ``bias`` and the class weights, or
the columns of the scores) over another, the *vocabulary axis*. Each device
then computes its block of logits, and ``jax.shard_map`` runs the collectives
of docs/derivation.md section 10 explicitly: ``lax.pmax`` and ``lax.psum`` over
the vocabulary axis for the row max, the sum of exponentials, the owner-masked
label entry and the smoothing sums, ``lax.psum`` over the batch axis for the
reduction's normalizers and for ``dW``, ``db``, and one ``lax.psum`` of ``dX``
over the vocabulary axis. The logits never leave their device. Inside each
device the classes are chunked as in section 8 (eqs. 26-27).

Any mesh ``jax.make_mesh`` builds works, with Explicit or Auto axes, with or
without ``jax.set_mesh``: the arrays are viewed on an Auto-typed twin of their
mesh (the same devices and buffers, no copy), and the results are handed back
on the caller's mesh, sharded as their inputs were (``dX`` like ``X``, ``dW``
and ``db`` like ``W`` and ``bias``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from manual._options import class_chunk_width
from softmax_grad.contract import LossOptions

__all__ = [
    "Layout",
    "layout_of",
    "linear_cross_entropy",
    "linear_cross_entropy_core",
    "softmax_loss",
    "softmax_loss_core",
    "spans_devices",
]


def spans_devices(*arrays: Any) -> bool:
    """True when some argument is a ``jax.Array`` laid out over more than one device.

    >>> import numpy as np, jax.numpy as jnp
    >>> spans_devices(np.zeros(2), jnp.zeros(2), None)
    False
    """
    return any(isinstance(a, jax.Array) and len(a.sharding.device_set) > 1 for a in arrays)


class Layout(NamedTuple):
    """Where it runs: an Auto-typed mesh, its batch and vocabulary axes (or None), and the caller's mesh."""

    mesh: Mesh
    batch: str | None
    vocab: str | None
    home: Mesh


def _axis(array: Any, dim: int, name: str, what: str) -> str | None:
    """The one mesh axis that dimension ``dim`` of ``array`` is split over, or None."""
    if not isinstance(array, jax.Array) or not isinstance(array.sharding, NamedSharding):
        return None
    spec = tuple(array.sharding.spec) + (None,) * array.ndim
    entry = spec[dim]
    if isinstance(entry, tuple):
        if len(entry) > 1:
            raise ValueError(f"{name} splits its {what} over the mesh axes {entry}; split them over one mesh axis")
        entry = entry[0] if entry else None
    return entry


Named = dict[str, tuple[Any, int]]  # an argument's name: the array (or None) and one of its dimensions


def layout_of(rows: Named, columns: Named, fixed: Named) -> Layout:
    """Read the mesh and the axes from the arrays' shardings; refuse what eqs. (45)-(53) cannot honour.

    ``rows`` and ``columns`` name the arrays and the dimension that may be split
    over the batch and the vocabulary axis; ``fixed`` names dimensions that
    must not be split (the features D). The first array split over an axis
    decides it; the others are moved to match.
    """
    arrays = [a for a, _ in (*rows.values(), *columns.values(), *fixed.values())]
    meshes = {a.sharding.mesh for a in arrays if isinstance(a, jax.Array) and isinstance(a.sharding, NamedSharding)}
    multi = [a for a in arrays if isinstance(a, jax.Array) and len(a.sharding.device_set) > 1]
    if any(not isinstance(a.sharding, NamedSharding) for a in multi):
        raise ValueError("arrays on several devices must carry a NamedSharding (jax.sharding.NamedSharding on a mesh)")
    shapes = {(m.axis_names, m.devices.shape, tuple(d.id for d in m.devices.flat)) for m in meshes}
    if len(shapes) > 1:
        raise ValueError(f"the arrays lie on different meshes: {sorted(str(m) for m in meshes)}")
    home = next(iter(meshes))
    for name, (array, dim) in fixed.items():
        axis = _axis(array, dim, name, "features")
        if axis is not None:
            raise ValueError(f"{name} is split over the mesh axis {axis!r} along D (the features); "
                             f"only the batch (rows) and the vocabulary (classes) may be split")  # fmt: skip
    found = {}
    for role, named in (("batch", rows), ("vocabulary", columns)):
        axes = [_axis(a, dim, name, "rows" if role == "batch" else "classes") for name, (a, dim) in named.items()]
        found[role] = next((axis for axis in axes if axis is not None), None)
    if found["batch"] is not None and found["batch"] == found["vocabulary"]:
        raise ValueError(f"the mesh axis {found['batch']!r} splits both the batch and the vocabulary; use two axes")
    auto = Mesh(home.devices, home.axis_names, axis_types=(AxisType.Auto,) * len(home.axis_names))
    return Layout(auto, found["batch"], found["vocabulary"], home)


def place(array: Any, mesh: Mesh, spec: P) -> Any:
    """``array`` on ``mesh`` laid out as ``spec`` (no copy when it is already: only the mesh's axis types differ)."""
    return None if array is None else jax.device_put(array, NamedSharding(mesh, spec))


# ------------------------------------------------------------------------- the collectives, named
def _psum(x: jax.Array, *axes: str | None) -> jax.Array:
    named = tuple(a for a in axes if a is not None)
    return lax.psum(x, named) if named else x


def _pmax(x: jax.Array, axis: str | None) -> jax.Array:
    return x if axis is None else lax.pmax(x, axis)


def _first_column(axis: str | None, width: int) -> jax.Array:
    """The global index of this device's first class, ``o_v`` of eq. (47)."""
    return jnp.asarray(0) if axis is None else lax.axis_index(axis) * width


class _Rows(NamedTuple):
    """Per-row quantities every vocabulary device holds after eqs. (47)-(49)."""

    local_label: jax.Array  # the label's column in this device's block, -1 where another device owns it
    w_y: jax.Array
    a: jax.Array
    r: jax.Array
    u: jax.Array
    defined: jax.Array  # D_n > 0


def _row_factors(
    y: jax.Array, w: jax.Array, start: jax.Array, e: jax.Array, V: int, ignore: jax.Array, reduction: str,
    batch: str | None, vocab: str | None,
) -> _Rows:  # fmt: skip
    """Eqs. (47)-(49) from the labels and this device's block of class weights ``w`` (0 on padding classes)."""
    dtype = w.dtype
    kept = (y != ignore).astype(dtype)  # ignore: the ignored label, or -1, which no checked label equals
    local = jnp.where(kept > 0, y, 0) - start
    owned = (local >= 0) & (local < w.shape[0])  # the owner mask of eq. (47)
    w_y = _psum(jnp.where(owned, w[jnp.clip(local, 0, w.shape[0] - 1)], 0), vocab)  # eq. (47)
    a = (1 - e) * w_y + (e / V) * _psum(jnp.sum(w), vocab)  # eq. (48): the weights of the whole vocabulary, / V
    denominator = _psum(jnp.sum(kept * w_y), batch)  # eq. (49)
    defined = denominator > 0
    local_label = jnp.where(owned, local, -1)
    if reduction == "sum":
        return _Rows(local_label, w_y, a, kept, kept, defined)
    r = jnp.where(defined, kept / jnp.where(defined, denominator, 1), 0)  # eq. (20); 0 when D_n = 0
    u = kept / jnp.maximum(_psum(jnp.sum(kept), batch), 1)  # eqs. (21), (49)
    return _Rows(local_label, w_y, a, r, u, defined)


def _rescaled(s_local: jax.Array, m_local: jax.Array, m: jax.Array) -> jax.Array:
    """A block's sum ``s`` of ``exp(Z - m_local)`` rescaled to the global max ``m`` (eq. 26). A block whose
    classes are all masked or padding for a row holds ``(-inf, 0)`` there: 0, never ``exp(-inf - -inf)``."""
    return jnp.where(jnp.isneginf(m_local), 0, s_local * jnp.exp(m_local - m))


def _global_max_and_sums(
    m_local: jax.Array, sums_local: tuple[jax.Array, ...], vocab: str | None
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """Eq. (46): one max for every device (finite: a row keeps a class somewhere), each block's sums rescaled to
    it (as in eq. 26), then summed over the vocabulary axis (one ``psum`` for all of them)."""
    m = _pmax(m_local, vocab)
    return m, _psum(tuple(_rescaled(s, m_local, m) for s in sums_local), vocab)


def _global_lse(m_local: jax.Array, s_local: jax.Array, vocab: str | None) -> jax.Array:
    """Eq. (46): ``lse = m + log(sum)`` from each block's (max, sum)."""
    m, (sums,) = _global_max_and_sums(m_local, (s_local,), vocab)
    return m + jnp.log(sums)


def _capped(S: jax.Array, softcap: jax.Array | None) -> jax.Array:
    """Eq. (45): the cap is local; a masked class (``-inf``) stays ``-inf`` (eq. 56), not ``-c``."""
    return S if softcap is None else jnp.where(jnp.isneginf(S), -jnp.inf, softcap * jnp.tanh(S / softcap))


def _cap_chain(dZ: jax.Array, Zc: jax.Array, softcap: jax.Array | None) -> jax.Array:
    """Eq. (51): the cap's local factor ``1 - (Z/c)^2``; 0 at a masked class, where the factor is ``-inf``."""
    return dZ if softcap is None else jnp.where(jnp.isneginf(Zc), 0, dZ * (1 - jnp.square(Zc / softcap)))


def _unmasked(A: jax.Array) -> jax.Array:
    """``A`` with ``-inf`` (masked or padding classes) as 0, for a product whose other factor is 0 there."""
    return jnp.where(jnp.isneginf(A), 0, A)


def _block_gradient(
    Zc: jax.Array, real: jax.Array, k0: Any, lse: jax.Array, z_coef: jax.Array, rows: _Rows, w_k: jax.Array,
    e: jax.Array, V: int, softcap: jax.Array | None, others_share: jax.Array, w_total: jax.Array,
) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    """Eq. (51) on one (rows x chunk) block of capped logits ``Zc``, and its share ``l_i^(v)`` of eq. (50).

    ``real`` marks the classes that exist (padding classes, beyond V, get
    probability 0 and gradient 0, as masked ones, ``-inf``, do: eq. 56).
    ``rows.r`` and ``z_coef`` carry the cotangent (eq. 54). The label's entry,
    on its owner, is eq. (31): ``a p_y - q_y`` as
    ``(1-e) w_y (p_y - 1) + (e/V)(p_y sum_j w_j - w_y)`` with ``p_y - 1 =
    -others_share``, the other classes' share ``sigma^{not y} / sigma`` of
    eq. (30), all-reduced like the sum: nothing near 1 is subtracted.
    """
    log_p = jnp.where(real, Zc - lse[:, None], -jnp.inf)
    Y = rows.local_label[:, None] == k0 + jnp.arange(Zc.shape[1])  # the label's column, on its owner only
    smoothing = _unmasked(log_p) @ w_k  # no smoothing with a mask (eq. 56): e = 0 there, and 0 * -inf is NaN
    row_loss = -(1 - e) * rows.w_y * jnp.sum(jnp.where(Y, log_p, 0), axis=1) - (e / V) * smoothing  # eq. (50)
    P_ = jnp.exp(log_p)
    r = rows.r
    dZ = (r * rows.a)[:, None] * P_ - (r * (e / V))[:, None] * w_k
    dZ = dZ + z_coef[:, None] * P_  # eq. (51): the z-term, from the global lse, added apart
    p_y = jnp.sum(jnp.where(Y, P_, 0), axis=1)  # the owner's p_y (unused elsewhere)
    label = r * ((1 - e) * rows.w_y * -others_share + (e / V) * (w_total * p_y - rows.w_y)) + z_coef * p_y  # (31)
    dZ = jnp.where(Y, label[:, None], dZ)
    return _cap_chain(dZ, Zc, softcap), row_loss


# ------------------------------------------------------------------------- linear cross-entropy
def _linear_block(
    X: jax.Array, W: jax.Array, y: jax.Array, bias: jax.Array | None, w: jax.Array, e: jax.Array, z: jax.Array,
    softcap: jax.Array | None, ignore: jax.Array, g: jax.Array, *, V: int, batch: str | None, vocab: str | None,
    reduction: str, chunk_size: int | None,
) -> tuple[jax.Array, ...]:  # fmt: skip
    """One device's part: its rows of ``X``, its block of classes; eqs. (45)-(53), chunked by eqs. (26)-(27).

    ``g`` is the cotangent (eq. 54): this device's rows of it for "none", else a scalar.
    """
    N, Vk = X.shape[0], W.shape[1]
    dtype = X.dtype
    start = _first_column(vocab, Vk)
    rows = _row_factors(y, w, start, e, V, ignore, "sum" if reduction == "none" else reduction, batch, vocab)
    gradient_rows = rows._replace(r=rows.r * g, u=rows.u * g)  # eq. (54): g scales the gradient's row factors
    width = class_chunk_width(N, Vk, chunk_size)
    full, tail = divmod(Vk, width)

    def logits(k0: Any, size: int) -> tuple[jax.Array, jax.Array]:
        S = X @ lax.dynamic_slice_in_dim(W, k0, size, axis=1)  # eq. (45)
        S = S if bias is None else S + lax.dynamic_slice_in_dim(bias, k0, size)
        return _capped(S, softcap), start + k0 + jnp.arange(size) < V

    def lse_step(k0: Any, size: int, carry: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        Zc, real = logits(k0, size)
        Z = jnp.where(real, Zc, -jnp.inf)
        m, s, s_others = carry
        m_new = jnp.maximum(m, jnp.max(Z, axis=1))  # eq. (26) inside the block
        m_safe = jnp.where(jnp.isneginf(m_new), 0, m_new)  # a block of padding only keeps (-inf, 0)
        E = jnp.exp(Z - m_safe[:, None])
        Y = rows.local_label[:, None] == k0 + jnp.arange(size)  # the label's column, on its owner only
        rescale = jnp.exp(m - m_safe)
        # eq. (30): the other classes' sum kept apart, rescaled like the whole sum
        return m_new, s * rescale + jnp.sum(E, axis=1), s_others * rescale + jnp.sum(jnp.where(Y, 0, E), axis=1)

    # The loop carries vary over both axes, as X (batch) times W (vocabulary) does: shard_map checks that they do.
    both = X[0, 0] * W[0, 0]
    carry = (lax.full_like(both, -jnp.inf, shape=(N,)), *(lax.full_like(both, 0, shape=(N,)) for _ in range(2)))
    carry = lax.fori_loop(0, full, lambda k, c: lse_step(k * width, width, c), carry)
    if tail:
        carry = lse_step(full * width, tail, carry)
    m, (sums, others) = _global_max_and_sums(carry[0], carry[1:], vocab)  # eq. (46)
    lse, others_share = m + jnp.log(sums), others / sums  # eq. (30): 1 - p_y, nothing cancelled
    w_total = _psum(jnp.sum(w), vocab)
    z_coef = 2 * z * gradient_rows.u * lse  # eq. (51): the z-loss term's coefficient of p_i

    def spend(k0: Any, size: int, carry: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        dX, dW, db, row_loss = carry
        Zc, real = logits(k0, size)
        w_k = lax.dynamic_slice_in_dim(w, k0, size)
        dS, chunk_loss = _block_gradient(
            Zc, real, k0, lse, z_coef, gradient_rows, w_k, e, V, softcap, others_share, w_total
        )
        dX = dX + dS @ lax.dynamic_slice_in_dim(W, k0, size, axis=1).T  # eq. (27): a sum over the block's chunks
        dW = lax.dynamic_update_slice_in_dim(dW, X.T @ dS, k0, axis=1)  # eq. (52), before the batch's psum
        db = lax.dynamic_update_slice_in_dim(db, jnp.sum(dS, axis=0), k0, axis=0)
        return dX, dW, db, row_loss + chunk_loss

    start_carry = tuple(lax.full_like(both, 0, shape=shape) for shape in (X.shape, W.shape, (Vk,), (N,)))
    carry = lax.fori_loop(0, full, lambda k, c: spend(k * width, width, c), start_carry)
    if tail:
        carry = spend(full * width, tail, carry)
    dX, dW, db, row_loss = carry
    loss = _reduced_loss(row_loss, lse, rows, z, reduction, batch, vocab)
    dX = _psum(dX, vocab)  # eq. (53)
    return loss.astype(dtype), dX, _psum(dW, batch), _psum(db, batch)  # eq. (52)


def _reduced_loss(
    row_loss: jax.Array, lse: jax.Array, rows: _Rows, z: jax.Array, reduction: str, batch: str | None,
    vocab: str | None,
) -> jax.Array:  # fmt: skip
    """Eq. (50) from each block's share of the row losses: the (N,) losses of eq. (55) for "none" (this
    device's rows, whole over the vocabulary), else their reduction over the batch."""
    # An ignored row's stand-in label 0 may be a masked class (log p = -inf): its loss is 0, not 0 * inf.
    row_loss = jnp.where(rows.u > 0, row_loss, 0)
    if reduction == "none":  # r = u = k
        return _psum(rows.r * row_loss, vocab) + jnp.where(z > 0, z * rows.u * lse * lse, 0.0)
    ce = _psum(jnp.sum(rows.r * row_loss), batch, vocab)  # eq. (50): every block's share of every row
    z_term = _psum(jnp.sum(rows.u * lse * lse), batch)  # eq. (50): lse is whole on every vocabulary device
    loss = ce + jnp.where(z > 0, z * z_term, 0.0)
    if reduction == "mean":
        loss = jnp.where(rows.defined, loss, jnp.nan)  # eq. (20): a mean over no weight is NaN
    return loss


def _padded(a: jax.Array | None, to: int, axis: int) -> jax.Array | None:
    """``a`` with zero classes appended along ``axis`` up to ``to`` (they are masked out by eq. 45's ``real``)."""
    if a is None or a.shape[axis] == to:
        return a
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, to - a.shape[axis])
    return jnp.pad(a, widths)


def _ignored(ignore_index: int | None) -> jax.Array:
    """The ignored label as a traced number (-1 when none: checked labels are >= 0), so it costs no compilation."""
    return jnp.asarray(-1 if ignore_index is None else ignore_index)


def linear_cross_entropy_core(
    X: jax.Array,
    W: jax.Array,
    y: jax.Array,
    bias: jax.Array | None,
    weight: jax.Array | None,
    label_smoothing: jax.Array,
    z_loss: jax.Array,
    softcap: jax.Array | None,
    *,
    layout: Layout,
    ignore_index: int | None = None,
    reduction: str = "mean",
    chunk_size: int | None = None,
    grad_output: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Loss, ``dX``, ``dW``, ``db`` of eqs. (45)-(53) on ``layout``'s (Auto-typed) mesh; usable inside ``jit``.

    The gradients are the VJP at ``grad_output`` (eq. 54; default 1), (N,)
    and split like ``y`` for "none", whose (N,) row losses (eq. 55) come back
    split like ``y`` too.

    ``X`` and ``y`` split over ``layout.batch``, ``W``'s columns, ``bias`` and
    ``weight`` over ``layout.vocab`` (either may be None). V need not divide by
    the vocabulary axis: the classes are padded with zero columns, masked out
    of every sum, and the padding cut from ``dW`` and ``db``. ``chunk_size``
    chunks the classes inside each device (eqs. 26-27). The weights (ones
    when None) and the ignored label are traced, so that options share one
    compilation.

    >>> import jax, jax.numpy as jnp
    >>> mesh = jax.make_mesh((1, 1), ("batch", "vocab"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    >>> X, W, y, e, z = jnp.ones((2, 1)), jnp.zeros((1, 3)), jnp.array([0, 2]), jnp.asarray(0.0), jnp.asarray(0.0)
    >>> layout = Layout(mesh, "batch", "vocab", mesh)
    >>> loss, dX, dW, db = linear_cross_entropy_core(X, W, y, None, None, e, z, None, layout=layout)
    >>> round(float(loss), 6), [round(float(g), 6) for g in dW[0]]
    (1.098612, [-0.166667, 0.333333, -0.166667])
    """
    weight = jnp.ones(W.shape[1], X.dtype) if weight is None else weight
    g = _cotangent(grad_output, X.dtype)
    return _linear_cross_entropy_core(
        X, W, y, bias, weight, label_smoothing, z_loss, softcap, _ignored(ignore_index), g, layout=layout,
        reduction=reduction, chunk_size=chunk_size,
    )  # fmt: skip


def _cotangent(grad_output: jax.Array | None, dtype: Any) -> jax.Array:
    """The cotangent of eq. (54) in ``dtype``; None is 1, multiplied in all the same (never skipped at 1)."""
    return jnp.ones((), dtype) if grad_output is None else jnp.asarray(grad_output, dtype)


@functools.partial(jax.jit, static_argnames=("layout", "reduction", "chunk_size"))
def _linear_cross_entropy_core(
    X: jax.Array, W: jax.Array, y: jax.Array, bias: jax.Array | None, w: jax.Array, label_smoothing: jax.Array,
    z_loss: jax.Array, softcap: jax.Array | None, ignore: jax.Array, g: jax.Array, *, layout: Layout,
    reduction: str, chunk_size: int | None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:  # fmt: skip
    mesh, batch, vocab = layout.mesh, layout.batch, layout.vocab
    V = W.shape[1]
    k = 1 if vocab is None else mesh.shape[vocab]
    padded = -(-V // k) * k
    Wp, bp, wp = _padded(W, padded, 1), _padded(bias, padded, 0), _padded(w, padded, 0)
    rows, cols = P(batch), P(vocab)
    block = functools.partial(_linear_block, V=V, batch=batch, vocab=vocab, reduction=reduction, chunk_size=chunk_size)
    mapped = jax.shard_map(
        block,
        mesh=mesh,
        in_specs=(P(batch, None), P(None, vocab), rows, None if bias is None else cols, cols, P(), P(),
                  None if softcap is None else P(), P(), rows if reduction == "none" else P()),
        out_specs=(rows if reduction == "none" else P(), P(batch, None), P(None, vocab), cols),
    )  # fmt: skip
    loss, dX, dW, db = mapped(X, Wp, y, bp, wp, label_smoothing, z_loss, softcap, ignore, g)
    return loss, dX, dW[:, :V], db[:V]


def linear_cross_entropy(
    X: jax.Array,
    W: jax.Array,
    y: jax.Array,
    bias: jax.Array | None,
    weight: jax.Array | None,
    options: LossOptions,
    dtype: Any,
    *,
    reduction: str,
    chunk_size: int | None,
    check: Callable[..., None],
    grad_output: tuple[jax.Array, jax.Array | None],
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``compiled.linear_cross_entropy`` for arrays on a mesh: laid out, ``check``-ed, cast, computed, handed back.

    ``grad_output`` is the cotangent in ``dtype`` (eq. 54), (N,) and split like ``y`` for "none", else 0-d,
    beside the ``jax.Array`` it came from (or None), for ``check``.
    """
    none = reduction == "none"
    layout = layout_of(
        rows={"X": (X, 0), "y": (y, 0), **({"grad_output": (grad_output[1], 0)} if none else {})},
        columns={"W": (W, 1), "bias": (bias, 0), "weight": (weight, 0)},
        fixed={"X": (X, 1), "W": (W, 0)},
    )
    mesh, batch, vocab = layout.mesh, layout.batch, layout.vocab
    X, y = place(X, mesh, P(batch, None)), place(y, mesh, P(batch))
    W, bias, weight = place(W, mesh, P(None, vocab)), place(bias, mesh, P(vocab)), place(weight, mesh, P(vocab))
    g, given = _placed_cotangent(grad_output, mesh, P(batch) if none else P())
    with jax.set_mesh(mesh):  # the Auto twin, also inside a caller's jax.set_mesh
        check(X, W, y, bias, weight, options.ignore_index, grad_output=(g, given))
    with jax.set_mesh(mesh), jax.enable_x64(dtype == np.float64):
        X, W, bias, weight = (None if a is None else a.astype(dtype) for a in (X, W, bias, weight))
        loss, dX, dW, db = linear_cross_entropy_core(
            X, W, y, bias, weight, *scalar_options(options, dtype), layout=layout, ignore_index=options.ignore_index,
            reduction=reduction, chunk_size=chunk_size, grad_output=g,
        )  # fmt: skip
    home = layout.home
    grads = {"X": place(dX, home, P(batch, None)), "W": place(dW, home, P(None, vocab))}
    loss = place(loss, home, P(batch) if none else P())
    return loss, grads | ({} if bias is None else {"b": place(db, home, P(vocab))})


def _placed_cotangent(
    grad_output: tuple[jax.Array, jax.Array | None], mesh: Mesh, spec: P
) -> tuple[jax.Array, jax.Array | None]:
    """The cotangent and the array it came from, both on the Auto twin ``mesh`` (no copy), in their own widths."""
    cast, given = grad_output
    with jax.enable_x64(cast.dtype.itemsize == 8 or (given is not None and given.dtype.itemsize == 8)):
        return place(cast, mesh, spec), place(given, mesh, spec)


def scalar_options(options: LossOptions, dtype: Any) -> tuple[Any, Any, Any]:
    """Smoothing, z-loss and the cap as 0-d arrays of ``dtype`` (the cap None when off)."""
    smoothing, z = np.asarray(options.label_smoothing, dtype), np.asarray(options.z_loss, dtype)
    return smoothing, z, None if options.softcap is None else np.asarray(options.softcap, dtype)


# ------------------------------------------------------------------------- softmax loss on sharded scores
def _scores_block(
    S: jax.Array, y: jax.Array, w: jax.Array, e: jax.Array, z: jax.Array, softcap: jax.Array | None,
    ignore: jax.Array, g: jax.Array, *, C: int, batch: str | None, vocab: str | None, reduction: str,
) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    """One device's block of scores: loss and ``dS`` by eqs. (46)-(51), or (18)-(24) with (46) for soft targets;
    the cotangent ``g`` (this device's rows for "none") scales the gradient's row factors (eq. 54)."""
    Zc = _capped(S, softcap)  # eq. (45)
    m = jnp.max(Zc, axis=1)  # -inf where every class of this block is masked for the row: (-inf, 0) in eq. (46)
    shift = jnp.where(jnp.isneginf(m), 0, m)  # so that exp(Zc - shift) is 0 there, never exp(-inf - -inf)
    E = jnp.exp(Zc - shift[:, None])
    real = jnp.ones(S.shape[1], bool)
    factors = "sum" if reduction == "none" else reduction  # "none": r = u = k (eq. 55)
    if y.ndim == 1:
        rows = _row_factors(y, w, _first_column(vocab, S.shape[1]), e, C, ignore, factors, batch, vocab)
        Y = rows.local_label[:, None] == jnp.arange(S.shape[1])
        m, (sums, others) = _global_max_and_sums(m, (jnp.sum(E, axis=1), jnp.sum(jnp.where(Y, 0, E), axis=1)), vocab)
        lse, others_share = m + jnp.log(sums), others / sums  # eqs. (46), (30)
        gradient_rows = rows._replace(r=rows.r * g, u=rows.u * g)
        z_coef = 2 * z * gradient_rows.u * lse
        w_total = _psum(jnp.sum(w), vocab)
        dZ, row_loss = _block_gradient(Zc, real, 0, lse, z_coef, gradient_rows, w, e, C, softcap, others_share, w_total)
        return _reduced_loss(row_loss, lse, rows, z, reduction, batch, vocab).astype(S.dtype), dZ
    lse = _global_lse(m, jnp.sum(E, axis=1), vocab)  # eq. (46)
    # soft targets split like the scores: q of eq. (18) is local, its row sum a_i all-reduced
    q = w * ((1 - e) * y + e / C)
    a = _psum(jnp.sum(q, axis=1), vocab)
    N = _psum(jnp.asarray(S.shape[0], S.dtype), batch)  # eq. (20): soft targets divide by N
    r = u = jnp.full(S.shape[0], 1 / N if factors == "mean" else 1, S.dtype)
    P_ = jnp.exp(Zc - lse[:, None])
    row_loss = jnp.sum(q * _unmasked(lse[:, None] - Zc), axis=1)  # this block's share of eq. (19); q = 0 if masked
    dZ = (r * g)[:, None] * (a[:, None] * P_ - q) + (2 * z * u * g * lse)[:, None] * P_  # eqs. (24), (54)
    rows = _Rows(jnp.zeros(S.shape[0], jnp.int32), a, a, r, u, N > 0)
    return _reduced_loss(row_loss, lse, rows, z, reduction, batch, vocab).astype(S.dtype), _cap_chain(dZ, Zc, softcap)


def softmax_loss_core(
    S: jax.Array,
    y: jax.Array,
    weight: jax.Array | None,
    label_smoothing: jax.Array,
    z_loss: jax.Array,
    softcap: jax.Array | None,
    *,
    layout: Layout,
    ignore_index: int | None = None,
    reduction: str = "mean",
    grad_output: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Loss and ``dS`` with every option for scores split over ``layout``'s axes (rows, classes); usable in ``jit``.

    The number of classes must divide by the vocabulary axis (as it does for
    any array JAX lays out over it). ``dS`` is the VJP at ``grad_output``
    (eq. 54), (N,) and split like the rows for "none".
    """
    weight = jnp.ones(S.shape[1], S.dtype) if weight is None else weight
    return _softmax_loss_core(
        S, y, weight, label_smoothing, z_loss, softcap, _ignored(ignore_index), _cotangent(grad_output, S.dtype),
        layout=layout, reduction=reduction,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("layout", "reduction"))
def _softmax_loss_core(
    S: jax.Array, y: jax.Array, w: jax.Array, label_smoothing: jax.Array, z_loss: jax.Array,
    softcap: jax.Array | None, ignore: jax.Array, g: jax.Array, *, layout: Layout, reduction: str,
) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    mesh, batch, vocab = layout.mesh, layout.batch, layout.vocab
    block = functools.partial(_scores_block, C=S.shape[1], batch=batch, vocab=vocab, reduction=reduction)
    rows = P(batch) if reduction == "none" else P()
    mapped = jax.shard_map(
        block,
        mesh=mesh,
        in_specs=(P(batch, vocab), P(batch) if y.ndim == 1 else P(batch, vocab), P(vocab), P(), P(),
                  None if softcap is None else P(), P(), rows),
        out_specs=(rows, P(batch, vocab)),
    )  # fmt: skip
    return mapped(S, y, w, label_smoothing, z_loss, softcap, ignore, g)


def softmax_loss(
    S: jax.Array,
    y: jax.Array,
    weight: jax.Array | None,
    options: LossOptions,
    dtype: Any,
    *,
    reduction: str,
    stable: bool,
    check: Callable[..., None],
    grad_output: tuple[jax.Array, jax.Array | None],
) -> tuple[jax.Array, jax.Array]:
    """``compiled.softmax_loss`` for scores on a mesh: laid out, ``check``-ed, cast, computed, handed back.

    ``grad_output`` is the cotangent in the computing dtype (eq. 54), (N,) and split like ``y`` for "none",
    beside the ``jax.Array`` it came from (or None), for ``check``.
    """
    if not stable:
        raise ValueError("stable=False (the literal formula without the max shift) runs on one device only; "
                         "on a mesh the row max is all-reduced first (eq. 46)")  # fmt: skip
    soft, none = y.ndim == 2, reduction == "none"
    layout = layout_of(
        rows={"scores": (S, 0), "y": (y, 0), **({"grad_output": (grad_output[1], 0)} if none else {})},
        columns={"scores": (S, 1), "weight": (weight, 0), **({"y": (y, 1)} if soft else {})},
        fixed={},
    )
    mesh, batch, vocab = layout.mesh, layout.batch, layout.vocab
    S, weight = place(S, mesh, P(batch, vocab)), place(weight, mesh, P(vocab))
    y = place(y, mesh, P(batch, vocab) if soft else P(batch))
    g, given = _placed_cotangent(grad_output, mesh, P(batch) if none else P())
    with jax.set_mesh(mesh):  # the Auto twin, also inside a caller's jax.set_mesh
        check(S, y, weight, grad_output=(g, given))
    with jax.set_mesh(mesh), jax.enable_x64(dtype == np.float64):
        S, weight = S.astype(dtype), None if weight is None else weight.astype(dtype)
        y = y.astype(dtype) if soft else y
        loss, dS = softmax_loss_core(
            S, y, weight, *scalar_options(options, dtype), layout=layout, ignore_index=options.ignore_index,
            reduction=reduction, grad_output=g,
        )  # fmt: skip
    return place(loss, layout.home, P(batch) if none else P()), place(dS, layout.home, P(batch, vocab))
