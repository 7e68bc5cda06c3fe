"""The kinds of function the checker can judge: how each is called, what it returns, what is differentiated.

A kind is one entry of ``KIND_SPECS``: the call order of its arguments, which
of them are differentiated (and the name of each gradient in the function's
result), which gradients carry the ``reg`` penalty, and whether the result's
gradients come as one array or a mapping. Its loss definition lives in
``reference.checker.oracle`` and its cases in ``reference.checker.battery``.
Adding a kind is one entry here, one there, and one case builder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from softmax_grad.contract import PARAM_NAMES


@dataclass(frozen=True)
class Kind:
    """How a function of one kind is called and what it returns.

    ``differentiable`` maps an input path (``("W",)``, ``("params", "W1")``)
    to the name of its gradient in the result. ``mapping`` is True when the
    function returns its gradients as a mapping with those names, False when
    it returns the one gradient as an array.
    """

    name: str
    signature: str
    arguments: tuple[str, ...]
    differentiable: tuple[tuple[tuple[str, ...], str], ...]
    penalized: tuple[str, ...]
    mapping: bool
    axes: Mapping[str, Any]  # argument -> its axes by name ("N", "D", "H", "C"), or for a mapping, key -> axes
    fallback: str | None = None  # the kind to use when the function takes fewer arguments (no bias)

    @property
    def gradient_names(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.differentiable)

    def call_args(self, inputs: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(inputs[name] for name in self.arguments)

    def has_reg(self) -> bool:
        return "reg" in self.arguments


KIND_SPECS: dict[str, Kind] = {
    "scores": Kind(
        "scores",
        "f(scores, y) -> (loss, dscores)",
        ("scores", "y"),
        ((("scores",), "dscores"),),
        (),
        mapping=False,
        axes={"scores": ("N", "C"), "y": ("N",)},
    ),
    "linear": Kind(
        "linear",
        "f(W, X, y, reg) -> (loss, dW)",
        ("W", "X", "y", "reg"),
        ((("W",), "dW"),),
        ("dW",),
        mapping=False,
        axes={"W": ("D", "C"), "X": ("N", "D"), "y": ("N",)},
    ),
    "two_layer": Kind(
        "two_layer",
        "f(params, X, y, reg) -> (loss, grads), grads with keys W1, b1, W2, b2",
        ("params", "X", "y", "reg"),
        tuple((("params", key), key) for key in PARAM_NAMES),
        ("W1", "W2"),
        mapping=True,
        axes={"params": {"W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"), "b2": ("C",)}, "X": ("N", "D"), "y": ("N",)},
    ),
}

# The last layer of a language model (README, "Linear cross-entropy at vocabulary scale"): logits X W + b, every option.
KIND_SPECS["linear_ce"] = Kind(
    "linear_ce",
    "f(X, W, y[, bias]) -> (loss, grads), grads with keys X, W (and b with a bias)",
    ("X", "W", "y", "bias"),
    ((("X",), "X"), (("W",), "W"), (("bias",), "b")),
    (),
    mapping=True,
    axes={"X": ("N", "D"), "W": ("D", "C"), "y": ("N",), "bias": ("C",)},
    fallback="linear_ce without bias",
)
KIND_SPECS["linear_ce without bias"] = Kind(
    "linear_ce without bias",
    "f(X, W, y) -> (loss, grads), grads with keys X, W",
    ("X", "W", "y"),
    ((("X",), "X"), (("W",), "W")),
    (),
    mapping=True,
    axes={"X": ("N", "D"), "W": ("D", "C"), "y": ("N",)},
)

# name -> signature, as ``softmax-grad check --help`` and the error messages show it
KINDS = {name: kind.signature for name, kind in KIND_SPECS.items() if " " not in name}


def register(kind: Kind) -> None:
    """Add a kind (its loss goes to ``oracle.register``, its cases to ``battery.BUILDERS``)."""
    KIND_SPECS[kind.name] = kind
    KINDS[kind.name] = kind.signature


def get(name: str) -> Kind:
    try:
        return KIND_SPECS[name]
    except KeyError:
        raise ValueError(f"kind must be one of {sorted(KIND_SPECS)}, got {name!r}") from None
