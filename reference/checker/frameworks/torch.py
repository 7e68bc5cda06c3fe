"""PyTorch targets: called with tensors (the differentiable ones ``requires_grad``); a lone loss goes to ``backward()``.

The tensors share memory with the checker's fresh NumPy copies
(``torch.from_numpy``), so a write into an argument shows, as it does for NumPy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from reference.checker.kinds import Kind

NAME = "torch"
SECOND_VALUE = "the loss of a call without gradients (torch.no_grad(), no requires_grad)"


def _tensor(value: Any, differentiable: bool) -> Any:
    if not isinstance(value, np.ndarray):
        return value  # reg stays a Python float
    tensor = torch.from_numpy(value)
    return tensor.requires_grad_(True) if differentiable else tensor


def arguments(kind: Kind, inputs: Mapping[str, Any]) -> tuple[Any, ...]:
    marked = {path for path, _ in kind.differentiable}
    built = {}
    for name, value in inputs.items():
        if isinstance(value, Mapping):
            built[name] = {key: _tensor(item, (name, key) in marked) for key, item in value.items()}
        else:
            built[name] = _tensor(value, (name,) in marked)
    return kind.call_args(built)


def _leaf(kind: Kind, args: tuple[Any, ...], path: tuple[str, ...]) -> Any:
    value = args[kind.arguments.index(path[0])]
    return value[path[1]] if len(path) > 1 else value


def invoke(fn: Callable, args: tuple[Any, ...], kind: Kind | None = None) -> Any:
    return fn(*args)


def differentiate(fn: Callable, kind: Kind, args: tuple[Any, ...], loss: Any) -> tuple[Any, dict[str, Any]]:
    """``backward()`` of the returned loss, and the loss of a second call without gradients.

    The second call runs on detached copies under ``torch.no_grad()``: an
    ``autograd.Function`` whose forward computes another value when gradients
    are wanted is then caught, whichever of the two is wrong. If that call
    raises, only the first value is judged.
    """
    leaves = {name: _leaf(kind, args, path) for path, name in kind.differentiable}
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise TypeError("returned a loss that autograd cannot differentiate (detached, or not a tensor)")
    loss.backward()
    missing = [name for name, leaf in leaves.items() if leaf.grad is None]
    if missing:
        raise TypeError(f"backward() left no gradient on {', '.join(missing)}: the loss does not depend on it")
    return _without_grad(fn, args), {name: leaf.grad for name, leaf in leaves.items()}


def _detached(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _detached(item) for key, item in value.items()}
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def _without_grad(fn: Callable, args: tuple[Any, ...]) -> Any:
    try:
        with torch.no_grad():
            return fn(*(_detached(a) for a in args))
    except Exception:
        return None


def to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


@contextlib.contextmanager
def context(dtype: np.dtype) -> Iterator[None]:
    yield
