"""Framework adapters: how a target's arguments are built and, when it returns the loss alone, differentiated.

Each adapter is one module with the same three functions:

* ``arguments(kind, inputs)``: the call's arguments in the framework's own
  types, built over fresh NumPy arrays (so that a write into them shows),
  with the differentiable ones marked (``requires_grad`` for torch);
* ``differentiate(fn, kind, arguments, loss)``: the gradients of a loss the
  target returned alone, by the framework's own machinery (``backward()``,
  ``jax.grad``), which is what runs a custom ``autograd.Function`` or
  ``custom_vjp``; NumPy has none, and says so;
* ``to_numpy(value)``: a returned loss or gradient as a NumPy array;

and a ``context(dtype)`` the call runs inside (JAX's local x64 switch). Adding
a framework is one module here and one line in ``ADAPTERS``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from types import ModuleType

from reference.checker.errors import CheckError

ADAPTERS = {"numpy": "reference.checker.frameworks.numpy", "torch": "reference.checker.frameworks.torch",
            "jax": "reference.checker.frameworks.jax"}  # fmt: skip
FRAMEWORKS = ("auto", *ADAPTERS)
INSTALL_HINT = {"torch": "PyTorch is not installed; install the extra: pip install 'softmax-grad[torch]'"}


def adapter(name: str) -> ModuleType:
    """The adapter module of framework ``name``; a clear CheckError if the framework is not installed."""
    if name not in ADAPTERS:
        raise ValueError(f"framework must be one of {list(FRAMEWORKS)}, got {name!r}")
    try:
        return importlib.import_module(ADAPTERS[name])
    except ImportError as exc:
        raise CheckError(INSTALL_HINT.get(name, f"{name} cannot be imported: {exc}")) from None


def _home(fn: Callable) -> ModuleType | None:
    """The module a target was defined in (for ``Function.apply``, the class's module)."""
    owner = getattr(fn, "__self__", None)
    for candidate in (fn, owner, getattr(owner, "__class__", None)):
        module = inspect.getmodule(candidate) if candidate is not None else None
        if module is not None and module.__name__ not in ("builtins", "torch.autograd.function"):
            return module
    return None


def detect(fn: Callable) -> str:
    """``torch`` or ``jax`` if the target's module imported it, else ``numpy``."""
    module = _home(fn)
    names = set()
    if module is not None:
        names = {value.__name__.split(".")[0] for value in vars(module).values() if isinstance(value, ModuleType)}
        names |= {getattr(value, "__module__", "").split(".")[0] for value in vars(module).values()}
    for name in ("torch", "jax"):
        if name in names and name in sys.modules:
            return name
    return "numpy"
