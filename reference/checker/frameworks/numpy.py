"""NumPy targets: called with NumPy arrays, and must return the loss and its gradients.

A NumPy function has no autodiff to apply a cotangent: one with a parameter
named ``grad_output`` is called with the case's (eq. 54) and returns the VJP
at it; one without is judged at cotangent 1 (reduction "none" requires it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from reference.checker.kinds import Kind

NAME = "numpy"
SECOND_VALUE = ""  # a NumPy function returns its gradients: there is no differentiated call


def arguments(kind: Kind, inputs: Mapping[str, Any]) -> tuple[Any, ...]:
    return kind.call_args(inputs)


def cotangent(value: Any) -> Any:
    """The cotangent as the function receives it: a float, or a NumPy array of the case's dtype."""
    return value


def invoke(fn: Callable, args: tuple[Any, ...], kind: Kind | None = None, grad_output: Any = None,
           takes: bool = False) -> Any:  # fmt: skip
    return fn(*args, grad_output=grad_output) if takes else fn(*args)


def differentiate(fn: Callable, kind: Kind, args: tuple[Any, ...], loss: Any, grad_output: Any = None,
                  takes: bool = False) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    raise TypeError(f"returned the loss alone; a NumPy function must return {kind.signature.split('-> ')[1]}")


def to_numpy(value: Any) -> Any:
    return np.asarray(value)


@contextlib.contextmanager
def context(dtype: np.dtype) -> Iterator[None]:
    yield


def own(kind: Kind, inputs: Mapping[str, Any], *, reduction: str, options: Mapping[str, Any], reg: float,
        grad_output: Any = None) -> None:  # fmt: skip
    """NumPy has no autodiff of its own: a NumPy target is judged by the bound alone."""
    return None
