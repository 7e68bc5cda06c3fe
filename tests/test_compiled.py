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
