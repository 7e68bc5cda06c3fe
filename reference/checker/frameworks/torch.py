"""PyTorch targets: called with tensors (the differentiable ones ``requires_grad``); a lone loss goes to ``backward``.

The tensors share memory with the checker's fresh NumPy copies
(``torch.from_numpy``), so a write into an argument shows, as it does for NumPy.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ml_dtypes
import numpy as np
import torch
from torch.nn import functional

from reference.checker.kinds import Kind

NAME = "torch"
SECOND_VALUE = "the loss of a call without gradients (torch.no_grad(), no requires_grad)"


def _tensor(value: Any, differentiable: bool) -> Any:
    if not isinstance(value, np.ndarray):
        return value  # reg stays a Python float
    if value.dtype == ml_dtypes.bfloat16:  # NumPy has no bfloat16 of its own: share the bits (a write still shows)
        tensor = torch.from_numpy(value.view(np.int16)).view(torch.bfloat16)
    else:
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


def cotangent(value: Any) -> Any:
    """The cotangent as the function receives it: a float, or a tensor (N,) of the case's dtype."""
    return _tensor(value, False) if isinstance(value, np.ndarray) else value


def invoke(fn: Callable, args: tuple[Any, ...], kind: Kind | None = None, grad_output: Any = None,
           takes: bool = False) -> Any:  # fmt: skip
    return fn(*args, grad_output=grad_output) if takes else fn(*args)


def differentiate(fn: Callable, kind: Kind, args: tuple[Any, ...], loss: Any, grad_output: Any = None,
                  takes: bool = False) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """``backward(grad_output)`` of the returned loss, and the loss of a second call without gradients.

    ``grad_output`` is the case's cotangent (eq. 54; None: 1), given to
    ``backward`` in the loss's shape and dtype: what a custom
    ``autograd.Function``'s backward receives as its incoming gradient. The
    second call runs on detached copies under ``torch.no_grad()``: an
    ``autograd.Function`` whose forward computes another value when gradients
    are wanted is then caught, whichever of the two is wrong. If that call
    raises, only the first value is judged.
    """
    leaves = {name: _leaf(kind, args, path) for path, name in kind.differentiable}
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise TypeError("returned a loss that autograd cannot differentiate (detached, or not a tensor)")
    g = 1.0 if grad_output is None else grad_output
    loss.backward(torch.as_tensor(g, dtype=loss.dtype).reshape(loss.shape))
    missing = [name for name, leaf in leaves.items() if leaf.grad is None]
    if missing:
        raise TypeError(f"backward() left no gradient on {', '.join(missing)}: the loss does not depend on it")
    second = functools.partial(fn, grad_output=grad_output) if takes else fn
    return _without_grad(second, args), {name: leaf.grad for name, leaf in leaves.items()}


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
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            return value.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return value.numpy()
    return np.asarray(value)


@contextlib.contextmanager
def context(dtype: np.dtype) -> Iterator[None]:
    yield


# ------------------------------------------------------------------ the loss as PyTorch users write it
def cross_entropy(
    S: torch.Tensor,
    y: torch.Tensor,
    reduction: str = "mean",
    weight: Any = None,
    ignore_index: Any = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> torch.Tensor:
    """Eqs. (17)-(21) and (55) as a PyTorch user writes them: ``F.cross_entropy`` of the capped logits, the z-loss.

    The yardstick of a low-precision check (``own``), the plain torch target
    that every dtype's bound must let pass (the tests), the torch peer of the
    margins sweep. ``ignore_index`` None is torch's default, -100.

    >>> S = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, -torch.inf]]); y = torch.tensor([0, 1])
    >>> print(f"{float(cross_entropy(S, y)):.5f}")
    0.27198
    """
    # eq. (56): soft-capping keeps a masked class at -inf (the tanh never sees it, so no NaN reaches a gradient)
    masked = torch.isneginf(S)
    Z = S if softcap is None else torch.where(masked, S, softcap * torch.tanh(torch.where(masked, 0.0, S) / softcap))
    w = None if weight is None else torch.as_tensor(np.asarray(weight), dtype=S.dtype)
    ignore = -100 if ignore_index is None else int(ignore_index)
    loss = functional.cross_entropy(
        Z, y, weight=w, ignore_index=ignore, label_smoothing=float(label_smoothing or 0.0), reduction=reduction
    )
    if z_loss:
        kept = (y != ignore).to(S.dtype)
        rows = float(z_loss) * kept * torch.logsumexp(Z, dim=1) ** 2
        if reduction == "none":  # eq. (55): z lse_i^2 on each kept row's own loss
            return loss + rows
        penalty = torch.sum(rows)
        loss = loss + (penalty / torch.clamp(kept.sum(), min=1) if reduction == "mean" else penalty)
    return loss


def scores_loss(scores: torch.Tensor, y: torch.Tensor, reduction: str = "mean", **options: Any) -> torch.Tensor:
    """Kind "scores": the cross-entropy of the scores."""
    return cross_entropy(scores, y, reduction, **options)


def linear_loss(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, reg: float, reduction: str = "mean",
                **options: Any) -> torch.Tensor:  # fmt: skip
    """Kind "linear": eq. (12) forward and eq. (3)'s penalty."""
    return cross_entropy(X @ W, y, reduction, **options) + 0.5 * reg * torch.sum(W * W)


def two_layer_loss(params: Mapping[str, torch.Tensor], X: torch.Tensor, y: torch.Tensor, reg: float,
                   reduction: str = "mean", **options: Any) -> torch.Tensor:  # fmt: skip
    """Kind "two_layer": eq. (7) forward, ``torch.relu``, and eq. (3)'s penalty on both weights."""
    S = torch.relu(X @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    penalty = 0.5 * reg * (torch.sum(params["W1"] ** 2) + torch.sum(params["W2"] ** 2))
    return cross_entropy(S, y, reduction, **options) + penalty


def linear_cross_entropy(X: torch.Tensor, W: torch.Tensor, y: torch.Tensor, bias: torch.Tensor | None = None,
                         reduction: str = "mean", **options: Any) -> torch.Tensor:  # fmt: skip
    """Kind "linear_ce": ``F.linear`` (eq. 25's ``X W + b``), then the cross-entropy."""
    return cross_entropy(functional.linear(X, W.T, bias), y, reduction, **options)


# kind -> the loss as PyTorch users write it: ``(*the kind's arguments, reduction="mean", **options)``
LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "scores": scores_loss,
    "linear": linear_loss,
    "two_layer": two_layer_loss,
    "linear_ce": linear_cross_entropy,
    "linear_ce without bias": linear_cross_entropy,
}


def own(
    kind: Kind,
    inputs: Mapping[str, Any],
    *,
    reduction: str,
    options: Mapping[str, Any],
    reg: float,
    grad_output: Any = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """PyTorch's own plain autograd of the same loss on the same (low-precision) inputs: the yardstick beside the bound.

    ``LOSSES``' loss of the kind; ``reg`` is eq. (3)'s; the gradients are the
    VJP at ``grad_output`` (eq. 54); the result is read as float64.
    """
    args = list(arguments(kind, inputs))
    if "reg" in kind.arguments:
        args[kind.arguments.index("reg")] = reg
    loss = LOSSES[kind.name](*args, reduction=reduction, **options)
    g = 1.0 if grad_output is None else grad_output
    loss.backward(torch.as_tensor(np.asarray(g, np.float64)).to(loss.dtype).reshape(loss.shape))
    grads = {name: _leaf(kind, tuple(args), path).grad for path, name in kind.differentiable}
    value = np.asarray(to_numpy(loss), np.float64)
    return (value if reduction == "none" else float(value)), {
        name: np.asarray(to_numpy(g), np.float64) for name, g in grads.items()
    }
