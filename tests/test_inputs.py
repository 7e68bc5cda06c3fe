"""Bad input gets a clear error from every implementation; good input is never written to.

One parametrized battery (README, "Calling a variant") runs against every manual variant,
the autodiff oracle and the finite-difference oracle: each case must raise a
``ValueError`` or ``TypeError`` whose message names the argument, never an
``IndexError``, a ``KeyError``, a silent wrap-around or a NaN result.
"""

from __future__ import annotations

import numpy as np
import pytest

from softmax_grad.cases import params as make_params
from tests.conftest import ORACLES, VARIANTS

IMPLEMENTATIONS = {**VARIANTS, **{f"reference.{name}": module for name, module in ORACLES.items()}}

RNG = np.random.default_rng(0)
S = RNG.standard_normal((3, 4))
Y = np.array([0, 3, 1])
W = RNG.standard_normal((5, 4))
X = RNG.standard_normal((3, 5))
P = make_params(5, 6, 4, seed=1)


def with_param(key, value):
    return {**P, key: value}


def without(key):
    return {k: v for k, v in P.items() if k != key}


def nan_at(a, index):
    a = a.copy()
    a[index] = np.nan
    return a


# (id, function, args, kwargs, exception, regex naming the argument and the bad value or index)
BAD_INPUTS = [
    # labels
    ("y equal to C", "softmax_loss", (S, [0, 4, 1]), {}, ValueError, r"y\[1\] = 4 is out of range.*\[0, 4\)"),
    ("y negative", "softmax_loss", (S, [0, -1, 1]), {}, ValueError, r"y\[1\] = -1 is out of range"),
    ("y float", "softmax_loss", (S, [0.0, 1.0, 2.0]), {}, TypeError, r"y must hold integer.*float64"),
    ("y bool", "softmax_loss", (S, [True, False, True]), {}, TypeError, r"y must hold integer.*bool"),
    ("y 2-D", "softmax_loss", (S, [[0], [1], [2]]), {}, ValueError, r"y must be 1-D.*\(3, 1\)"),
    ("y too short", "softmax_loss", (S, [0, 1]), {}, ValueError, r"y has 2 labels.*N = 3"),
    ("y None", "softmax_loss", (S, None), {}, TypeError, r"y must hold integer"),
    ("y string", "softmax_loss", (S, ["0", "1", "2"]), {}, TypeError, r"y must hold integer"),
    # scores
    ("scores 1-D", "softmax_loss", (S[0], [0]), {}, ValueError, r"scores must be 2-D.*\(4,\)"),
    ("scores 3-D", "softmax_loss", (S[None], Y), {}, ValueError, r"scores must be 2-D.*\(1, 3, 4\)"),
    ("scores no rows", "softmax_loss", (np.zeros((0, 4)), []), {}, ValueError, r"scores must not be empty: N = 0"),
    ("scores no columns", "softmax_loss", (np.zeros((3, 0)), Y), {}, ValueError, r"scores must not be empty: C = 0"),
    ("scores NaN", "softmax_loss", (nan_at(S, (2, 1)), Y), {}, ValueError, r"scores holds nan at index \(2, 1\)"),
    ("scores inf", "softmax_loss", (S * np.array([1, 1, np.inf, 1]), Y), {}, ValueError, r"scores holds inf.*\(0, 2\)"),
    # -inf is a masked class (derivation eq. 56), accepted; a row with every class masked has no softmax
    ("scores row all -inf", "softmax", (np.array([[0.0, 1], [-np.inf, -np.inf]]),), {}, ValueError, r"row 1 of scores"),
    ("scores strings", "softmax_loss", ([["a", "b"]], [0]), {}, TypeError, r"scores must hold real numbers"),
    ("scores complex", "softmax", (S + 1j,), {}, TypeError, r"scores must hold real numbers.*complex"),
    ("scores bool", "softmax", (S > 0,), {}, TypeError, r"scores must hold real numbers.*bool"),
    ("scores ragged", "softmax", ([[1.0, 2.0], [3.0]],), {}, ValueError, r"scores could not be read"),
    ("scores None", "softmax", (None,), {}, TypeError, r"scores must hold real numbers"),
    ("reduction unknown", "softmax_loss", (S, Y), {"reduction": "avg"}, ValueError, r"reduction.*'avg'"),
    ("reduction None", "softmax_loss", (S, Y), {"reduction": None}, ValueError, r"reduction.*None"),
    ("jacobian 2-D", "softmax_jacobian", (S,), {}, ValueError, r"x must be 1-D.*\(3, 4\)"),
    ("jacobian empty", "softmax_jacobian", (np.zeros(0),), {}, ValueError, r"x must not be empty"),
    ("jacobian NaN", "softmax_jacobian", (np.array([0.0, np.nan]),), {}, ValueError, r"x holds nan at index \(1,\)"),
    # linear classifier
    ("X wrong width", "linear_loss", (W, X[:, :4], Y), {}, ValueError, r"X has 4 columns.*W has D = 5"),
    ("W 1-D", "linear_loss", (W[:, 0], X, Y), {}, ValueError, r"W must be 2-D"),
    ("W NaN", "linear_loss", (nan_at(W, (4, 3)), X, Y), {}, ValueError, r"W holds nan at index \(4, 3\)"),
    ("X inf", "linear_loss", (W, X * np.inf, Y), {}, ValueError, r"X holds -?inf"),
    ("linear y equal to C", "linear_loss", (W, X, [0, 1, 4]), {}, ValueError, r"y\[2\] = 4 is out of range"),
    ("linear y negative", "linear_loss", (W, X, [-1, 1, 2]), {}, ValueError, r"y\[0\] = -1"),
    ("reg negative", "linear_loss", (W, X, Y), {"reg": -0.1}, ValueError, r"reg must be finite and >= 0, got -0.1"),
    ("reg NaN", "linear_loss", (W, X, Y), {"reg": float("nan")}, ValueError, r"reg must be finite.*nan"),
    ("reg inf", "linear_loss", (W, X, Y), {"reg": float("inf")}, ValueError, r"reg must be finite.*inf"),
    ("reg string", "linear_loss", (W, X, Y), {"reg": "0.1"}, TypeError, r"reg must be a real number.*'0.1'"),
    ("reg array", "linear_loss", (W, X, Y), {"reg": [0.1]}, TypeError, r"reg must be a real number"),
    ("reg bool", "linear_loss", (W, X, Y), {"reg": True}, TypeError, r"reg must be a real number"),
    ("linear reduction", "linear_loss", (W, X, Y), {"reduction": "max"}, ValueError, r"reduction.*'max'"),
    # two-layer parameters
    ("params missing W2", "two_layer_loss", (without("W2"), X, Y), {}, ValueError, r"params is missing 'W2'"),
    ("params extra key", "two_layer_loss", ({**P, "W3": P["W2"]}, X, Y), {}, ValueError, r"unexpected key 'W3'"),
    ("params not a mapping", "two_layer_loss", (list(P.values()), X, Y), {}, TypeError, r"params must be a mapping"),
    ("W2 misshapen", "two_layer_loss", (with_param("W2", np.ones((7, 4))), X, Y), {}, ValueError, r"params\['W2'\]"),
    (
        "b1 2-D",
        "two_layer_loss",
        (with_param("b1", P["b1"][None]), X, Y),
        {},
        ValueError,
        r"params\['b1'\] must be 1-D",
    ),
    (
        "b2 wrong length",
        "two_layer_loss",
        (with_param("b2", np.ones(3)), X, Y),
        {},
        ValueError,
        r"params\['b2'\].*\(3,\)",
    ),
    (
        "W1 NaN",
        "two_layer_loss",
        (with_param("W1", nan_at(P["W1"], (0, 2))), X, Y),
        {},
        ValueError,
        r"params\['W1'\] holds nan at index \(0, 2\)",
    ),
    (
        "b2 inf",
        "two_layer_loss",
        (with_param("b2", P["b2"] + np.inf), X, Y),
        {},
        ValueError,
        r"params\['b2'\] holds inf",
    ),
    ("two-layer X wrong width", "two_layer_loss", (P, X[:, :3], Y), {}, ValueError, r"X has 3 columns.*D = 5"),
    ("two-layer X empty", "two_layer_loss", (P, X[:0], Y[:0]), {}, ValueError, r"X must not be empty: N = 0"),
    ("two-layer y equal to C", "two_layer_loss", (P, X, [0, 4, 1]), {}, ValueError, r"y\[1\] = 4 is out of range"),
    ("two-layer y negative", "two_layer_loss", (P, X, [0, 1, -4]), {}, ValueError, r"y\[2\] = -4"),
    ("two-layer reg negative", "two_layer_loss", (P, X, Y), {"reg": -1}, ValueError, r"reg must be finite and >= 0"),
    ("two-layer reg NaN", "two_layer_loss", (P, X, Y), {"reg": np.nan}, ValueError, r"reg must be finite.*nan"),
    # loss options (README, "Loss options")
    ("weight too short", "softmax_loss", (S, Y), {"weight": np.ones(3)}, ValueError, r"weight has 3 entries.*C = 4"),
    ("weight too long", "softmax_loss", (S, Y), {"weight": np.ones(5)}, ValueError, r"weight has 5 entries.*C = 4"),
    ("weight 2-D", "softmax_loss", (S, Y), {"weight": np.ones((1, 4))}, ValueError, r"weight must be 1-D.*\(1, 4\)"),
    ("weight scalar", "softmax_loss", (S, Y), {"weight": 2.0}, ValueError, r"weight must be 1-D.*0-D"),
    ("weight negative", "softmax_loss", (S, Y), {"weight": [1, 1, -0.5, 1]}, ValueError, r"weight\[2\] = -0.5"),
    ("weight NaN", "softmax_loss", (S, Y), {"weight": nan_at(np.ones(4), 1)}, ValueError, r"weight holds nan.*\(1,\)"),
    ("weight inf", "softmax_loss", (S, Y), {"weight": [1, 1, 1, np.inf]}, ValueError, r"weight holds inf.*\(3,\)"),
    ("weight strings", "softmax_loss", (S, Y), {"weight": ["1"] * 4}, TypeError, r"weight must hold real numbers"),
    ("smoothing negative", "softmax_loss", (S, Y), {"label_smoothing": -0.1}, ValueError, r"label_smoothing.*-0.1"),
    (
        "smoothing above 1",
        "softmax_loss",
        (S, Y),
        {"label_smoothing": 1.5},
        ValueError,
        r"label_smoothing.*\[0, 1\].*1.5",
    ),
    ("smoothing NaN", "softmax_loss", (S, Y), {"label_smoothing": np.nan}, ValueError, r"label_smoothing.*got nan"),
    ("smoothing string", "softmax_loss", (S, Y), {"label_smoothing": "0.1"}, TypeError, r"label_smoothing.*'0.1'"),
    ("smoothing None", "softmax_loss", (S, Y), {"label_smoothing": None}, TypeError, r"label_smoothing.*None"),
    (
        "z_loss negative",
        "softmax_loss",
        (S, Y),
        {"z_loss": -1e-4},
        ValueError,
        r"z_loss must be finite and >= 0.*-0.0001",
    ),
    ("z_loss inf", "softmax_loss", (S, Y), {"z_loss": np.inf}, ValueError, r"z_loss must be finite.*inf"),
    ("z_loss NaN", "softmax_loss", (S, Y), {"z_loss": np.nan}, ValueError, r"z_loss must be finite.*nan"),
    ("z_loss bool", "softmax_loss", (S, Y), {"z_loss": True}, TypeError, r"z_loss must be a real number.*True"),
    ("softcap 0", "softmax_loss", (S, Y), {"softcap": 0}, ValueError, r"softcap must be a finite number > 0.*got 0.0"),
    ("softcap negative", "softmax_loss", (S, Y), {"softcap": -2.0}, ValueError, r"softcap.*> 0.*-2.0"),
    ("softcap inf", "softmax_loss", (S, Y), {"softcap": np.inf}, ValueError, r"softcap.*> 0.*inf"),
    ("softcap NaN", "softmax_loss", (S, Y), {"softcap": np.nan}, ValueError, r"softcap.*> 0.*nan"),
    (
        "ignore_index float",
        "softmax_loss",
        (S, Y),
        {"ignore_index": -100.0},
        TypeError,
        r"ignore_index.*integer.*-100.0",
    ),
    ("ignore_index bool", "softmax_loss", (S, Y), {"ignore_index": True}, TypeError, r"ignore_index.*integer.*True"),
    ("ignore_index string", "softmax_loss", (S, Y), {"ignore_index": "-100"}, TypeError, r"ignore_index.*'-100'"),
    ("ignore_index array", "softmax_loss", (S, Y), {"ignore_index": [-100]}, TypeError, r"ignore_index.*\[-100\]"),
    ("y other than ignore_index", "softmax_loss", (S, [0, -1, 1]), {"ignore_index": -100}, ValueError, r"y\[1\] = -1"),
    (
        "soft targets wrong C",
        "softmax_loss",
        (S, np.ones((3, 3))),
        {},
        ValueError,
        r"soft targets of shape \(3, 3\).*\(3, 4\)",
    ),
    ("soft targets wrong N", "softmax_loss", (S, np.ones((2, 4))), {}, ValueError, r"soft targets of shape \(2, 4\)"),
    ("soft targets 3-D", "softmax_loss", (S, np.ones((1, 3, 4))), {}, TypeError, r"y must hold integer.*\(1, 3, 4\)"),
    ("soft targets negative", "softmax_loss", (S, -np.eye(3, 4)), {}, ValueError, r"y\[0, 0\] = -1.0 is negative"),
    (
        "soft targets NaN",
        "softmax_loss",
        (S, nan_at(np.ones((3, 4)), (2, 3))),
        {},
        ValueError,
        r"y holds nan.*\(2, 3\)",
    ),
    (
        "soft targets inf",
        "softmax_loss",
        (S, np.full((3, 4), np.inf)),
        {},
        ValueError,
        r"y holds inf at index \(0, 0\)",
    ),
    (
        "soft targets with ignore_index",
        "softmax_loss",
        (S, np.ones((3, 4))),
        {"ignore_index": -100},
        ValueError,
        r"ignore_index=-100 applies to integer labels only",
    ),
]
LCE = "linear_cross_entropy"  # X (3, 5) W (5, 4): N = 3, D = 5, V = 4
BAD_INPUTS += [
    ("lce chunk 0", LCE, (X, W, Y), {"chunk_size": 0}, ValueError, r"chunk_size must be a positive integer.*got 0"),
    ("lce chunk negative", LCE, (X, W, Y), {"chunk_size": -2}, ValueError, r"chunk_size must be a positive.*-2"),
    ("lce chunk float", LCE, (X, W, Y), {"chunk_size": 2.0}, TypeError, r"chunk_size must be a positive.*2.0"),
    ("lce chunk string", LCE, (X, W, Y), {"chunk_size": "4"}, TypeError, r"chunk_size must be a positive.*'4'"),
    ("lce chunk bool", LCE, (X, W, Y), {"chunk_size": True}, TypeError, r"chunk_size must be a positive.*True"),
    ("lce X 1-D", LCE, (X[0], W, Y[:1]), {}, ValueError, r"X must be 2-D with shape \(N, D\).*\(5,\)"),
    ("lce D mismatch", LCE, (X[:, :4], W, Y), {}, ValueError, r"X has D = 4 columns but W has 5 rows"),
    ("lce W 1-D", LCE, (X, W[:, 0], Y), {}, ValueError, r"W must be 2-D with shape \(D, V\)"),
    ("lce bias length", LCE, (X, W, Y), {"bias": np.zeros(5)}, ValueError, r"bias has 5 entries but W has V = 4"),
    ("lce bias 2-D", LCE, (X, W, Y), {"bias": np.zeros((1, 4))}, ValueError, r"bias must be 1-D"),
    ("lce bias NaN", LCE, (X, W, Y), {"bias": nan_at(np.zeros(4), 2)}, ValueError, r"bias holds nan at index \(2,\)"),
    ("lce X NaN", LCE, (nan_at(X, (1, 2)), W, Y), {}, ValueError, r"X holds nan at index \(1, 2\)"),
    ("lce y equal to V", LCE, (X, W, [0, 4, 1]), {}, ValueError, r"y\[1\] = 4 is out of range.*\[0, 4\)"),
    ("lce y negative", LCE, (X, W, [0, 1, -1]), {}, ValueError, r"y\[2\] = -1 is out of range"),
    ("lce y float", LCE, (X, W, [0.0, 1.0, 2.0]), {}, TypeError, r"y must hold integer"),
    ("lce y too short", LCE, (X, W, [0, 1]), {}, ValueError, r"y has 2 labels.*N = 3"),
    ("lce weight length", LCE, (X, W, Y), {"weight": np.ones(3)}, ValueError, r"weight has 3 entries.*C = 4"),
    ("lce smoothing", LCE, (X, W, Y), {"label_smoothing": 1.5}, ValueError, r"label_smoothing must lie in \[0, 1\]"),
    ("lce reduction", LCE, (X, W, Y), {"reduction": "avg"}, ValueError, r"reduction.*'avg'"),
]


@pytest.mark.parametrize(
    ("function", "args", "kwargs", "error", "pattern"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_bad_input_gets_a_clear_error(implementation, function, args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        getattr(IMPLEMENTATIONS[implementation], function)(*args, **kwargs)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_negative_label_never_wraps_around(implementation):
    # y = -1 would silently index class C-1; it must be refused, not computed.
    module = IMPLEMENTATIONS[implementation]
    with pytest.raises(ValueError, match=r"y\[0\] = -1"):
        module.softmax_loss(S[:1], [-1])
    with pytest.raises(ValueError, match=r"y\[0\] = -1"):
        module.linear_loss(W, X[:1], [-1])
    with pytest.raises(ValueError, match=r"y\[0\] = -1"):
        module.two_layer_loss(P, X[:1], np.array([-1], np.int8))


# ------------------------------------------------------------- untouched inputs
def layouts(a: np.ndarray) -> dict[str, np.ndarray]:
    """The same values in four memory layouts."""
    strided = np.zeros((2 * a.shape[0], *a.shape[1:]), a.dtype)[::2]
    strided[...] = a
    transposed = np.ascontiguousarray(a.T).T if a.ndim == 2 else a.copy()
    return {"contiguous": a.copy(), "strided": strided, "transposed": transposed, "fortran": np.asfortranarray(a)}


WEIGHT = np.array([0.5, 2.0, 1.0, 3.0])
SOFT = np.random.default_rng(3).random((3, 4))
SMOOTH_Z_CAP = {"label_smoothing": 0.1, "z_loss": 0.01, "softcap": 2.0}


def calls(layout: str):
    """Every public function with every array argument in ``layout``, labels included."""
    scores, W_, X_ = layouts(S)[layout], layouts(W)[layout], layouts(X)[layout]
    y = layouts(Y)[layout]
    params = {key: layouts(value)[layout] for key, value in P.items()}
    return [
        ("softmax", (scores,), {}),
        ("softmax_jacobian", (layouts(S[0])[layout],), {}),
        ("softmax_loss", (scores, y), {}),
        ("softmax_loss", (scores, y), {"reduction": "sum"}),
        ("softmax_loss", (scores, y), {"weight": layouts(WEIGHT)[layout], "ignore_index": 1, **SMOOTH_Z_CAP}),
        ("softmax_loss", (scores, layouts(SOFT)[layout]), {"weight": layouts(WEIGHT)[layout], **SMOOTH_Z_CAP}),
        ("linear_loss", (W_, X_, y), {"reg": 0.3}),
        ("two_layer_loss", (params, X_, y), {"reg": 0.3}),
        ("linear_cross_entropy", (X_, W_, y), {"chunk_size": 3}),
    ]


def arrays_in(args, kwargs) -> list[np.ndarray]:
    found = [value for value in kwargs.values() if isinstance(value, np.ndarray)]  # class weights
    for arg in args:
        found += list(arg.values()) if isinstance(arg, dict) else [arg]
    return found


def results_in(result) -> list[np.ndarray]:
    if isinstance(result, np.ndarray):
        return [result]
    grad = result[1]
    return list(grad.values()) if isinstance(grad, dict) else [grad]


@pytest.mark.parametrize("layout", ["contiguous", "strided", "transposed", "fortran"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_inputs_are_left_byte_identical_and_no_result_is_a_view(implementation, layout):
    module = IMPLEMENTATIONS[implementation]
    for function, args, kwargs in calls(layout):
        inputs = arrays_in(args, kwargs)
        before = [(a.tobytes(), a.strides) for a in inputs]
        for a in inputs:
            a.flags.writeable = False  # a write into an argument now raises at once
        result = getattr(module, function)(*args, **kwargs)
        assert [(a.tobytes(), a.strides) for a in inputs] == before, f"{implementation}.{function} changed an input"
        for out in results_in(result):
            assert out.flags.writeable, f"{implementation}.{function} returned a read-only array"
            for a in inputs:
                assert not np.shares_memory(out, a), f"{implementation}.{function} returned a view of an input"


def test_the_layouts_really_differ():
    # Guard for the test above: the four layouts are four memory arrangements.
    shapes = layouts(S)
    assert shapes["strided"].strides != shapes["contiguous"].strides
    assert shapes["fortran"].flags.f_contiguous and not shapes["fortran"].flags.c_contiguous
    assert shapes["transposed"].flags.f_contiguous


# ------------------------------------------------------------- dtype policy
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_float32_in_float32_out(implementation):
    module = IMPLEMENTATIONS[implementation]
    for function, args, kwargs in calls("contiguous"):
        cast = tuple(
            {k: v.astype(np.float32) for k, v in a.items()}
            if isinstance(a, dict)
            else a.astype(np.float32)
            if a.dtype.kind == "f"
            else a
            for a in args
        )
        result = getattr(module, function)(*cast, **kwargs)
        for out in results_in(result):
            assert out.dtype == np.float32, f"{implementation}.{function} returned {out.dtype}"
        if isinstance(result, tuple):
            assert type(result[0]) is float


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_integer_scores_become_float64(implementation):
    module = IMPLEMENTATIONS[implementation]
    int_scores = np.array([[1, 2, 3], [0, 0, 5]], np.int32)
    assert module.softmax(int_scores).dtype == np.float64
    loss, dS = module.softmax_loss(int_scores, [2, 0])
    assert dS.dtype == np.float64
    assert module.softmax_jacobian(np.array([1, 2], np.int64)).dtype == np.float64
    float_loss, float_dS = module.softmax_loss(int_scores.astype(np.float64), [2, 0])
    assert loss == float_loss and np.array_equal(dS, float_dS)


LABEL_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@pytest.mark.parametrize("label_dtype", LABEL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_labels_of_any_integer_dtype_give_the_same_result(implementation, label_dtype):
    module = IMPLEMENTATIONS[implementation]
    expected_loss, expected_dS = module.softmax_loss(S, Y)
    loss, dS = module.softmax_loss(S, Y.astype(label_dtype))
    assert loss == expected_loss and np.array_equal(dS, expected_dS)
    loss, grads = module.two_layer_loss(P, X, Y.astype(label_dtype), reg=0.1)
    expected_loss, expected_grads = module.two_layer_loss(P, X, Y, reg=0.1)
    assert loss == expected_loss
    assert all(np.array_equal(grads[key], expected_grads[key]) for key in expected_grads)
