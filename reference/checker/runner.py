"""One call of the user's function, fenced: fresh inputs, output captured, any exception caught.

Whatever the target does (raises, calls ``sys.exit``, prints, writes into its
arguments, removes keys from ``params``) becomes part of the verdict, never a
traceback or an exit status of the checker itself. ``run`` makes the call; it
runs in the checker's child process (``reference.checker.sealed``), or, for a
function no child can load, in a worker thread here (``call``).
"""

from __future__ import annotations

import inspect
import io
import math
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from reference.checker.battery import Case, cast, laid_out
from reference.checker.kinds import Kind

DEFAULT_TIMEOUT = 60.0  # seconds per case: generous for a loop-based function at N = 80


@dataclass
class Call:
    """What one call did. ``result`` is ``(loss, gradients)``, gradients as returned or from autodiff."""

    result: Any = None
    by_autodiff: bool = False
    error: str | None = None  # what was raised, as a sentence
    traceback: str | None = None  # the function's own frames
    timed_out: bool = False
    printed: str = ""
    warned: list[str] = field(default_factory=list)
    mutated: list[str] = field(default_factory=list)
    second_loss: Any = None  # a lone loss's value as the differentiated call computed it (judged too)
    second_loss_is: str = ""  # which value that is, in words


def fresh_inputs(inputs: Mapping[str, Any], layout: str) -> dict[str, Any]:
    """Fresh copies of ``inputs`` in memory layout ``layout`` (mappings copied too)."""

    def fresh(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: fresh(item) for key, item in value.items()}
        return laid_out(value, layout) if isinstance(value, np.ndarray) else value

    return fresh(inputs)


def _changes(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> list[str]:
    changes = []
    for name, value in before.items():
        where = f"{prefix}[{name!r}]" if prefix else name
        if name not in after:
            changes.append(f"the function removed {where} from the caller's mapping (a pop or del)")
        elif isinstance(value, Mapping):
            changes += (
                _changes(value, after[name], where)
                if isinstance(after[name], Mapping)
                else [f"the function replaced {where}"]
            )
        elif isinstance(value, np.ndarray) and not np.array_equal(value, after[name], equal_nan=True):
            changes.append(f"the function wrote into its argument {where}")
    return changes


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the function's first frame on (the checker's own frames say nothing to the user)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [i for i, frame in enumerate(frames) if "/reference/checker/" in frame.filename.replace("\\", "/")]
    start = ours[-1] + 1 if ours else 0
    lines = traceback.format_list(frames[start:]) + traceback.format_exception_only(type(exc), exc)
    return "Traceback (most recent call last):\n" + "".join(lines)


def describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"the function called sys.exit({exc.code!r}); a check must never end that way"
    return f"the function raised {type(exc).__name__}: {exc}"


def run(
    fn: Callable,
    kind: Kind,
    inputs: Mapping[str, Any],
    layout: str,
    framework: ModuleType,
    dtype: np.dtype,
    captured: io.StringIO | None = None,
    grad_output: Any = None,
) -> Call:
    """Call ``fn`` once on fresh copies of ``inputs`` (already in ``dtype``), here and now, and say what it did.

    Prints and warnings are captured; an exception (``SystemExit`` too) becomes
    the call's error with the function's own traceback. A loss returned alone is
    differentiated by the framework at the cotangent ``grad_output`` (eq. 54;
    None: 1), and the value the differentiated call computes is kept beside it:
    both are judged. A function with a ``grad_output`` parameter is called with
    it. With ``captured`` given, the caller has sent ``sys.stdout`` and
    ``sys.stderr`` there itself.
    """
    given = fresh_inputs(inputs, layout)
    outcome = Call()
    stdout, stderr = sys.stdout, sys.stderr
    own = captured is None
    captured = io.StringIO() if captured is None else captured
    if own:
        sys.stdout = sys.stderr = captured
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with framework.context(dtype):
                args = framework.arguments(kind, given)
                g = None if grad_output is None else framework.cotangent(laid_out(np.asarray(grad_output), "C")
                                                                         if np.ndim(grad_output) else grad_output)
                cotangent = {"grad_output": g, "takes": grad_output is not None and takes_grad_output(fn)}
                result = framework.invoke(fn, args, kind, **cotangent)
                if isinstance(result, tuple | list) and len(result) == 2:
                    outcome.result = tuple(result)
                elif not _lone_loss(result, grad_output):
                    outcome.result = result  # the verdict says what is wrong with it
                else:  # the loss alone: the framework differentiates it, at the cotangent
                    value, gradients = framework.differentiate(fn, kind, args, result, **cotangent)
                    outcome.result, outcome.by_autodiff = (result, gradients), True
                    outcome.second_loss, outcome.second_loss_is = value, framework.SECOND_VALUE
                outcome.mutated = _changes(inputs, _seen(kind, args, given))
        outcome.warned = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: user code must not end the check
        outcome.error, outcome.traceback = describe(exc), _user_traceback(exc)
    finally:
        if own:
            sys.stdout, sys.stderr = stdout, stderr
    outcome.printed = captured.getvalue()
    return outcome


def takes_grad_output(fn: Callable) -> bool:
    """Whether ``fn`` has a parameter named ``grad_output``: it is then called with the case's cotangent (eq. 54).

    >>> takes_grad_output(lambda scores, y, *, grad_output=None: None), takes_grad_output(lambda scores, y: None)
    (True, False)
    """
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    found = parameters.get("grad_output")
    return found is not None and found.kind in (found.POSITIONAL_OR_KEYWORD, found.KEYWORD_ONLY)


def hung(timeout: float) -> str:
    return f"the function did not return within {timeout:g} s (the per-case limit, --timeout)"


def call(fn: Callable, kind: Kind, case: Case, framework: ModuleType, dtype: np.dtype, timeout: float) -> Call:
    """Run ``fn`` on ``case`` in a worker thread of this process, at most ``timeout`` seconds (``inf``: no limit).

    The fallback for a function that a child process cannot load (a lambda, a
    closure, a function of ``__main__``); ``reference.checker.sealed`` runs
    every other one apart.
    """
    inputs = cast(case.inputs, dtype)
    outcome: list[Call] = []
    captured = io.StringIO()
    worker = threading.Thread(
        target=lambda: outcome.append(
            run(fn, kind, inputs, case.layout, framework, dtype, captured, cast(case.grad_output, dtype))
        ),
        name=f"softmax-grad check: {case.name}",
        daemon=True,
    )
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = captured  # here, not in the worker: a hung worker must not keep them
    try:
        worker.start()
        worker.join(None if math.isinf(timeout) else timeout)
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    if worker.is_alive() or not outcome:
        return Call(timed_out=True, error=hung(timeout))
    return outcome[0]


def _lone_loss(value: Any, grad_output: Any = None) -> bool:
    """A loss returned alone: a number, or an array or tensor of one element; for "none", of one per row."""
    if isinstance(value, bool | str | bytes | tuple | list | Mapping) or value is None:
        return False
    if isinstance(value, int | float | np.number):
        return True
    numel = getattr(value, "numel", None)  # torch
    size = numel() if callable(numel) else getattr(value, "size", None)
    return size == 1 or (np.ndim(grad_output) == 1 and size == np.size(grad_output) and len(np.shape(value)) == 1)


def _seen(kind: Kind, args: tuple[Any, ...], given: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as the function left them: NumPy views (torch shares memory) and the mappings' keys."""
    seen = {}
    for name, value in zip(kind.arguments, args, strict=True):
        original = given[name]
        if isinstance(original, Mapping):
            seen[name] = {key: original[key] for key in value} if isinstance(value, Mapping) else value
        else:
            seen[name] = original
    return seen
