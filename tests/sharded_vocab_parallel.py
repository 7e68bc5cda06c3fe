"""Run as a script on 8 simulated CPU devices (``tests/test_vocab_parallel.py`` starts it).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.sharded_vocab_parallel

The vocabulary across devices (derivation section 10), through the public
``manual.compiled`` functions on meshes built as a JAX user builds them
(``jax.make_mesh``: Explicit axes by default, or Auto; with and without
``jax.set_mesh``): batch x vocabulary meshes 2x4, 1x8 and 8x1; every option
alone and together, "mean" and "sum", float64 and float32, against the
unsharded NumPy result and the JAX autodiff oracle; outputs sharded like their
inputs; the collectives counted in the compiled HLO; the working memory per
device from the compiled memory analysis; V not divisible by the vocabulary
axis (padded, inside ``jit``); "none" with a random cotangent and masked
classes, a vocabulary device's whole block among them; shardings it cannot
honour refused with the axis named. Prints one line per check, then a summary, and exits non-zero on
the first failure.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import reference
from manual import compiled, sharded, vectorized
from softmax_grad.compare import compare
from softmax_grad.tolerances import tolerance

N, D, V, CHUNK = 16, 6, 40, 3  # 5 classes a device on 8: chunks of 3 leave one narrower chunk in every block
RNG = np.random.default_rng(22)
X64, W64, B64 = RNG.standard_normal((N, D)), RNG.standard_normal((D, V)), 0.5 * RNG.standard_normal(V)
Y = RNG.integers(0, V, N)
Y_IGNORED = np.where(np.arange(N) % 5 == 1, -100, Y)  # batch shards keep different numbers of rows
WEIGHT = RNG.uniform(0.3, 2.0, V)
ALL = {"weight": WEIGHT, "ignore_index": -100, "label_smoothing": 0.2, "z_loss": 0.05, "softcap": 2.0}
ALONE = {
    "plain": {},
    "weight": {"weight": WEIGHT},
    "ignore_index": {"ignore_index": -100},
    "label_smoothing": {"label_smoothing": 0.3},
    "z_loss": {"z_loss": 0.1},
    "softcap": {"softcap": 1.5},
    "all": ALL,
}
MESHES_MEASURED = ((2, 4), (1, 8))  # the HLO and the memory (one compilation each; 8x1 has no vocabulary axis)
THOROUGH = os.environ.get("SOFTMAX_GRAD_PROFILE") == "thorough"  # a few more meshes and layouts, more compilations
checks = 0


def expect(ok: bool, what: str) -> None:
    global checks
    checks += 1
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        sys.exit(1)


def agree(actual: object, expected: object, dtype: type, oracle: str, what: str) -> None:
    tol = tolerance(np.dtype(dtype).name, oracle)
    gradient = np.ndim(expected) > 0
    verdict = compare(np.asarray(actual), expected, tol, label=what, dtype=np.dtype(dtype) if gradient else None,
                      gradient=gradient)  # fmt: skip
    expect(verdict.ok, verdict.message)


def mesh_of(shape: tuple[int, int], auto: bool = False) -> jax.sharding.Mesh:
    types = {"axis_types": (AxisType.Auto, AxisType.Auto)} if auto else {}  # Explicit is jax.make_mesh's default
    return jax.make_mesh(shape, ("batch", "vocab"), **types)


def on_mesh(mesh, batch, vocab, X, W, y, bias, weight):
    put = lambda a, spec: None if a is None else jax.device_put(a, NamedSharding(mesh, spec))  # noqa: E731
    return put(X, P(batch, None)), put(W, P(None, vocab)), put(y, P(batch)), put(bias, P(vocab)), put(weight, P(vocab))


def run_case(mesh, name, options, reduction, dtype, batch="batch", vocab="vocab", *, oracle=False, context=False,
             chunk=None):  # fmt: skip
    """One call on the mesh against the unsharded NumPy result (and the autodiff oracle when asked)."""
    options = dict(options)
    y = Y_IGNORED if "ignore_index" in options else Y
    X, W, b = (a.astype(dtype) for a in (X64, W64, B64))
    weight = options.pop("weight", None)
    weight = None if weight is None else weight.astype(dtype)
    label = f"{'x'.join(map(str, mesh.devices.shape))} {mesh.axis_types[0].name} {name} {reduction} {np.dtype(dtype)}"
    label += f" chunks of {chunk}" if chunk else ""
    expected_loss, expected = vectorized.linear_cross_entropy(
        X, W, y, bias=b, weight=weight, reduction=reduction, chunk_size=chunk, **options
    )
    with jax.enable_x64(dtype == np.float64):
        Xs, Ws, ys, bs, ws = on_mesh(mesh, batch, vocab, X, W, y, b, weight)
        call = lambda: compiled.linear_cross_entropy(  # noqa: E731
            Xs, Ws, ys, bias=bs, weight=ws, reduction=reduction, chunk_size=chunk, **options
        )
        if context:
            with jax.set_mesh(mesh):
                loss, grads = call()
        else:
            loss, grads = call()
    agree(loss, expected_loss, dtype, "autodiff", f"{label}: loss vs unsharded")
    for key in expected:
        agree(grads[key], expected[key], dtype, "autodiff", f"{label}: d{key} vs unsharded")
    want = {"X": P(batch, None), "W": P(None, vocab), "b": P(vocab)}
    for key, spec in want.items():
        got = grads[key].sharding
        same = got.mesh == mesh and got.is_equivalent_to(NamedSharding(mesh, spec), grads[key].ndim)
        expect(same and isinstance(grads[key], jax.Array), f"{label}: d{key} stays on the mesh as {spec} ({got.spec})")
    if oracle:
        weight64 = None if weight is None else weight.astype(np.float64)
        oracle_loss, oracle_grads = reference.linear_cross_entropy(
            X, W, y, bias=b, weight=weight64, reduction=reduction, **options
        )
        agree(loss, oracle_loss, dtype, "autodiff", f"{label}: loss vs autodiff")
        for key in oracle_grads:
            agree(grads[key], oracle_grads[key], dtype, "autodiff", f"{label}: d{key} vs autodiff")


def every_option_on_2x4() -> None:
    mesh = mesh_of((2, 4))
    for name, options in ALONE.items():  # the weights and the ignored label are traced: one compilation, two with a cap
        run_case(mesh, name, options, "mean", np.float64, oracle=name == "all")
    run_case(mesh, "all", ALL, "sum", np.float64, oracle=True, chunk=CHUNK)
    run_case(mesh, "all", ALL, "mean", np.float32, oracle=True, chunk=CHUNK)


def other_meshes_and_layouts() -> None:
    run_case(mesh_of((1, 8)), "all", ALL, "mean", np.float64, chunk=CHUNK)
    run_case(mesh_of((8, 1)), "all", ALL, "sum", np.float32)
    if THOROUGH:
        run_case(mesh_of((1, 8)), "all", ALL, "sum", np.float32)
        run_case(mesh_of((8, 1)), "all", ALL, "mean", np.float64, chunk=CHUNK)
        run_case(mesh_of((2, 4)), "all", ALL, "sum", np.float32)
    auto = mesh_of((2, 4), auto=True)
    run_case(auto, "all", ALL, "mean", np.float64)
    run_case(auto, "all", ALL, "mean", np.float64, context=True)
    run_case(mesh_of((2, 4)), "all", ALL, "mean", np.float64, context=True)
    run_case(mesh_of((2, 4)), "all, batch only", ALL, "mean", np.float64, vocab=None)
    run_case(mesh_of((2, 4)), "all, vocabulary only", ALL, "mean", np.float64, batch=None)
    if THOROUGH:
        run_case(mesh_of((2, 4)), "all, replicated", ALL, "mean", np.float64, batch=None, vocab=None)


def scores_on_the_mesh() -> None:
    mesh = mesh_of((2, 4))
    S = X64 @ W64 + B64
    targets = RNG.uniform(0, 1, (N, V))
    for label, y, options in (("labels", Y_IGNORED, ALL), ("soft targets", targets, {**ALL, "ignore_index": None})):
        expected_loss, expected = reference.softmax_loss(S, y, **options)
        with jax.enable_x64(True):
            Ss = jax.device_put(S, NamedSharding(mesh, P("batch", "vocab")))
            ys = jax.device_put(y, NamedSharding(mesh, P("batch") if y.ndim == 1 else P("batch", "vocab")))
            loss, dS = compiled.softmax_loss(Ss, ys, **{**options, "weight": jax.device_put(options["weight"])})
        agree(loss, expected_loss, np.float64, "autodiff", f"softmax_loss, {label}, scores 2x4: loss vs autodiff")
        agree(dS, expected, np.float64, "autodiff", f"softmax_loss, {label}, scores 2x4: dS vs autodiff")
        expect(dS.sharding.spec == P("batch", "vocab"), f"softmax_loss, {label}: dS keeps the scores' sharding")


def uneven_vocabulary_inside_jit() -> None:
    """V = 37 on 4 vocabulary devices: the core pads to 40 classes, masks 3 and cuts them from dW and db."""
    mesh = mesh_of((2, 4), auto=True)
    layout = sharded.Layout(mesh, "batch", "vocab", mesh)
    W, b, w = W64[:, :37], B64[:37], WEIGHT[:37]
    options = {**ALL, "weight": w}
    labels = np.where(Y_IGNORED < 0, -100, Y_IGNORED % 37)
    expected_loss, expected = reference.linear_cross_entropy(X64, W, labels, bias=b, **options)
    with jax.enable_x64(True):
        y = jnp.asarray(labels)
        scalars = tuple(jnp.asarray(ALL[k]) for k in ("label_smoothing", "z_loss", "softcap"))
        step = jax.jit(
            lambda X, W: sharded.linear_cross_entropy_core(
                X, W, y, jnp.asarray(b), jnp.asarray(w), *scalars, layout=layout, ignore_index=-100, chunk_size=CHUNK
            )
        )
        loss, dX, dW, db = step(jnp.asarray(X64), jnp.asarray(W))
    agree(loss, expected_loss, np.float64, "autodiff", "V = 37 on 4 devices, padded inside jit: loss vs autodiff")
    for key, got in (("X", dX), ("W", dW), ("b", db)):
        agree(got, expected[key], np.float64, "autodiff", f"V = 37 on 4 devices: d{key} vs autodiff")


def none_cotangent_and_masks() -> None:
    """The reduction "none" with a random cotangent (mixed signs, zeros) and masked classes, float64, on a 2 x 4 mesh.

    ``linear_cross_entropy``: a bias of -inf on classes 30-39, so that the last vocabulary device holds
    masked classes only (its local max is -inf for every row), and on 3 more; ``softmax_loss`` on scores split
    2 x 4: every even row masked at classes 10-19, the second vocabulary device's whole block. Against the
    unsharded result (NumPy in, the one-device program: tests/test_compiled.py checks it against a direct
    formula): row losses split like y, gradients exactly 0 at the masked classes, nothing NaN.
    """
    mesh = mesh_of((2, 4))
    rng = np.random.default_rng(57)
    g = rng.standard_normal(N) * (np.arange(N) % 4 != 0)  # every fourth cotangent 0
    bias = B64.copy()
    bias[30:] = -np.inf
    bias[[3, 17, 22]] = -np.inf
    masked = np.isneginf(bias)
    options = {"ignore_index": -100, "z_loss": 0.05, "softcap": 2.0}
    y = np.where(np.arange(N) % 5 == 1, -100, rng.choice(np.flatnonzero(~masked), N))
    expected_loss, expected = compiled.linear_cross_entropy(
        X64, W64, y, bias=bias, weight=WEIGHT, reduction="none", grad_output=g, chunk_size=CHUNK, **options
    )
    with jax.enable_x64(True):
        Xs, Ws, ys, bs, ws = on_mesh(mesh, "batch", "vocab", X64, W64, y, bias, WEIGHT)
        gs = jax.device_put(g, NamedSharding(mesh, P("batch")))
        loss, grads = compiled.linear_cross_entropy(
            Xs, Ws, ys, bias=bs, weight=ws, reduction="none", grad_output=gs, chunk_size=CHUNK, **options
        )
    label = "2x4 none, random cotangent, bias -inf on a whole device's block"
    split = loss.shape == (N,) and loss.sharding.spec == P("batch")
    expect(split, f"{label}: row losses split like y ({loss.sharding.spec})")
    agree(loss, expected_loss, np.float64, "autodiff", f"{label}: row losses vs unsharded")
    for key in expected:
        agree(grads[key], expected[key], np.float64, "autodiff", f"{label}: d{key} vs unsharded")
    zero = not np.asarray(grads["W"])[:, masked].any() and not np.asarray(grads["b"])[masked].any()
    expect(zero and np.isfinite(np.asarray(grads["X"])).all(), f"{label}: dW, db exactly 0 at masked classes, no NaN")

    S = X64 @ W64 + B64
    S[::2, 10:20] = -np.inf
    labels = np.where(np.arange(N) % 2 == 0, Y % 10, Y)  # even rows: a class of the first block, never masked
    expected_loss, expected_dS = compiled.softmax_loss(S, labels, reduction="none", grad_output=g, **options)
    with jax.enable_x64(True):
        Ss = jax.device_put(S, NamedSharding(mesh, P("batch", "vocab")))
        ys = jax.device_put(labels, NamedSharding(mesh, P("batch")))
        gs = jax.device_put(g, NamedSharding(mesh, P("batch")))
        loss, dS = compiled.softmax_loss(Ss, ys, reduction="none", grad_output=gs, **options)
    label = "softmax_loss, scores 2x4, none, a device's block masked for half the rows"
    agree(loss, expected_loss, np.float64, "autodiff", f"{label}: row losses vs unsharded")
    agree(dS, expected_dS, np.float64, "autodiff", f"{label}: dS vs unsharded")
    expect(not np.asarray(dS)[np.isneginf(S)].any() and np.isfinite(np.asarray(dS)).all(), f"{label}: dS 0 there")


def label_entry_without_cancellation() -> None:
    """Eq. (31) across devices: a row sure of its label (it leads by 30, ``1 - p_y = 1.3e-13``), classes on 4
    vocabulary devices, float64. The label's entry ``-sum_{j != y} e^{s_j} / sum_j e^{s_j}`` against 50 digits
    (mpmath); formed as ``p_y - 1`` it would be about 1e-3 off."""
    import mpmath

    mpmath.mp.dps = 50
    row = np.array([0.0, -30.0, -31.0, -32.0, -30.5, -31.5, -33.0, -34.0])  # the label 0 on the first device
    exact = [mpmath.exp(mpmath.mpf(float(s))) for s in row]
    entry = float(-sum(exact[1:]) / sum(exact))
    mesh = mesh_of((2, 4))
    with jax.enable_x64(True):
        Xs, Ws, ys, _, _ = on_mesh(mesh, "batch", "vocab", np.ones((2, 1)), row[None, :], np.zeros(2, int), None, None)
        _, grads = compiled.linear_cross_entropy(Xs, Ws, ys, reduction="sum")
        Ss = jax.device_put(np.stack([row, row]), NamedSharding(mesh, P("batch", "vocab")))
        _, dS = compiled.softmax_loss(Ss, ys, reduction="sum")
    found = {"linear_cross_entropy dW[0, y] / 2": float(np.asarray(grads["W"])[0, 0]) / 2}
    found["softmax_loss dS[0, y]"] = float(np.asarray(dS)[0, 0])
    for what, got in found.items():
        error = abs(got - entry) / abs(entry)
        expect(error < 1e-12, f"2x4, p_y = 1 - {-entry:.2g}: {what} {got:.6g} vs {entry:.6g} (relative {error:.1e})")


def refusals() -> None:
    mesh = mesh_of((2, 4))
    X = jax.device_put(X64[:, :4], NamedSharding(mesh, P(None, "vocab")))
    W = jax.device_put(W64[:4], NamedSharding(mesh, P(None, "vocab")))
    for what, call, axis in (
        ("X split along D", lambda: compiled.linear_cross_entropy(X, W64[:4], Y), "'vocab'"),
        ("one axis for both", lambda: compiled.linear_cross_entropy(
            jax.device_put(X64, NamedSharding(mesh, P("vocab"))), W, Y), "'vocab'"),
        ("stable=False on a mesh", lambda: compiled.softmax_loss(
            jax.device_put(X64, NamedSharding(mesh, P("batch"))), Y % D, stable=False), "stable=False"),
    ):  # fmt: skip
        try:
            call()
            expect(False, f"{what}: refused")
        except ValueError as error:
            expect(axis in str(error), f"{what}: ValueError naming the axis ({error})")


def collectives_and_memory() -> None:
    """One compilation a mesh, every option on: count its collectives, read its working memory per device.

    N=64, D=16, V=4096, float32, one chunk a device; against the unsharded
    ``compiled.linear_cross_entropy_core`` on one device.
    """
    n, d, v = 64, 16, 4096
    args = (jnp.ones((n, d)), jnp.ones((d, v)), jnp.zeros(n, jnp.int32), jnp.ones(v), jnp.ones(v))
    scalars = (jnp.asarray(0.1), jnp.asarray(0.1), jnp.asarray(2.0))
    single = compiled.linear_cross_entropy_core.lower(*args, *scalars, ignore_index=-100).compile()
    unsharded = single.memory_analysis().temp_size_in_bytes
    for kb, kv in MESHES_MEASURED:
        mesh = mesh_of((kb, kv), auto=True)
        core = functools.partial(
            sharded.linear_cross_entropy_core, layout=sharded.Layout(mesh, "batch", "vocab", mesh), ignore_index=-100
        )
        program = jax.jit(core).lower(*args, *scalars).compile()
        text = program.as_text()
        reduces = [line for line in text.splitlines() if re.search(r"= \S.* all-reduce\(", line)]
        vocab_groups = str([[int(device.id) for device in row] for row in mesh.devices]).replace(" ", "")
        vocab_groups = vocab_groups.replace("[", "{").replace("]", "}")
        n_local, v_local = n // kb, v // kv
        moved = [shape for line in reduces for shape in re.findall(r"f32\[([\d,]*)\]", line.split("all-reduce(")[0])]
        maxes = [line for line in reduces if "pmax" in line]
        summary = f"{kb}x{kv}: {len(reduces)} all-reduce ops moving {sorted(moved, key=len)}"
        others = [op for op in ("all-gather", "all-to-all", "collective-permute", "reduce-scatter") if op + "(" in text]
        expect(not others, f"{summary}; no {others or 'all-gather, all-to-all, permute or reduce-scatter'}")
        expect(f"{n_local},{v_local}" not in moved, f"{kb}x{kv}: no block of logits ({n_local},{v_local}) is reduced")
        expect(len(maxes) == 1 and f"f32[{n_local}]" in maxes[0], f"{kb}x{kv}: one pmax of the row maxima (46)")
        dX = [line for line in reduces if f"f32[{n_local},{d}]" in line.split("all-reduce(")[0]]
        expect(len(dX) == 1 and (kb == 1 or vocab_groups in dX[0]), f"{kb}x{kv}: one psum of dX (53)")
        temp = program.memory_analysis().temp_size_in_bytes
        line = (f"working memory per device, {kb}x{kv} at N={n}, D={d}, V={v} float32: {temp / 2**10:.0f} KiB "
                f"against {unsharded / 2**10:.0f} KiB unsharded ({temp / unsharded:.3f}; 1/8 = 0.125)")  # fmt: skip
        expect(temp / unsharded < 2.0 / 8, line)


def readme_example() -> None:
    """README's section "The vocabulary across devices": its example needs 8 devices, so it runs here."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("```python\n", readme.index("## The vocabulary across devices\n")) + len("```python\n")
    exec(readme[start : readme.index("```", start)], {})
    expect(True, "README's vocabulary-parallel example runs on a default 2 x 4 jax.make_mesh")


def main() -> None:
    expect(jax.device_count() == 8, f"8 devices ({jax.device_count()} found)")
    every_option_on_2x4()
    other_meshes_and_layouts()
    scores_on_the_mesh()
    uneven_vocabulary_inside_jit()
    none_cotangent_and_masks()
    label_entry_without_cancellation()
    refusals()
    collectives_and_memory()
    readme_example()
    print(f"{checks} checks passed")


if __name__ == "__main__":
    main()
