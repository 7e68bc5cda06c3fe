"""The compiled variant's two ways of finding the row max and sum, both checked on the CPU.

The public functions (tested with every variant) take the two-pass form on the
CPU; accelerators take the one-pass ("online") form. So that CI, which has no
GPU, still checks what a GPU runs, the one-pass form is compared here with the
autodiff oracle on every standard ``softmax_loss`` case.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manual
from manual import _on_device, compiled
from manual.compiled import softmax_loss_core
from softmax_grad.cases import compare_results, option_cases, standard_cases

CASES = [case for case in standard_cases() if case.function == "softmax_loss"]


@pytest.mark.parametrize("one_pass", [True, False], ids=["one pass", "two passes"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_both_row_reductions_agree_with_autodiff(case, dtype, one_pass, oracle_result):
    case = case.astype(dtype)
    S, y = case.args
    with jax.enable_x64(dtype == np.float64):
        loss, dS = softmax_loss_core(jnp.asarray(S), jnp.asarray(y), case.kwargs["reduction"], one_pass=one_pass)
        actual = (float(loss), np.asarray(dS))
    comparisons = compare_results(case, actual, oracle_result(case, "autodiff"), "autodiff", f"one_pass={one_pass}")
    failures = [c.message for c in comparisons if not c.ok]
    assert not failures, "\n".join(failures)


def test_the_cpu_default_is_two_passes():
    assert jax.default_backend() == "cpu"
    S = jnp.asarray(np.random.default_rng(0).standard_normal((4, 5)), jnp.float32)
    y = jnp.asarray([0, 1, 2, 3])
    default = softmax_loss_core(S, y)
    two_pass = softmax_loss_core(S, y, one_pass=False)
    assert np.array_equal(np.asarray(default[1]), np.asarray(two_pass[1]))


# ------------------------------------------------------------- device arrays in, device arrays out
DEVICE_CASES = [case for case in CASES + option_cases() if case.function == "softmax_loss"][::3]


class HostReadsRefused:
    """NumPy, except that reading a device array of more than 8 entries into it raises."""

    _device_get = staticmethod(jax.device_get)

    @staticmethod
    def _refuse(value: object) -> None:
        if isinstance(value, jax.Array) and value.size > 8:
            raise AssertionError(f"a device array of shape {value.shape} was read to the host")

    def asarray(self, value, *args, **kwargs):
        self._refuse(value)
        return np.asarray(value, *args, **kwargs)

    def array(self, value, *args, **kwargs):
        self._refuse(value)
        return np.array(value, *args, **kwargs)

    @staticmethod
    def device_get(value):
        jax.tree_util.tree_map(HostReadsRefused._refuse, value)
        return HostReadsRefused._device_get(value)

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", DEVICE_CASES, ids=[case.id for case in DEVICE_CASES])
def test_device_arrays_stay_on_the_device_and_agree_with_autodiff(case, dtype, oracle_result, monkeypatch):
    # jax.Array in: checked on device, computed there, jax.Array out. Only the check's few indices may
    # come to the host, so the NumPy the device path sees refuses to read any larger device array.
    # (JAX's transfer guard does not fire on the CPU backend.)
    case = case.astype(dtype)
    S, y = case.args
    kwargs = dict(case.kwargs)
    with jax.enable_x64(dtype == np.float64):
        S_dev, y_dev = jnp.asarray(S), jnp.asarray(y)
        if kwargs.get("weight") is not None:
            kwargs["weight"] = jnp.asarray(kwargs["weight"])
    for module in (compiled, _on_device):
        monkeypatch.setattr(module, "np", HostReadsRefused())
    monkeypatch.setattr(jax, "device_get", HostReadsRefused.device_get)
    loss, dS = compiled.softmax_loss(S_dev, y_dev, **kwargs)
    monkeypatch.undo()
    assert isinstance(loss, jax.Array) and loss.shape == () and isinstance(dS, jax.Array)
    assert dS.dtype == dtype and dS.shape == S.shape
    actual = (float(loss), np.asarray(dS))
    expected = oracle_result(case, "autodiff")
    failures = [c.message for c in compare_results(case, actual, expected, "autodiff", "device") if not c.ok]
    assert not failures, "\n".join(failures)


def _device_inputs(**change):
    S = np.random.default_rng(3).standard_normal((5, 4))
    inputs = {"scores": jnp.asarray(S, jnp.float32), "y": jnp.asarray([0, 1, 2, 3, 0])} | change
    return inputs.pop("scores"), inputs.pop("y"), inputs


NAN_SCORES = jnp.zeros((5, 4)).at[2, 1].set(jnp.nan)
BAD_ON_DEVICE = [
    ("NaN score", {"scores": NAN_SCORES}, ValueError, r"scores holds nan at index \(2, 1\)"),
    ("label too large", {"y": jnp.asarray([0, 1, 4, 3, 0])}, ValueError, r"y\[2\] = 4 is out of range"),
    ("negative label", {"y": jnp.asarray([0, -1, 2, 3, 0])}, ValueError, r"y\[1\] = -1 is out of range"),
    ("ignored label", {"y": jnp.asarray([0, -7, 2, 3, 0]), "ignore_index": -8}, ValueError, r"y\[1\] = -7"),
    ("negative soft target", {"y": jnp.ones((5, 4)).at[3, 2].set(-0.5)}, ValueError, r"y\[3, 2\] = -0.5 is negative"),
    ("soft target shape", {"y": jnp.ones((5, 3))}, ValueError, r"y has shape \(5, 3\), expected \(5, 4\)"),
    ("negative weight", {"weight": jnp.asarray([1.0, -2.0, 1.0, 1.0])}, ValueError, r"weight\[1\] = -2.0 is negative"),
    ("weight length", {"weight": jnp.ones(3)}, ValueError, r"weight has shape \(3,\)"),
    ("1-D scores", {"scores": jnp.zeros(4)}, ValueError, r"scores must be 2-D"),
    ("bad smoothing", {"label_smoothing": 1.5}, ValueError, r"label_smoothing must lie in \[0, 1\]"),
]


@pytest.mark.parametrize(
    ("change", "error", "match"), [b[1:] for b in BAD_ON_DEVICE], ids=[b[0] for b in BAD_ON_DEVICE]
)
def test_device_arrays_get_the_contracts_errors(change, error, match):
    S, y, kwargs = _device_inputs(**change)
    with pytest.raises(error, match=match):
        compiled.softmax_loss(S, y, **kwargs)


def test_an_ignore_index_outside_the_classes_is_exempt_on_device_too():
    S, y, _ = _device_inputs(y=jnp.asarray([0, -100, 2, 3, -100]))
    loss, dS = compiled.softmax_loss(S, y, ignore_index=-100)
    expected = compiled.softmax_loss(np.asarray(S), np.asarray(y), ignore_index=-100)
    assert np.isclose(float(loss), expected[0], rtol=1e-6) and np.allclose(np.asarray(dS), expected[1], atol=1e-7)


def test_integer_scores_on_device_are_computed_in_float64_as_numpy_ones_are():
    S = np.arange(12).reshape(3, 4) % 5
    y = np.array([0, 3, 1])
    with jax.enable_x64(True):
        loss, dS = compiled.softmax_loss(jnp.asarray(S), jnp.asarray(y))
    expected_loss, expected_dS = compiled.softmax_loss(S, y)
    assert dS.dtype == np.float64 and np.isclose(float(loss), expected_loss, rtol=1e-14)
    assert np.allclose(np.asarray(dS), expected_dS, rtol=1e-14, atol=0)
    with pytest.raises(TypeError, match="scores must hold real numbers"):
        compiled.softmax_loss(jnp.zeros((2, 2), bool), jnp.array([0, 1]))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        # -inf is a masked class (eq. 56); a row masked at every class has no softmax: its max is -inf
        ({"scores": jnp.zeros((5, 4)).at[3].set(-jnp.inf)}, r"row 3 of scores is -inf at every class"),
        (
            {"scores": jnp.zeros((5, 4)).at[1, 0].set(-jnp.inf).at[1, 3].set(jnp.nan)},
            r"scores holds nan at index \(1, 3\)",
        ),
        ({"scores": jnp.zeros((5, 4)).at[1, 0].set(jnp.inf)}, r"scores holds inf at index \(1, 0\)"),  # the row max
        ({"y": jnp.full((5, 4), 0.25).at[4, 1].set(jnp.nan)}, r"y holds nan at index \(4, 1\)"),
        ({"weight": jnp.ones(4).at[2].set(jnp.inf)}, r"weight holds inf at index \(2,\)"),
    ],
    ids=["row of -inf", "NaN beside -inf", "+inf score", "NaN soft target", "inf weight"],
)
def test_each_value_check_inside_the_compiled_program_is_seen(change, match):
    # The checks are one boolean computed beside the loss (row max and min of the scores): each way a value
    # can be bad must turn it False, and the error must still name the entry.
    S, y, kwargs = _device_inputs(**change)
    with pytest.raises(ValueError, match=match):
        compiled.softmax_loss(S, y, **kwargs)


def test_valid_device_input_runs_no_separate_check(monkeypatch):
    # The exact search for the bad entry (check_on_device) is for bad input only: valid input pays for one
    # boolean computed inside the loss's own compiled program, and nothing else.
    def refuse(*args, **kwargs):
        raise AssertionError("check_on_device ran on valid input")

    monkeypatch.setattr(compiled, "check_on_device", refuse)
    S, y, _ = _device_inputs()
    compiled.softmax_loss(S, y, weight=jnp.ones(4), label_smoothing=0.1)
    compiled.linear_cross_entropy(S, jnp.ones((4, 3)), jnp.asarray([0, 1, 2, 0, 1]), bias=jnp.zeros(3))


# ------------------------------------------------------------- the label entry without cancellation, eq. (30)
def exact_label_entry(
    row, label: int, *, weight=None, z_loss=0.0, softcap=None, label_smoothing=0.0, ignore_index=None
) -> float:
    """d loss / d S_y for one row (N = 1, "mean", its label kept), in 50-digit arithmetic: eqs. (17)-(24)."""
    import mpmath

    mpmath.mp.dps = 50
    C = len(row)
    S = [mpmath.mpf(float(s)) for s in row]
    w = [mpmath.mpf(1)] * C if weight is None else [mpmath.mpf(float(v)) for v in weight]
    Z = S if softcap is None else [softcap * mpmath.tanh(s / softcap) for s in S]
    m = max(Z)
    sums = sum(mpmath.exp(z - m) for z in Z)
    p_y = mpmath.exp(Z[label] - m) / sums
    others = sum(mpmath.exp(z - m) for j, z in enumerate(Z) if j != label) / sums  # 1 - p_y, no cancellation
    e = mpmath.mpf(label_smoothing)
    r = 1 / w[label]  # eq. (20) for one kept row
    entry = r * ((1 - e) * w[label] * (-others) + (e / C) * (sum(w) * p_y - w[label]))
    entry += 2 * z_loss * (m + mpmath.log(sums)) * p_y  # eq. (24)'s z-loss term
    if softcap is not None:
        entry *= 1 - mpmath.tanh(S[label] / softcap) ** 2
    return float(entry)


LABEL_ENTRY_OPTIONS = {
    "plain": {},
    "weight": {"weight": np.array([2.0, 0.5, 3.0])},
    "ignore_index": {"ignore_index": -100},
    "z_loss": {"z_loss": 1e-4},
    "softcap": {"softcap": 50.0},
    "smoothing": {"label_smoothing": 0.1},
}
RELATIVE = {np.float64: 1e-12, np.float32: 1e-5}  # cancellation gives 8e-4 at a lead of 30, and 0 past 37


@pytest.mark.parametrize("lead", [30, 40])
@pytest.mark.parametrize("device", [False, True], ids=["numpy", "device"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("options", LABEL_ENTRY_OPTIONS.values(), ids=LABEL_ENTRY_OPTIONS.keys())
def test_softmax_loss_label_entry_is_free_of_cancellation(options, dtype, device, lead):
    # S = [[0, -lead, -lead - 1]], y = 0: p_y - 1 = -exp(-lead)(1 + exp(-1)) / (1 + ...), about -1.28e-13 at a
    # lead of 30; computed as p_y - 1 it is 8e-4 off there and 0 past a lead of about 37.
    row = [0.0, -lead, -lead - 1.0]
    S, y = np.array([row], dtype), np.array([0])
    kwargs = dict(options)
    if device:
        with jax.enable_x64(dtype == np.float64):
            S, y = jnp.asarray(S), jnp.asarray(y)
    _, dS = compiled.softmax_loss(S, y, **kwargs)
    expected = exact_label_entry(row, 0, **options)
    assert expected != 0 and np.asarray(dS).dtype == dtype
    assert abs(float(np.asarray(dS)[0, 0]) - expected) <= RELATIVE[dtype] * abs(expected), (float(dS[0, 0]), expected)


@pytest.mark.parametrize("label", [0, 2], ids=["label first", "label last"])
@pytest.mark.parametrize("chunk_size", [1, 2, None], ids=["chunks of 1", "chunks of 2", "dense"])
@pytest.mark.parametrize("device", [False, True], ids=["numpy", "device"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("lead", [30, 40])
def test_linear_cross_entropy_label_entry_is_free_of_cancellation(lead, dtype, device, chunk_size, label):
    # X = [[1]], so the logits are W's one row and dW[0] is dS: the label's chunk keeps the other classes'
    # sum as its own running quantity; with chunks of 1 the label is a chunk alone.
    row = [0.0, -lead, -lead - 1.0] if label == 0 else [-lead, -lead - 1.0, 0.0]
    X, W, y = np.ones((1, 1), dtype), np.array([row], dtype), np.array([label])
    if device:
        with jax.enable_x64(dtype == np.float64):
            X, W, y = jnp.asarray(X), jnp.asarray(W), jnp.asarray(y)
    _, grads = compiled.linear_cross_entropy(X, W, y, chunk_size=chunk_size)
    expected = exact_label_entry(row, label)
    actual = float(np.asarray(grads["W"])[0, label])
    assert abs(actual - expected) <= RELATIVE[dtype] * abs(expected), (actual, expected)


# ------------------------------------------------------------- widths and weights (issue 20, item 5)
def test_float64_numpy_scores_beside_device_labels_stay_float64():
    S = np.random.default_rng(5).standard_normal((6, 5))
    y = np.array([0, 1, 2, 3, 4, 0])
    expected_loss, expected_dS = compiled.softmax_loss(S, y)
    loss, dS = compiled.softmax_loss(S, jnp.asarray(y))  # x64 off: the labels are int32 on the device
    assert dS.dtype == np.float64
    assert np.allclose(np.asarray(dS), expected_dS, rtol=1e-14, atol=1e-17)
    assert abs(float(loss) - expected_loss) <= 1e-14 * expected_loss


@pytest.mark.parametrize("which", ["weight", "soft targets"])
def test_float64_numpy_options_beside_float64_device_scores_are_not_rounded_to_float32(which):
    rng = np.random.default_rng(6)
    S = rng.standard_normal((6, 5))
    weight = np.array([1 / 3, 1 / 7, 2 / 9, 1.0, 5 / 11])  # none of these is a float32
    if which == "weight":
        y, kwargs = np.array([0, 1, 2, 3, 4, 0]), {"weight": weight}
    else:
        y, kwargs = rng.dirichlet(np.ones(5), 6) / 3, {}
    expected_loss, expected_dS = compiled.softmax_loss(S, y, **kwargs)
    with jax.enable_x64(True):
        S_device = jnp.asarray(S)
    loss, dS = compiled.softmax_loss(S_device, y, **kwargs)  # NumPy y / weight moved to the device at float64
    assert dS.dtype == np.float64
    assert np.allclose(np.asarray(dS), expected_dS, rtol=1e-13, atol=1e-16)  # float32 rounding: about 1e-8 off
    assert abs(float(loss) - expected_loss) <= 1e-13 * abs(expected_loss)


def test_float64_numpy_weight_beside_float64_device_inputs_in_linear_cross_entropy():
    rng = np.random.default_rng(7)
    X, W, y = rng.standard_normal((6, 3)), rng.standard_normal((3, 5)), np.array([0, 1, 2, 3, 4, 0])
    weight = np.array([1 / 3, 1 / 7, 2 / 9, 1.0, 5 / 11])
    expected_loss, expected = compiled.linear_cross_entropy(X, W, y, weight=weight, chunk_size=2)
    with jax.enable_x64(True):
        X_device = jnp.asarray(X)
    loss, grads = compiled.linear_cross_entropy(X_device, W, y, weight=weight, chunk_size=2)
    assert np.allclose(np.asarray(grads["W"]), expected["W"], rtol=1e-13, atol=1e-16)
    assert abs(float(loss) - expected_loss) <= 1e-13 * abs(expected_loss)


# A weighted mean (eq. 20) does not change when every class weight is scaled, so a uniform float64 weight of
# 1e-50 beside float32 scores must give the unweighted result, not 0/0 = NaN (softmax_loss) or a false
# overflow error (linear_cross_entropy) after the weight rounds to 0 in float32. Every variant scales the
# weights by a power of 2 in float64 first (LossOptions.astype; on device, compiled's _device_weight_share).


def _variant_params(function: str) -> list:
    return [name for name, module in manual.VARIANTS.items() if hasattr(module, function)]


@pytest.mark.parametrize("variant", _variant_params("softmax_loss"))
def test_a_tiny_uniform_float64_weight_beside_float32_scores_gives_the_unweighted_mean(variant):
    S = np.random.default_rng(8).standard_normal((6, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 4, 0])
    softmax_loss = manual.VARIANTS[variant].softmax_loss
    expected_loss, expected_dS = softmax_loss(S, y)
    loss, dS = softmax_loss(S, y, weight=np.full(5, 1e-50))
    assert np.isclose(loss, expected_loss, rtol=1e-6) and np.allclose(dS, expected_dS, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant", _variant_params("linear_cross_entropy"))
def test_a_tiny_uniform_float64_weight_in_linear_cross_entropy_gives_the_unweighted_mean(variant):
    rng = np.random.default_rng(9)
    X, W = rng.standard_normal((6, 3)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 4, 0])
    linear_cross_entropy = manual.VARIANTS[variant].linear_cross_entropy
    expected_loss, expected = linear_cross_entropy(X, W, y, chunk_size=2)
    loss, grads = linear_cross_entropy(X, W, y, weight=np.full(5, 1e-50), chunk_size=2)
    assert np.isclose(loss, expected_loss, rtol=1e-6)
    assert all(np.allclose(grads[k], expected[k], rtol=1e-5, atol=1e-7) for k in expected)


def test_a_tiny_uniform_float64_weight_on_the_device_gives_the_unweighted_mean():
    S = jnp.asarray(np.random.default_rng(8).standard_normal((6, 5)), jnp.float32)
    y = jnp.asarray([0, 1, 2, 3, 4, 0])
    with jax.enable_x64(True):
        weight = jnp.full(5, 1e-50)
    expected_loss, expected_dS = compiled.softmax_loss(S, y)
    loss, dS = compiled.softmax_loss(S, y, weight=weight)
    assert np.isclose(float(loss), float(expected_loss), rtol=1e-6)
    assert np.allclose(np.asarray(dS), np.asarray(expected_dS), rtol=1e-5, atol=1e-7)
    _, grads = compiled.linear_cross_entropy(S, jnp.eye(5, dtype=jnp.float32), y, weight=weight, chunk_size=2)
    assert np.allclose(np.asarray(grads["X"]), np.asarray(expected_dS), rtol=1e-5, atol=1e-7)  # dX = dS I


# ------------------------------------------------------------- the VJP, per-row losses, masked classes (issue 21)
# Expectations computed here, independently of every variant and oracle: a direct NumPy formula in float64
# (eqs. 17-24 per row, the cotangent of eq. 54, the row losses of eq. 55, masks by eq. 56), and identities.


def direct_vjp(S, y, g, *, weight=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0, softcap=None):
    """Row losses ("none", eq. 55) and the VJP ``dS`` at the (N,) cotangent ``g`` (eq. 54), written plainly."""
    S = np.asarray(S, np.float64)
    N, C = S.shape
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        Z = S if softcap is None else np.where(np.isneginf(S), -np.inf, softcap * np.tanh(S / softcap))
        m = Z.max(axis=1, keepdims=True)
        E = np.exp(Z - m)
        lse = (m + np.log(E.sum(axis=1, keepdims=True)))[:, 0]
        P = E / E.sum(axis=1, keepdims=True)
        kept = np.ones(N, bool) if ignore_index is None else y != ignore_index
        Q = np.zeros((N, C))
        Q[np.flatnonzero(kept), y[kept]] = 1 - label_smoothing
        Q = kept[:, None] * (Q + label_smoothing / C) * w
        log_p = np.where(Q > 0, Z - lse[:, None], 0.0)  # no 0 * -inf at a masked class
        losses = -(Q * log_p).sum(axis=1) + z_loss * kept * lse**2
        dZ = Q.sum(axis=1)[:, None] * P - Q + (2 * z_loss * kept * lse)[:, None] * P
        dZ = np.asarray(g, np.float64)[:, None] * dZ
        if softcap is not None:
            dZ = np.where(np.isneginf(Z), 0.0, dZ * (1 - (Z / softcap) ** 2))
    return losses, dZ


def _vjp_inputs(N=6, C=7, seed=31):
    rng = np.random.default_rng(seed)
    S = 2 * rng.standard_normal((N, C))
    y = rng.integers(0, C, N)
    g = rng.standard_normal(N)
    g[1] = 0.0  # mixed signs and a zero
    return S, y, g


def _masked(S, y):
    """Mask two classes of every row and a third in row 0, never a label: padding lanes and a constrained row."""
    S = S.copy()
    C = S.shape[1]
    for i, label in enumerate(y):
        free = [j for j in range(C) if j != label]
        S[i, free[-2:]] = -np.inf
    S[0, next(j for j in range(C) if j != y[0])] = -np.inf
    return S


VJP_OPTIONS = {
    "plain": {},
    "all but smoothing": {"weight": np.linspace(0.5, 2.0, 7), "ignore_index": -100, "z_loss": 0.05, "softcap": 3.0},
    "smoothing": {"label_smoothing": 0.2, "weight": np.linspace(0.5, 2.0, 7)},
}
DIRECT_CASES = [  # a sample of (options, masked, dtype, device): each one compiles programs of its own
    ("plain", True, np.float32, True),
    ("all but smoothing", True, np.float64, False),
    ("all but smoothing", True, np.float32, True),
    ("smoothing", False, np.float64, True),
]


def _as_device(dtype, *arrays):
    with jax.enable_x64(dtype == np.float64):
        return tuple(None if a is None else jnp.asarray(a) for a in arrays)


@pytest.mark.parametrize(
    ("name", "masked", "dtype", "device"),
    DIRECT_CASES,
    ids=[f"{n}-{'masked' if m else 'unmasked'}-{np.dtype(d).name}-{'device' if v else 'numpy'}"
         for n, m, d, v in DIRECT_CASES],
)  # fmt: skip
def test_softmax_loss_none_and_its_vjp_match_the_direct_formula(name, masked, dtype, device):
    options = VJP_OPTIONS[name]
    S, y, g = _vjp_inputs()
    if "ignore_index" in options:
        y = np.where(np.arange(len(y)) % 3 == 2, -100, y)
    if masked:
        S = _masked(S, np.where(y < 0, 0, y))
        S[y < 0, 0] = -np.inf  # an ignored row's stand-in label 0 masked: its loss is 0, not 0 * inf
    expected_losses, expected_dS = direct_vjp(S.astype(dtype), y, g.astype(dtype), **options)
    args = (S.astype(dtype), y, g.astype(dtype))
    if device:
        args = _as_device(dtype, *args)
    losses, dS = compiled.softmax_loss(args[0], args[1], reduction="none", grad_output=args[2], **options)
    assert isinstance(dS, jax.Array) == device and np.asarray(losses).shape == (6,)
    assert np.asarray(losses).dtype == dtype and np.asarray(dS).dtype == dtype
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (2e-5, 2e-6)
    assert np.allclose(np.asarray(losses), expected_losses, rtol=rtol, atol=atol)
    assert np.allclose(np.asarray(dS), expected_dS, rtol=rtol, atol=atol)
    assert np.all(np.asarray(dS)[np.isneginf(S)] == 0)  # exactly 0 at a masked class, no NaN (eq. 56)


@pytest.mark.parametrize("one_pass", [True, False], ids=["one pass", "two passes"])
def test_both_row_reductions_take_masked_classes_and_the_cotangent(one_pass):
    # The online merge sees (-inf, 1) pairs from masked classes: two of them merged must add 0, not exp(nan).
    S, y, g = _vjp_inputs()
    S = _masked(S, y)
    S[3, :] = -np.inf
    S[3, y[3]] = 1.5  # a row whose every other class is masked: p_y = 1, loss 0, gradient 0
    with jax.enable_x64(True):
        losses, dS = softmax_loss_core(jnp.asarray(S), jnp.asarray(y), "none", one_pass=one_pass, grad_output=g)
    expected_losses, expected_dS = direct_vjp(S, y, g)
    assert np.allclose(np.asarray(losses), expected_losses, rtol=1e-12, atol=1e-15)
    assert np.allclose(np.asarray(dS), expected_dS, rtol=1e-12, atol=1e-15)
    assert np.asarray(losses)[3] == 0 and np.all(np.asarray(dS)[3] == 0)


# One set of linear inputs for the tests below, so that they share their compiled programs: V = 7 classes,
# two of them masked by a bias of -inf, and V + 4 with 4 more masked as padding.
LIN_N, LIN_D, LIN_V, LIN_PAD = 6, 3, 7, 4
LIN_RNG = np.random.default_rng(43)
LIN_X, LIN_W = LIN_RNG.standard_normal((LIN_N, LIN_D)), LIN_RNG.standard_normal((LIN_D, LIN_V + LIN_PAD))
LIN_B = np.r_[LIN_RNG.standard_normal(LIN_V), np.full(LIN_PAD, -np.inf)]
LIN_B[[0, 2, 5]] = -np.inf  # class 0 too: the stand-in label of the ignored row 3
LIN_Y = np.array([1, 3, 6, -100, 1, 4])
LIN_G = LIN_RNG.standard_normal(LIN_N)
LIN_OPTIONS = {"ignore_index": -100, "z_loss": 0.02, "softcap": 2.5}
LIN_WEIGHT = np.r_[np.linspace(0.5, 1.5, LIN_V), np.ones(LIN_PAD)]


def test_a_scalar_cotangent_scales_the_gradient_and_not_the_loss():
    X, W, y, S = LIN_X, LIN_W[:, :LIN_V], LIN_Y, _vjp_inputs()[0]
    options = {**LIN_OPTIONS, "weight": LIN_WEIGHT[:LIN_V]}
    X, W, y, S, g, weight = _as_device(np.float64, X, W, y, S, np.asarray(-2.75), options.pop("weight"))
    with jax.enable_x64(True):
        loss_1, dS_1 = compiled.softmax_loss(S, y, weight=weight, **options)
        loss_g, dS_g = compiled.softmax_loss(S, y, weight=weight, grad_output=g, **options)
        lce_1, grads_1 = compiled.linear_cross_entropy(X, W, y, weight=weight, chunk_size=3, **options)
        lce_g, grads_g = compiled.linear_cross_entropy(X, W, y, weight=weight, chunk_size=3, grad_output=g, **options)
    plain_1, dS_plain_1 = compiled.softmax_loss(*_vjp_inputs()[:2])  # the plain program (eqs. 4, 6) on the host
    plain_g, dS_plain_g = compiled.softmax_loss(*_vjp_inputs()[:2], grad_output=-2.75)
    assert float(loss_g) == float(loss_1) and float(lce_g) == float(lce_1) and plain_g == plain_1
    assert np.allclose(np.asarray(dS_g), -2.75 * np.asarray(dS_1), rtol=1e-14, atol=0)
    assert np.allclose(dS_plain_g, -2.75 * dS_plain_1, rtol=1e-14, atol=0)
    for key in ("X", "W"):  # dX as well as dW: a VJP that scales the parameters' gradient alone fails here
        assert np.allclose(np.asarray(grads_g[key]), -2.75 * np.asarray(grads_1[key]), rtol=1e-14, atol=0)


def test_linear_cross_entropy_none_with_a_one_hot_cotangent_is_that_row_alone():
    # "none" at g = e_i gives row i's loss and the gradient of row i alone (the batch's "sum" with every other
    # row ignored): each row's gradient is its own, not grad_output[0]'s, and dW, db see the one row. On the
    # device, with three classes masked by the bias.
    X, W, b, y = LIN_X, LIN_W[:, :LIN_V], LIN_B[:LIN_V], LIN_Y
    options = {**LIN_OPTIONS, "weight": LIN_WEIGHT[:LIN_V]}
    for i in (1, 4):
        g = np.zeros(LIN_N)
        g[i] = 1.0
        with jax.enable_x64(True):
            losses, grads = compiled.linear_cross_entropy(
                *_as_device(np.float64, X, W, y, b, g)[:3], bias=jnp.asarray(b), reduction="none",
                grad_output=jnp.asarray(g), chunk_size=3, **options,
            )  # fmt: skip
        alone = np.where(np.arange(LIN_N) == i, y, -100)
        row_loss, row = compiled.linear_cross_entropy(X, W, alone, bias=b, reduction="sum", chunk_size=3, **options)
        assert np.asarray(losses)[3] == 0 and np.isclose(np.asarray(losses)[i], row_loss, rtol=1e-13)
        for key in ("X", "W", "b"):
            assert np.allclose(np.asarray(grads[key]), row[key], rtol=1e-13, atol=1e-16)
        assert np.all(np.asarray(grads["W"])[:, [0, 2, 5]] == 0) and np.all(np.asarray(grads["b"])[[0, 2, 5]] == 0)


def test_padding_the_vocabulary_with_masked_classes_changes_nothing():
    # V = 7 padded to 11 by a bias of -inf: the losses and the gradients of the real classes do not move beyond
    # rounding, and the padding's gradient is exactly 0, with the cap on (eq. 56); the scores' path alike.
    V, X, W, b, g, weight = LIN_V, LIN_X, LIN_W, LIN_B, LIN_G, LIN_WEIGHT
    call = functools.partial(
        compiled.linear_cross_entropy, reduction="none", grad_output=g, chunk_size=3, **LIN_OPTIONS
    )
    expected_losses, expected = call(X, W[:, :V], LIN_Y, bias=b[:V], weight=weight[:V])
    losses, grads = call(X, W, LIN_Y, bias=b, weight=weight)
    scores_losses, dS = compiled.softmax_loss(
        X @ W + b, LIN_Y, reduction="none", grad_output=g, weight=weight, **LIN_OPTIONS
    )
    for got in (losses, scores_losses):
        assert np.allclose(got, expected_losses, rtol=1e-13, atol=1e-16)
    assert np.allclose(grads["X"], expected["X"], rtol=1e-13, atol=1e-16)
    assert np.allclose(grads["W"][:, :V], expected["W"], rtol=1e-13, atol=1e-16)
    assert np.allclose(grads["b"][:V], expected["b"], rtol=1e-13, atol=1e-16)
    assert not grads["W"][:, V:].any() and not grads["b"][V:].any() and not dS[:, V:].any()


# The device path checks the cotangent and the masks itself (the NumPy entry is not on its way): its errors must be
# the contract's, word for word. Each case is run on the host (the contract) and on the device, messages compared.
S_BAD, Y_BAD = np.zeros((4, 3)), np.array([0, 1, 2, 0])
BAD_COTANGENTS = {
    "none, wrong length": ({"reduction": "none", "grad_output": np.ones(3)}, ValueError),
    "none, a scalar": ({"reduction": "none", "grad_output": np.asarray(1.0)}, ValueError),
    "mean, a vector": ({"grad_output": np.ones(4)}, ValueError),
    "none, NaN": ({"reduction": "none", "grad_output": np.array([1.0, 2.0, np.nan, 0.0])}, ValueError),
    "mean, inf": ({"grad_output": np.asarray(np.inf)}, ValueError),
    "beyond float32": ({"reduction": "none", "grad_output": np.array([0.0, 1e39, 0.0, 0.0])}, ValueError),
    "bool": ({"reduction": "none", "grad_output": np.ones(4, bool)}, TypeError),
    "bad reduction": ({"reduction": "batchmean"}, ValueError),
}
MASKED_ROW, MASKED_LABEL = S_BAD.copy(), S_BAD.copy()
MASKED_ROW[2] = -np.inf
MASKED_LABEL[1, 1] = -np.inf
BAD_MASKS = {
    "every class masked": ({"scores": MASKED_ROW}, ValueError),
    "label on a masked class": ({"scores": MASKED_LABEL}, ValueError),
    "ignored label on a masked class is fine": (
        {"scores": MASKED_LABEL, "y": np.array([0, -1, 2, 0]), "ignore_index": -1},
        None,
    ),
    "soft-target mass on a masked class": ({"scores": MASKED_LABEL, "y": np.full((4, 3), 0.5)}, ValueError),
    "smoothing with a mask": (
        {"scores": MASKED_LABEL, "y": np.array([0, 2, 2, 0]), "label_smoothing": 0.1},
        ValueError,
    ),
    "+inf": ({"scores": S_BAD + np.array([0.0, np.inf, 0.0])}, ValueError),
    "NaN beside a mask": ({"scores": np.where(MASKED_LABEL == 0, MASKED_LABEL, np.nan)}, ValueError),
}


def _host_and_device_outcomes(call, kwargs):
    """The error (type, message) of ``call`` on float32 NumPy arrays and on the same as device arrays, or None.

    ``grad_output`` stays float64 (in 64-bit mode on the device), so that a value beyond float32 reaches the check.
    """
    outcomes = []
    for device in (False, True):
        arrays = {k: v for k, v in kwargs.items() if isinstance(v, np.ndarray)}
        args = kwargs | {
            k: v.astype(np.float32) for k, v in arrays.items() if k != "grad_output" and v.dtype.kind == "f"
        }
        if device:
            args |= {k: args[k].astype(np.int32) for k, v in arrays.items() if v.dtype == np.int64}
            with jax.enable_x64(True):
                args |= {k: jnp.asarray(args[k]) for k in arrays}
        try:
            call(**args)
            outcomes.append(None)
        except (ValueError, TypeError) as error:
            outcomes.append((type(error), str(error)))
    return outcomes


@pytest.mark.parametrize("case", [*BAD_COTANGENTS, *BAD_MASKS])
def test_device_errors_for_cotangents_and_masks_are_the_contracts(case):
    change, error = {**BAD_COTANGENTS, **BAD_MASKS}[case]
    kwargs = {"scores": S_BAD, "y": Y_BAD} | change
    host, device = _host_and_device_outcomes(
        lambda **a: compiled.softmax_loss(a.pop("scores"), a.pop("y"), **a), kwargs
    )
    assert host == device
    assert (host is None) if error is None else host[0] is error, host


LCE_BIAS = np.array([0.0, -np.inf, 0.5])
BAD_LINEAR = {
    "cotangent of a bad length": ({"reduction": "none", "grad_output": np.ones(5)}, ValueError),
    "cotangent NaN": ({"reduction": "none", "grad_output": np.array([1.0, np.nan, 0.0, 0.0])}, ValueError),
    "bias masked everywhere": ({"bias": np.full(3, -np.inf)}, ValueError),
    "label on a masked bias class": ({"bias": LCE_BIAS}, ValueError),
    "smoothing with a masked bias": (
        {"bias": LCE_BIAS, "y": np.array([0, 2, 2, 0]), "label_smoothing": 0.1},
        ValueError,
    ),
    "bias +inf": ({"bias": np.array([0.0, np.inf, 0.5])}, ValueError),
    "masked bias, labels elsewhere": ({"bias": LCE_BIAS, "y": np.array([0, 2, 2, 0])}, None),
}


@pytest.mark.parametrize("case", BAD_LINEAR)
def test_linear_cross_entropy_device_errors_are_the_contracts(case):
    change, error = BAD_LINEAR[case]
    kwargs = {"X": np.ones((4, 2)), "W": np.ones((2, 3)), "y": Y_BAD} | change
    host, device = _host_and_device_outcomes(
        lambda **a: compiled.linear_cross_entropy(a.pop("X"), a.pop("W"), a.pop("y"), chunk_size=2, **a), kwargs
    )
    assert host == device
    assert (host is None) if error is None else host[0] is error, host
