"""Framework adapters: how a target's arguments are built and, when it returns the loss alone, differentiated.

Each adapter is one module with the same functions:

* ``arguments(kind, inputs)``: the call's arguments in the framework's own
  types, built over fresh NumPy arrays (so that a write into them shows),
  with the differentiable ones marked (``requires_grad`` for torch);
* ``cotangent(g)``: the case's cotangent (derivation eq. 54) in the framework's
  own type, for a function that takes ``grad_output``;
* ``invoke(fn, arguments, kind, grad_output=g, takes=...)``: the call, with
  ``grad_output=g`` when the function takes it;
* ``differentiate(fn, kind, arguments, loss, grad_output=g, takes=...)``:
  ``(value, gradients)`` for a loss the target returned alone, the
  vector-Jacobian product at ``g`` by the framework's own machinery
  (``backward(g)``, ``jax.vjp``), which is what runs a custom
  ``autograd.Function`` or ``custom_vjp``; ``value`` is the loss as the
  differentiated call computes it (``SECOND_VALUE`` says which), judged beside
  the plain call's; NumPy has none, and says so;
* ``to_numpy(value)``: a returned loss or gradient as a NumPy array;

and a ``context(dtype)`` the call runs inside (JAX's local x64 switch). They
run in the checker's child process, beside the target (``reference.checker.sealed``).
Adding a framework is one module here and one line in ``ADAPTERS``.
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


def _namespaces(fn: Callable) -> list[dict]:
    """The global namespaces the target's code reads: its module's, its function's, its class's methods'."""
    owner = getattr(fn, "__self__", None)
    functions = [fn, getattr(fn, "__func__", None), getattr(fn, "__wrapped__", None), getattr(fn, "fun", None)]
    if isinstance(owner, type):  # torch.autograd.Function.apply: the methods hold the code
        functions += list(vars(owner).values())
    spaces = [getattr(getattr(f, "__func__", f), "__globals__", None) for f in functions]
    module = inspect.getmodule(fn)
    spaces.append(vars(module) if module is not None else None)
    return [space for space in spaces if isinstance(space, dict)]


def _top(value: object) -> str | None:
    name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
    return name.split(".")[0] if isinstance(name, str) else None


def _referenced(fn: Callable) -> set[str]:
    """The packages of the globals the function's own code (nested functions included) reads."""
    function = getattr(fn, "__func__", fn)
    code, space = getattr(function, "__code__", None), getattr(function, "__globals__", {})
    names, stack = set(), [code] if code is not None else []
    while stack:
        current = stack.pop()
        names |= set(current.co_names)
        stack += [const for const in current.co_consts if hasattr(const, "co_names")]
    return {top for name in names if name in space and (top := _top(space[name]))}


def detect(fn: Callable) -> str:
    """``torch`` or ``jax`` if the target is built on it, its code reads it, or its namespace imports it."""
    owner = getattr(fn, "__self__", None)
    types = [type(fn), *(owner.__mro__ if isinstance(owner, type) else ())]  # custom_vjp objects, Function.apply
    built_on = {t.__module__.split(".")[0] for t in types}
    referenced = _referenced(fn)
    imported = {top for space in _namespaces(fn) for value in space.values() if (top := _top(value))}
    for seen in (built_on, referenced, set() if "numpy" in referenced else imported):
        for name in ("torch", "jax"):
            if name in seen and name in sys.modules:
                return name
    return "numpy"
