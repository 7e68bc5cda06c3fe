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


def invoke(fn: Callable, args: tuple[Any, ...]) -> Any:
    return fn(*args)


def differentiate(fn: Callable, kind: Kind, args: tuple[Any, ...], loss: Any) -> dict[str, Any]:
    leaves = {name: _leaf(kind, args, path) for path, name in kind.differentiable}
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise TypeError("returned a loss that autograd cannot differentiate (detached, or not a tensor)")
    loss.backward()
    missing = [name for name, leaf in leaves.items() if leaf.grad is None]
    if missing:
        raise TypeError(f"backward() left no gradient on {', '.join(missing)}: the loss does not depend on it")
    return {name: leaf.grad for name, leaf in leaves.items()}


def to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


@contextlib.contextmanager
def context(dtype: np.dtype) -> Iterator[None]:
    yield
