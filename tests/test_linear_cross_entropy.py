"""Linear cross-entropy (derivation section 8): every variant against both oracles, chunked and not.

The chunk sizes 1, 7, V-1, V and 2V (one class a chunk, a width that does not
divide V, one class left over, the dense form, wider than V); every loss option
alone and together; both reductions; with and without a bias; float64 and
float32. Then float32 at V > 5000 against the float64 oracle, the memory of the
chunked paths, bad input, and the sharded batch (a subprocess on 8 simulated
CPU devices).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.workloads import working_memory
from manual import compiled, vectorized
from softmax_grad.cases import Case, compare_results
from tests.conftest import ORACLES, VARIANTS

ROOT = Path(__file__).resolve().parent.parent
N, D, V = 6, 3, 11
RNG = np.random.default_rng(2026)
X = RNG.standard_normal((N, D))
W = RNG.standard_normal((D, V))
BIAS = 0.5 * RNG.standard_normal(V)
Y = RNG.integers(0, V, N)
Y_IGNORED = np.where(np.arange(N) % 3 == 1, -100, Y)  # rows 1 and 4 ignored
WEIGHT = RNG.uniform(0.2, 2.0, V)

OPTIONS = {
    "plain": {},
    "sum": {"reduction": "sum"},
    "weight": {"weight": WEIGHT},
    "ignore_index": {"ignore_index": -100},
    "label_smoothing": {"label_smoothing": 0.3},
    "z_loss": {"z_loss": 0.1},
    "softcap": {"softcap": 1.2},  # |S| reaches 3-4 here: the cap acts, its factor 1 - tanh^2 matters
    "all": {"weight": WEIGHT, "ignore_index": -100, "label_smoothing": 0.2, "z_loss": 0.05, "softcap": 1.5},
    "all, sum": {"reduction": "sum", "weight": WEIGHT, "ignore_index": -100, "label_smoothing": 0.2, "softcap": 1.5},
}
CHUNKS = {"1": 1, "7": 7, "V-1": V - 1, "V": V, "2V": 2 * V}
_EXPECTED: dict[tuple, object] = {}


def case(options: str, bias: bool = True, chunk: int | None = 7) -> Case:
    kwargs = dict(OPTIONS[options])
    y = Y_IGNORED if "ignore_index" in kwargs else Y
    extra = {"bias": BIAS} if bias else {}
    return Case(
        f"{options}{', bias' if bias else ''}",
        "linear_cross_entropy",
        (X, W, y),
        {**extra, **kwargs, "chunk_size": chunk},
    )


def check(variant_module, case_: Case, oracle: str = "autodiff", label: str = "") -> None:
    key = (case_.id, case_.dtype.name, oracle)
    if key not in _EXPECTED:
        _EXPECTED[key] = case_.call(ORACLES[oracle])
    failures = [
        c.message for c in compare_results(case_, case_.call(variant_module), _EXPECTED[key], oracle, label) if not c.ok
    ]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("chunk", CHUNKS.values(), ids=CHUNKS.keys())
@pytest.mark.parametrize(
    "options, dtype", [("plain", np.float64), ("all", np.float64), ("all", np.float32)], ids=["plain", "all", "all f32"]
)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_chunk_size_agrees_with_autodiff(variant, options, dtype, chunk):
    check(VARIANTS[variant], case(options, bias=options == "plain", chunk=chunk).astype(dtype), label=variant)


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_option_agrees_with_autodiff(variant, options):
    # float64, with a bias for every other option set (float32 and both bias settings: the chunk-size test)
    check(VARIANTS[variant], case(options, bias=list(OPTIONS).index(options) % 2 == 0), label=variant)


@pytest.mark.parametrize("options", OPTIONS)
def test_the_two_oracles_agree(options):
    check(ORACLES["autodiff"], case(options), oracle="finite_differences", label="autodiff")


@pytest.mark.parametrize("variant", VARIANTS)
def test_finite_differences_confirm_the_soft_capped_gradient(variant):
    check(VARIANTS[variant], case("all"), oracle="finite_differences", label=variant)


def test_the_soft_cap_acts_in_these_cases():
    # Guard for the soft-capped tests: dropping the factor 1 - tanh^2 must change the gradient a lot.
    S = X @ W + BIAS
    factor = 1 - np.tanh(S / OPTIONS["softcap"]["softcap"]) ** 2
    assert factor.min() < 0.05 and factor.max() > 0.9


def test_every_row_ignored_gives_nan_mean_and_zero_gradient():
    y = np.full(N, -100)
    for name, module in VARIANTS.items():
        loss, grads = module.linear_cross_entropy(X, W, y, bias=BIAS, ignore_index=-100, chunk_size=4)
        assert np.isnan(loss), name
        assert all(not g.any() for g in grads.values()), name
        loss, grads = module.linear_cross_entropy(X, W, y, bias=BIAS, ignore_index=-100, reduction="sum", chunk_size=4)
        assert loss == 0 and all(not g.any() for g in grads.values()), name


@pytest.mark.parametrize("chunk", [4, None], ids=["chunked", "dense"])
def test_kept_rows_all_of_weight_zero_give_nan_mean_and_zero_gradient(chunk):
    # D_n = 0 in eq. (20): the loss is NaN and r_i = 0, even though smoothing spreads weight over other classes.
    weight = np.ones(V)
    weight[Y] = 0.0
    for name, module in VARIANTS.items():
        loss, grads = module.linear_cross_entropy(X, W, Y, weight=weight, label_smoothing=0.2, chunk_size=chunk)
        assert np.isnan(loss), name
        assert all(not g.any() for g in grads.values()), f"{name}: {[np.abs(g).max() for g in grads.values()]}"


# ------------------------------------------------------------- vocabulary scale, float32
def large_case(options: dict, chunk: int | None) -> Case:
    rng = np.random.default_rng(5)
    n, d, v = 48, 16, 5003  # 5003 is prime: no chunk width divides it
    X_, W_ = rng.standard_normal((n, d)), rng.standard_normal((d, v)) / 2
    y = rng.integers(0, v, n)
    kwargs = {"bias": rng.standard_normal(v), **options, "chunk_size": chunk}
    return Case(f"N={n} D={d} V={v}", "linear_cross_entropy", (X_, W_, y), kwargs).astype(np.float32)


@pytest.mark.parametrize("chunk", [512, None], ids=["chunk 512", "default chunk"])
@pytest.mark.parametrize("options", ["plain", "all"])
@pytest.mark.parametrize("variant", ["per_row", "vectorized", "compiled"])
def test_float32_at_vocabulary_scale_agrees_with_the_float64_oracle(variant, options, chunk):
    chosen = {"label_smoothing": 0.2, "z_loss": 0.05, "softcap": 1.5} if options == "all" else {}
    check(VARIANTS[variant], large_case(chosen, chunk), label=f"{variant} float32")


# ------------------------------------------------------------- memory
# Blocks of (N x chunk) logits each NumPy variant may hold at once: the textbook form keeps its equations'
# arrays (Z, P, Q, dZ, dS, a one-hot) apart; the tuned one works in place in one reused buffer.
BLOCKS_HELD = {"vectorized": 8, "tuned": 2}


@pytest.mark.parametrize("variant", list(BLOCKS_HELD))
@pytest.mark.parametrize("chunk", [7, 512, None], ids=["chunk 7", "chunk 512", "default"])
def test_the_chunked_numpy_paths_never_hold_the_logits(chunk, variant):
    from manual._options import class_chunk_width

    rng = np.random.default_rng(0)
    n, d, v = 4096, 4, 8192  # the logits would be 128 MiB in float32
    X_, W_ = rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((d, v)).astype(np.float32)
    y = rng.integers(0, v, n)
    if chunk == 7:  # thousands of chunks: a narrower batch keeps the test fast, the logits still 16 MiB
        X_, y = X_[:512], y[:512]
    logits, block = X_.shape[0] * v * 4, X_.shape[0] * class_chunk_width(X_.shape[0], v, chunk) * 4
    module = VARIANTS[variant]
    used = working_memory(lambda: module.linear_cross_entropy(X_, W_, y, chunk_size=chunk, label_smoothing=0.1))
    assert used < logits, f"{used / 2**20:.1f} MiB of working memory against {logits / 2**20:.0f} MiB of logits"
    vectors = 2**20  # the (N,) and (V,) vectors: row factors, m, s, lse, the labels' terms
    assert used <= BLOCKS_HELD[variant] * block + vectors, f"{used / 2**20:.1f} MiB, blocks of {block / 2**20:.2f} MiB"


def test_the_memory_measure_sees_the_dense_logits():
    # The control: one chunk as wide as V is the dense form (25), and the measure must show its logits.
    rng = np.random.default_rng(0)
    X_, W_ = rng.standard_normal((512, 4)).astype(np.float32), rng.standard_normal((4, 8192)).astype(np.float32)
    used = working_memory(lambda: vectorized.linear_cross_entropy(X_, W_, rng.integers(0, 8192, 512), chunk_size=8192))
    assert used >= 512 * 8192 * 4


@pytest.mark.parametrize("chunk", [7, 1000, None], ids=["chunk 7", "chunk 1000", "default"])
def test_the_compiled_chunked_path_never_holds_the_logits(chunk):
    n, d, v = 4096, 4, 8192
    args = (jnp.zeros((n, d)), jnp.zeros((d, v)), jnp.zeros(n, jnp.int32), None, None, 0.0, 0.0, None)

    def temp_bytes(width):
        lowered = compiled.linear_cross_entropy_core.lower(*args, chunk_size=width)
        return lowered.compile().memory_analysis().temp_size_in_bytes

    width = min(chunk or 1024, v)
    assert temp_bytes(chunk) < min(n * v * 4 / 2, 4 * n * width * 4 + 2**20)  # a few (N x chunk) blocks at most
    assert temp_bytes(v) >= n * v * 4  # the control: the dense form does hold them


# ------------------------------------------------------------- device arrays
def test_compiled_takes_device_arrays_and_returns_device_arrays():
    kwargs = {"bias": BIAS.astype(np.float32), "chunk_size": 4, **OPTIONS["all"], "weight": WEIGHT.astype(np.float32)}
    host_loss, host = compiled.linear_cross_entropy(X.astype(np.float32), W.astype(np.float32), Y_IGNORED, **kwargs)
    device = {key: jnp.asarray(value) for key, value in kwargs.items() if isinstance(value, np.ndarray)}
    loss, grads = compiled.linear_cross_entropy(
        jnp.asarray(X, jnp.float32), jnp.asarray(W, jnp.float32), jnp.asarray(Y_IGNORED), **{**kwargs, **device}
    )
    assert isinstance(loss, jax.Array) and loss.shape == () and loss.dtype == jnp.float32
    assert set(grads) == {"X", "W", "b"} and all(isinstance(g, jax.Array) for g in grads.values())
    assert np.float32(loss) == np.float32(host_loss)
    for key in host:
        np.testing.assert_array_equal(np.asarray(grads[key]), host[key])


DEVICE_BAD = [
    ("X NaN", {"X": jnp.asarray(X).at[2, 1].set(jnp.nan)}, ValueError, r"X holds nan at index \(2, 1\)"),
    ("W inf", {"W": jnp.asarray(W).at[0, 3].set(jnp.inf)}, ValueError, r"W holds inf at index \(0, 3\)"),
    ("y too large", {"y": jnp.asarray(Y).at[4].set(V)}, ValueError, rf"y\[4\] = {V} is out of range"),
    ("y negative", {"y": jnp.asarray(Y).at[0].set(-1)}, ValueError, r"y\[0\] = -1 is out of range"),
    ("y float", {"y": jnp.asarray(Y, jnp.float32)}, TypeError, r"y must hold integer"),
    ("X 1-D", {"X": jnp.asarray(X[0])}, ValueError, r"X must be 2-D"),
    ("D mismatch", {"W": jnp.asarray(W[:2])}, ValueError, r"X has D = 3 columns but W has 2 rows"),
    ("bias length", {"bias": jnp.zeros(V - 1)}, ValueError, rf"bias has {V - 1} entries but W has V = {V}"),
    ("weight negative", {"weight": jnp.asarray(WEIGHT).at[5].set(-1.0)}, ValueError, r"weight\[5\] = -1.0 is negative"),
    ("chunk 0", {"chunk_size": 0}, ValueError, r"chunk_size must be a positive integer"),
]


@pytest.mark.parametrize("name, change, error, message", DEVICE_BAD, ids=[row[0] for row in DEVICE_BAD])
def test_device_arrays_are_checked_with_the_same_messages(name, change, error, message):
    arguments = {"X": jnp.asarray(X, jnp.float32), "W": jnp.asarray(W, jnp.float32), "y": jnp.asarray(Y)} | change
    keywords = {key: arguments.pop(key) for key in ("bias", "weight", "chunk_size") if key in arguments}
    with pytest.raises(error, match=message):
        compiled.linear_cross_entropy(arguments["X"], arguments["W"], arguments["y"], **keywords)


def test_a_batch_sharded_over_8_devices_gives_the_unsharded_result():
    environment = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-m", "tests.sharded_linear_cross_entropy"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("\nok ") >= 15 and "FAIL" not in run.stdout, run.stdout
