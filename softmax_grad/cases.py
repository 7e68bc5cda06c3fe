"""The standard cases: fixed edge shapes and seeded random inputs for every public function.

One list serves the tests, ``softmax-grad verify`` and the checker of a user's
function, so that all three try the same inputs. A case names the function it
calls, holds float64 inputs, and can be cast to float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from softmax_grad import bounds
from softmax_grad.compare import Comparison, compare, compare_bounded
from softmax_grad.tolerances import AUTODIFF, tolerance

FUNCTIONS = ("softmax", "softmax_jacobian", "softmax_loss", "linear_loss", "two_layer_loss", "linear_cross_entropy")


def _cast(value: Any, dtype: np.dtype) -> Any:
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value.astype(dtype)
    if isinstance(value, Mapping):
        return {key: _cast(item, dtype) for key, item in value.items()}
    return value


def _short(value: Any) -> str:
    return f"<array {value.shape}>" if isinstance(value, np.ndarray) else str(value)


@dataclass(frozen=True)
class Case:
    """One call of one public function: ``function(*args, **kwargs)``."""

    name: str
    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    group: str = ""  # the loss-option group of an option case (``option_cases``); "" for a standard case

    @property
    def dtype(self) -> np.dtype:
        if self.function == "linear_cross_entropy":  # float_dtype's policy: float32 only when X and W both are
            return np.result_type(self.args[0], self.args[1])
        first = self.args[0]
        return (first["W1"] if isinstance(first, Mapping) else first).dtype

    @property
    def id(self) -> str:
        extra = "".join(f",{key}={_short(value)}" for key, value in self.kwargs.items())
        return f"{self.function}[{self.name}{extra}]"

    def astype(self, dtype: np.dtype | type) -> Case:
        args = tuple(_cast(a, np.dtype(dtype)) for a in self.args)
        kwargs = {key: _cast(value, np.dtype(dtype)) for key, value in self.kwargs.items()}
        return Case(self.name, self.function, args, kwargs, self.group)

    def call(self, module: ModuleType) -> Any:
        return getattr(module, self.function)(*self.args, **self.kwargs)


def quantities(function: str, result: Any) -> dict[str, Any]:
    """Name every output of ``function``: ``{"loss": ..., "dS": ...}``, ``{"dW1": ...}``, ..."""
    if function == "softmax":
        return {"P": result}
    if function == "softmax_jacobian":
        return {"J": result}
    loss, grad = result
    if function == "softmax_loss":
        return {"loss": loss, "dS": grad}
    if function == "linear_loss":
        return {"loss": loss, "dW": grad}
    if function == "linear_cross_entropy":
        return {"loss": loss, **{f"d{key}": value for key, value in grad.items()}}
    return {"loss": loss, **{f"d{key}": value for key, value in grad.items()}}


VALUES = ("loss", "P", "J")  # compared with the value floor; every other quantity is a gradient


def compare_results(case: Case, actual: Any, expected: Any, oracle: str, label: str) -> list[Comparison]:
    """Compare every output of one call with the oracle's.

    A float32 call against autodiff is judged by each output's rounding-error
    bound (softmax_grad.bounds, docs/derivation.md eqs. 32-44), plus the
    oracle's own float32 rounding of its result; float64, finite differences
    and the softmax and its Jacobian keep the table (softmax_grad.tolerances).
    """
    tol = tolerance(case.dtype, oracle)
    got, want = quantities(case.function, actual), quantities(case.function, expected)
    limits = None
    if oracle == AUTODIFF and case.dtype == np.float32:
        limits = bounds.suite_bounds(case.function, case.args, case.kwargs, case.dtype)
    return compare_outputs(got, want, limits, tol, case.dtype, label)


def compare_outputs(
    got: dict[str, Any], want: dict[str, Any], limits: dict[str, Any] | None, tol: Any, dtype: np.dtype, label: str
) -> list[Comparison]:
    """Each output against its bound in ``limits`` (plus the oracle's own rounding to ``dtype``), else the table.

    A scalar loss is a Python float and is judged without a dtype; a loss of
    ``reduction="none"`` is an array of ``dtype`` like the gradients.
    """
    comparisons = []
    for name in want:
        where = f"{label} {name} {np.shape(want[name])}"
        of = dtype if name != "loss" or np.ndim(want[name]) else None
        if limits is not None and name in limits:
            limit = limits[name] + bounds.stored(bounds.precision(dtype), np.asarray(want[name], np.float64))
            comparisons.append(compare_bounded(got[name], want[name], limit, label=where, dtype=of))
        else:
            comparisons.append(compare(got[name], want[name], tol, label=where, dtype=of,
                                       gradient=name not in VALUES))  # fmt: skip
    return comparisons


# ------------------------------------------------------------------ builders
def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _scores(N: int, C: int, seed: int, scale: float = 2.0) -> np.ndarray:
    return scale * _rng(seed).standard_normal((N, C))


def _labels(N: int, C: int, seed: int) -> np.ndarray:
    return _rng(seed + 1000).integers(0, C, N)


def spread_1000() -> tuple[np.ndarray, np.ndarray]:
    """Scores about 1000 apart, and labels.

    Without the max shift ``exp`` overflows; and the true class of row 0 sits at
    the bottom, so its probability underflows to 0 even with the shift.
    """
    S = np.array([[500.0, -500.0, 0.0, 499.5], [-500.0, 500.0, 250.0, 0.0], [700.0, 710.0, -300.0, 709.0]])
    return S, np.array([1, 2, 0])


def params(D: int, H: int, C: int, seed: int) -> dict[str, np.ndarray]:
    """Random two-layer parameters with roughly unit-variance activations."""
    rng = _rng(seed)
    return {
        "W1": rng.standard_normal((D, H)) / np.sqrt(D),
        "b1": 0.1 * rng.standard_normal(H),
        "W2": rng.standard_normal((H, C)) / np.sqrt(H),
        "b2": 0.1 * rng.standard_normal(C),
    }


SCORE_SHAPES = {"N=1": (1, 5), "C=1": (4, 1), "C=2": (6, 2), "tall": (300, 2), "wide": (3, 200), "random": (17, 9)}


def _score_inputs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    inputs = [
        (name, _scores(N, C, seed), _labels(N, C, seed)) for seed, (name, (N, C)) in enumerate(SCORE_SHAPES.items())
    ]
    inputs.append(("ties", np.zeros((3, 4)), np.array([0, 3, 1])))
    inputs.append(("spread 1000", *spread_1000()))
    return inputs


def dead_units_case(reg: float) -> Case:
    """A two-layer case with dead ReLU units.

    Rows of zero input with zero bias put pre-activations at exactly 0, where
    the ReLU's derivative is taken as 0 (eq. 10); unit 2 is dead for every sample.
    """
    p = params(4, 5, 3, seed=7)
    p["b1"] = np.zeros(5)
    p["b1"][2] = -50.0
    X = _rng(8).standard_normal((8, 4))
    X[[0, 3]] = 0.0
    return Case("dead units", "two_layer_loss", (p, X, _labels(8, 3, 8)), {"reg": reg})


def standard_cases() -> list[Case]:
    """Every public function on the fixed edge shapes and seeded random inputs (float64)."""
    cases: list[Case] = []
    for name, S, y in _score_inputs():
        cases.append(Case(name, "softmax", (S,)))
        for reduction in ("mean", "sum"):
            cases.append(Case(name, "softmax_loss", (S, y), {"reduction": reduction}))
    for name, x in [
        ("C=1", np.array([3.0])),
        ("C=2", np.array([0.5, -1.0])),
        ("random", _scores(1, 6, seed=20)[0]),
        ("ties", np.zeros(4)),
        ("spread 1000", np.array([500.0, -500.0, 499.0])),
    ]:
        cases.append(Case(name, "softmax_jacobian", (x,)))
    for seed, (N, D, C, reg, reduction) in enumerate(
        [
            (1, 3, 4, 0.0, "mean"),
            (10, 5, 1, 0.1, "mean"),
            (20, 4, 2, 0.0, "sum"),
            (5, 1, 3, 0.0, "mean"),
            (12, 6, 3, 0.5, "mean"),
            (12, 6, 3, 0.5, "sum"),
        ]
    ):
        W = _rng(30 + seed).standard_normal((D, C)) / np.sqrt(D)
        X = _rng(40 + seed).standard_normal((N, D))
        name = f"N={N} D={D} C={C}"
        cases.append(Case(name, "linear_loss", (W, X, _labels(N, C, seed)), {"reg": reg, "reduction": reduction}))
    for seed, (N, D, H, C, reg) in enumerate(
        [
            (1, 3, 4, 2, 0.0),
            (6, 1, 3, 2, 0.1),
            (7, 4, 1, 3, 0.0),
            (5, 3, 4, 1, 0.2),
            (16, 5, 8, 4, 0.0),
            (16, 5, 8, 4, 0.1),
        ]
    ):
        X = _rng(50 + seed).standard_normal((N, D))
        name = f"N={N} D={D} H={H} C={C}"
        cases.append(Case(name, "two_layer_loss", (params(D, H, C, 60 + seed), X, _labels(N, C, seed)), {"reg": reg}))
    cases += [dead_units_case(0.0), dead_units_case(0.1)]
    return cases + linear_cross_entropy_cases()


def linear_cross_entropy_cases() -> list[Case]:
    """Small linear cross-entropy cases: chunked (chunk 4 of V = 9, which does not divide it) and dense, options on.

    The bias, when given, is a keyword argument; ``astype`` casts it with the rest.
    """
    cases = []
    for seed, (N, D, V, chunk, extra) in enumerate(
        [
            (1, 3, 5, 2, {}),
            (7, 4, 9, 4, {"reduction": "sum"}),
            (6, 3, 9, 4, {"label_smoothing": 0.2, "softcap": 1.5, "z_loss": 0.05}),
            (8, 5, 6, None, {"reduction": "mean"}),
        ]
    ):
        rng = _rng(70 + seed)
        X, W = rng.standard_normal((N, D)), rng.standard_normal((D, V))
        bias = {"bias": 0.5 * rng.standard_normal(V)} if seed % 2 == 0 else {}
        kwargs = {**bias, "chunk_size": chunk, **extra}
        cases.append(Case(f"N={N} D={D} V={V}", "linear_cross_entropy", (X, W, _labels(N, V, seed)), kwargs))
    return cases


# ------------------------------------------------------------- loss options
def _soft_targets(N: int, C: int, seed: int, row_sums: np.ndarray | None = None) -> np.ndarray:
    """Non-negative (N, C) targets; rows sum to 1, or to ``row_sums`` (0 included) when given."""
    T = _rng(seed + 2000).random((N, C)) ** 2
    T /= T.sum(axis=1, keepdims=True)
    return T if row_sums is None else T * row_sums[:, None]


def _class_weights(C: int, seed: int) -> np.ndarray:
    return 0.2 + 2.8 * _rng(seed + 3000).random(C)  # in [0.2, 3]: far from all equal


def _option_inputs() -> list[tuple[str, np.ndarray, np.ndarray, dict[str, Any]]]:
    """(group, scores, y, options): each option alone, in combination, at edge shapes and large logits."""
    N, C = 7, 5
    S = _scores(N, C, seed=70)  # scores of size ~2: a soft cap of 2 bends them
    y = _labels(N, C, seed=70)
    w = _class_weights(C, 70)
    ignored = y.copy()
    ignored[[1, 4]] = -100
    in_range = y.copy()
    in_range[[0, 3]] = 2  # ignore_index = 2 is a real class: rows labelled 2 are skipped
    uneven = np.array([1.0, 0.5, 0.0, 2.0, 1.0, 0.25, 1.0])  # a zero row, a half row, a double row
    soft, soft_uneven = _soft_targets(N, C, 70), _soft_targets(N, C, 71, uneven)
    every = {"weight": w, "label_smoothing": 0.1, "z_loss": 0.05, "softcap": 3.0}
    big = np.array([[500.0, -500.0, 0.0, 499.5], [-500.0, 500.0, 250.0, 0.0], [700.0, 710.0, -300.0, 709.0]])
    return [
        ("weight", S, y, {"weight": w}),
        ("ignore_index=-100", S, ignored, {"ignore_index": -100}),
        ("ignore_index in range", S, in_range, {"ignore_index": 2}),
        ("every row ignored", S, np.full(N, -100), {"ignore_index": -100}),
        ("kept rows weigh 0", S, np.array([0, 1, 0, 1, 1, 0, 1]), {"weight": np.array([0.0, 0.0, 1.0, 2.0, 1.0])}),
        ("label_smoothing", S, y, {"label_smoothing": 0.1}),
        ("label_smoothing=1", S, y, {"label_smoothing": 1.0}),
        ("weight+smoothing", S, y, {"weight": w, "label_smoothing": 0.2}),
        ("soft targets", S, soft, {}),
        ("soft targets, rows not summing to 1", S, soft_uneven, {}),
        ("soft targets+weight+smoothing", S, soft_uneven, {"weight": w, "label_smoothing": 0.3}),
        ("z_loss", S, y, {"z_loss": 0.1}),
        ("softcap", S, y, {"softcap": 2.0}),
        ("every option", S, ignored, {**every, "ignore_index": -100}),
        ("every option, soft targets", S, soft_uneven, every),
        ("every option, N=1", S[:1], y[:1], {**every, "ignore_index": -100}),
        ("every option, C=1", _scores(4, 1, seed=71), np.zeros(4, np.intp), {**every, "weight": np.array([2.0])}),
        ("every option, C=2", _scores(6, 2, seed=72), _labels(6, 2, 72), {**every, "weight": np.array([0.5, 3.0])}),
        (
            "large logits",
            big,
            np.array([1, -100, 0]),
            {**every, "weight": w[:4], "softcap": None, "ignore_index": -100},
        ),
        ("large logits, softcap", big, np.array([1, 2, 0]), {**every, "softcap": 30.0, "weight": w[:4]}),
    ]


OPTION_GROUPS = tuple(group for group, *_ in _option_inputs())


def option_cases() -> list[Case]:
    """``softmax_loss`` with its loss options (eqs. 17-24), one group of cases per option group, both reductions."""
    return [
        Case(group, "softmax_loss", (S, y), {"reduction": reduction, **options}, group)
        for group, S, y, options in _option_inputs()
        for reduction in ("mean", "sum")
    ]
