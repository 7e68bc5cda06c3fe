"""NumPy targets: called with NumPy arrays, and must return the loss and its gradients."""

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


def invoke(fn: Callable, args: tuple[Any, ...], kind: Kind | None = None) -> Any:
    return fn(*args)


def differentiate(fn: Callable, kind: Kind, args: tuple[Any, ...], loss: Any) -> tuple[Any, dict[str, Any]]:
    raise TypeError(f"returned the loss alone; a NumPy function must return {kind.signature.split('-> ')[1]}")


def to_numpy(value: Any) -> Any:
    return np.asarray(value)


@contextlib.contextmanager
def context(dtype: np.dtype) -> Iterator[None]:
    yield


def own(kind: Kind, inputs: Mapping[str, Any], *, reduction: str, options: Mapping[str, Any], reg: float) -> None:
    """NumPy has no autodiff of its own: a NumPy target is judged by the bound alone."""
    return None
