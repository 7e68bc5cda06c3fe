"""Run as a script on 8 simulated CPU devices (``tests/test_linear_cross_entropy.py`` starts it).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.sharded_linear_cross_entropy

Checks, in float64: ``manual.compiled.linear_cross_entropy`` on a batch sharded
over 8 devices returns device arrays equal to the unsharded result (and to the
autodiff oracle); and the same gradients written out by hand with
``jax.shard_map``: each shard's ``dW = X_l^T dS_l`` and ``db = 1^T dS_l`` (the
ones-vector product), summed by one ``psum``, the global "mean" dividing the
summed losses by the ``psum`` of the kept rows' weights (eq. 20). Prints one
line per check and exits non-zero on the first failure.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import reference
from manual import compiled
from reference import losses
from softmax_grad.compare import compare
from softmax_grad.tolerances import tolerance

TOL = tolerance("float64", "autodiff")
N, D, V, CHUNK = 64, 6, 37, 8  # 8 rows a device; chunks of 8 classes do not divide 37
OPTIONS = {"weight": None, "ignore_index": -100, "label_smoothing": 0.1, "softcap": 2.5}


def inputs() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(13)
    X, W, b = rng.standard_normal((N, D)), rng.standard_normal((D, V)), rng.standard_normal(V)
    y = rng.integers(0, V, N)
    y[:6] = -100  # shard 0 keeps 2 rows, the others 8: a pmean of local means would be wrong
    weight = rng.uniform(0.5, 2.0, V)
    return X, W, b, y, weight


def expect(ok: bool, what: str) -> None:
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        sys.exit(1)


def agree(actual: object, expected: object, what: str) -> None:
    verdict = compare(np.asarray(actual), expected, TOL, label=what, gradient=np.ndim(expected) > 0)
    expect(verdict.ok, verdict.message)


def main() -> None:
    expect(jax.device_count() == 8, f"8 devices ({jax.device_count()} found)")
    X, W, b, y, weight = inputs()
    options = {**OPTIONS, "weight": weight}
    single_loss, single = compiled.linear_cross_entropy(X, W, y, bias=b, chunk_size=CHUNK, **options)
    oracle_loss, oracle = reference.linear_cross_entropy(X, W, y, bias=b, **options)
    agree(single_loss, oracle_loss, "unsharded loss vs autodiff")
    mesh = jax.make_mesh((8,), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))  # GSPMD propagates shardings
    rows, replicated = NamedSharding(mesh, P("batch", None)), NamedSharding(mesh, P())
    with jax.enable_x64(True):
        Xs, ys = jax.device_put(X, rows), jax.device_put(y, NamedSharding(mesh, P("batch")))
        Ws, bs, ws = (jax.device_put(a, replicated) for a in (W, b, weight))
        loss, grads = compiled.linear_cross_entropy(Xs, Ws, ys, bias=bs, chunk_size=CHUNK, **{**options, "weight": ws})
        expect(isinstance(loss, jax.Array) and loss.ndim == 0, f"the loss is a 0-d jax.Array ({type(loss).__name__})")
        expect(all(isinstance(g, jax.Array) for g in grads.values()), "the gradients are jax.Arrays")
        expect(
            grads["X"].sharding.is_equivalent_to(rows, 2), f"dX stays sharded over the batch ({grads['X'].sharding})"
        )
        agree(loss, single_loss, "sharded loss vs unsharded")
        for key in single:
            agree(grads[key], single[key], f"sharded d{key} vs unsharded")
            agree(grads[key], oracle[key], f"sharded d{key} vs autodiff")
        explicit_shard_map(mesh, Xs, Ws, bs, ys, ws, single_loss, single)


def explicit_shard_map(mesh, Xs, Ws, bs, ys, ws, single_loss, single) -> None:
    """The same result with the reduction over the batch written out: local sums, one psum each."""
    e, c = jnp.asarray(OPTIONS["label_smoothing"]), jnp.asarray(OPTIONS["softcap"])
    zero = jnp.asarray(0.0)

    def per_shard(X_l, W, b, y_l, w):
        # "sum" inside the shard: r_i = k_i, so dX_l, dW_l = X_l^T dS_l, db_l = 1^T dS_l are local sums (eq. 27)
        loss_l, dX_l, dW_l, db_l = compiled.linear_cross_entropy_core(
            X_l, W, y_l, b, w, e, zero, c, ignore_index=-100, reduction="sum", chunk_size=CHUNK
        )
        kept_weight = jnp.sum(jnp.where(y_l != -100, w[jnp.where(y_l != -100, y_l, 0)], 0.0))
        total = jax.lax.psum(kept_weight, "batch")  # eq. (20): D_n over the whole batch
        local_mean = loss_l / kept_weight
        return (
            jax.lax.psum(loss_l, "batch") / total,
            dX_l / total,
            jax.lax.psum(dW_l, "batch") / total,
            jax.lax.psum(db_l, "batch") / total,
            jax.lax.pmean(local_mean, "batch"),
        )

    mapped = jax.jit(
        jax.shard_map(
            per_shard,
            mesh=mesh,
            in_specs=(P("batch", None), P(), P(), P("batch"), P()),
            out_specs=(P(), P("batch", None), P(), P(), P()),
        )
    )
    loss, dX, dW, db, mean_of_means = mapped(Xs, Ws, bs, ys, ws)
    agree(loss, single_loss, "shard_map: psum of local losses / psum of kept weights vs single device")
    agree(dX, single["X"], "shard_map: dX vs single device")
    agree(dW, single["W"], "shard_map: psum of X_l^T dS_l vs single device dW")
    agree(db, single["b"], "shard_map: psum of 1^T dS_l vs single device db")
    gap = abs(float(mean_of_means) - float(single_loss)) / abs(float(single_loss))
    expect(gap > 1e-3, f"a pmean of local means is not the global mean (relative gap {gap:.2g})")
    replicated_weight_gradient(mesh, Xs, Ws, bs, ys, ws, single)


def replicated_weight_gradient(mesh, Xs, Ws, bs, ys, ws, single) -> None:
    """Under shard_map's default check_vma=True, jax.grad of a replicated W already sums over shards."""

    def per_shard(X_l, W, b, y_l, w):
        total = jax.lax.psum(jnp.sum(jnp.where(y_l != -100, w[jnp.where(y_l != -100, y_l, 0)], 0.0)), "batch")
        options = {"weight": w, "ignore_index": -100, "label_smoothing": OPTIONS["label_smoothing"]}
        options["softcap"] = OPTIONS["softcap"]

        def local(W):
            return losses.linear_cross_entropy_value(X_l, W, y_l, b, "sum", **options) / total

        dW = jax.grad(local)(W)
        return dW, jax.lax.psum(dW, "batch")

    mapped = jax.jit(
        jax.shard_map(
            per_shard, mesh=mesh, in_specs=(P("batch", None), P(), P(), P("batch"), P()), out_specs=(P(), P())
        )
    )
    dW, dW_psummed = mapped(Xs, Ws, bs, ys, ws)
    agree(dW, single["W"], "jax.grad inside shard_map: dW of a replicated W is already the sum over shards")
    ratio = float(jnp.linalg.norm(dW_psummed) / jnp.linalg.norm(dW))
    expect(abs(ratio - 8) < 1e-9, f"an extra psum makes it {ratio:.6g}x too large on 8 devices")


if __name__ == "__main__":
    main()
