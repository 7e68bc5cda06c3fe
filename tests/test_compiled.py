"""The compiled variant's two ways of finding the row max and sum, both checked on the CPU.

The public functions (tested with every variant) take the two-pass form on the
CPU; accelerators take the one-pass ("online") form. So that CI, which has no
GPU, still checks what a GPU runs, the one-pass form is compared here with the
autodiff oracle on every standard ``softmax_loss`` case.
"""

from __future__ import annotations

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
        ({"scores": jnp.zeros((5, 4)).at[3, 2].set(-jnp.inf)}, r"scores holds -inf at index \(3, 2\)"),  # the row min
        ({"scores": jnp.zeros((5, 4)).at[1, 0].set(jnp.inf)}, r"scores holds inf at index \(1, 0\)"),  # the row max
        ({"y": jnp.full((5, 4), 0.25).at[4, 1].set(jnp.nan)}, r"y holds nan at index \(4, 1\)"),
        ({"weight": jnp.ones(4).at[2].set(jnp.inf)}, r"weight holds inf at index \(2,\)"),
    ],
    ids=["-inf score", "+inf score", "NaN soft target", "inf weight"],
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
