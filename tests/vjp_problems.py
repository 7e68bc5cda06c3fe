"""Small problems for tests/test_vjp.py and tests/test_masked.py: every loss option, both loss functions.

A ``Problem`` holds the inputs of ``softmax_loss`` or ``linear_cross_entropy``
and calls any variant on them at a given reduction and cotangent (derivation
eqs. 54-55), returning the loss and the gradients as a dict. Sizes are tiny so
that ``per_element``'s Python loops stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import numpy as np

from softmax_grad.compare import compare
from softmax_grad.tolerances import AUTODIFF, tolerance

FUNCTIONS = ("softmax_loss", "linear_cross_entropy")
# Option groups, by name; "weight" and "everything" get their class weights drawn per problem.
OPTION_GROUPS = (
    "plain",
    "weight",
    "ignore_index",
    "label_smoothing",
    "z_loss",
    "softcap",
    "soft targets",
    "everything",
)
N, C, D = 5, 6, 3
IGNORE = -100


@dataclass(frozen=True)
class Problem:
    function: str
    inputs: dict[str, np.ndarray]  # scores or X, W (and bias); y
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.inputs["y"].shape[0]

    def call(
        self, module: ModuleType, reduction: str = "sum", grad_output: Any = None, **extra: Any
    ) -> tuple[Any, dict[str, np.ndarray]]:
        """The loss and the gradients (``{"S": dS}`` for ``softmax_loss``) of ``module`` on this problem."""
        keywords = {**self.options, **extra, "reduction": reduction}
        if grad_output is not None:
            keywords["grad_output"] = grad_output
        if self.function == "softmax_loss":
            loss, dS = module.softmax_loss(self.inputs["S"], self.inputs["y"], **keywords)
            return loss, {"S": dS}
        bias = self.inputs.get("bias")
        if bias is not None:
            keywords["bias"] = bias
        return module.linear_cross_entropy(self.inputs["X"], self.inputs["W"], self.inputs["y"], **keywords)

    def subset(self, index: np.ndarray | slice) -> Problem:
        """The same problem on some of its rows (the same classes, the same options)."""
        inputs = dict(self.inputs)
        for key in ("S", "X", "y"):
            if key in inputs:
                inputs[key] = inputs[key][index]
        return replace(self, inputs=inputs)

    def denominators(self) -> tuple[float, float]:
        """``D_n`` and ``K`` of eqs. (20)-(21): the kept rows' label weights and their count."""
        y = self.inputs["y"]
        if y.ndim == 2:
            return float(y.shape[0]), float(y.shape[0])
        ignore = self.options.get("ignore_index")
        kept = np.ones(y.shape[0], bool) if ignore is None else y != ignore
        weight = self.options.get("weight")
        w_y = np.ones(y.shape[0]) if weight is None else np.asarray(weight, np.float64)[np.where(kept, y, 0)]
        return float(np.sum(w_y[kept])), float(kept.sum())

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.inputs["S" if "S" in self.inputs else "X"].dtype)


def problem(function: str, group: str, dtype: type, seed: int = 0, *, rows: int = N, classes: int = C) -> Problem:
    """A problem of ``function`` with the option ``group``; soft targets fall back to labels for linear CE."""
    rng = np.random.default_rng(seed)
    soft = group == "soft targets" and function == "softmax_loss"
    y: np.ndarray = rng.integers(0, classes, rows)
    if soft:
        y = (rng.random((rows, classes)) * rng.choice([0.0, 0.5, 2.0], size=(rows, 1))).astype(dtype)
    options: dict[str, Any] = {}
    if group in ("weight", "everything"):
        options["weight"] = (rng.random(classes) * 2 + 0.1).astype(dtype)
    if group in ("ignore_index", "everything"):
        options["ignore_index"] = IGNORE
        y[rng.permutation(rows)[: max(1, rows // 3)]] = IGNORE
    if group in ("label_smoothing", "everything"):
        options["label_smoothing"] = 0.2
    if group in ("z_loss", "everything"):
        options["z_loss"] = 0.05
    if group in ("softcap", "everything"):
        options["softcap"] = 2.0
    if function == "softmax_loss":
        return Problem(function, {"S": (2 * rng.standard_normal((rows, classes))).astype(dtype), "y": y}, options)
    X = rng.standard_normal((rows, D)).astype(dtype)
    W = rng.standard_normal((D, classes)).astype(dtype)
    inputs = {"X": X, "W": W, "y": y}
    if group in ("plain", "everything", "weight"):
        inputs["bias"] = rng.standard_normal(classes).astype(dtype)
    return Problem(function, inputs, options)


def agree(actual: Any, expected: Any, dtype: np.dtype, label: str) -> None:
    """``actual`` equals ``expected`` to rounding in ``dtype``: the suite's own autodiff-comparison row."""
    result = compare(actual, expected, tolerance(dtype, AUTODIFF), label=label, gradient=True)
    assert result.ok, result.message


def agree_grads(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], dtype: np.dtype, label: str) -> None:
    assert actual.keys() == expected.keys(), (label, actual.keys(), expected.keys())
    for key in expected:
        agree(actual[key], expected[key], dtype, f"{label} d{key}")
