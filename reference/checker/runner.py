"""One call of the user's function, fenced: fresh inputs, a time limit, output captured, any exception caught.

Whatever the target does (raises, calls ``sys.exit``, hangs, prints, writes
into its arguments, removes keys from ``params``) becomes part of the verdict,
never a traceback or an exit status of the checker itself.
"""

from __future__ import annotations

import io
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


def call(fn: Callable, kind: Kind, case: Case, framework: ModuleType, dtype: np.dtype, timeout: float) -> Call:
    """Run ``fn`` on ``case`` in a worker thread, at most ``timeout`` seconds."""
    inputs = cast(case.inputs, dtype)
    given = fresh_inputs(inputs, case.layout)
    outcome = Call()

    def work() -> None:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with framework.context(dtype):
                    args = framework.arguments(kind, given)
                    result = framework.invoke(fn, args)
                    if isinstance(result, tuple | list) and len(result) == 2:
                        outcome.result = tuple(result)
                    elif not _one_number(result):
                        outcome.result = result  # the verdict says what is wrong with it
                    else:  # the loss alone: the framework differentiates it
                        outcome.result = (result, framework.differentiate(fn, kind, args, result))
                        outcome.by_autodiff = True
                    outcome.mutated = _changes(inputs, _seen(kind, args, given))
            outcome.warned = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit too: user code must not end the check
            outcome.error, outcome.traceback = describe(exc), _user_traceback(exc)

    worker = threading.Thread(target=work, name=f"softmax-grad check: {case.name}", daemon=True)
    stdout, stderr = sys.stdout, sys.stderr
    captured = io.StringIO()
    sys.stdout = sys.stderr = captured
    try:
        worker.start()
        worker.join(timeout)
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    outcome.printed = captured.getvalue()
    if worker.is_alive():
        outcome.timed_out = True
        outcome.error = f"the function did not return within {timeout:g} s (the per-case limit, --timeout)"
    return outcome


def _one_number(value: Any) -> bool:
    """A loss returned alone: a number, or an array or tensor of one element."""
    if isinstance(value, bool | str | bytes | tuple | list | Mapping) or value is None:
        return False
    if isinstance(value, int | float | np.number):
        return True
    numel = getattr(value, "numel", None)  # torch
    size = numel() if callable(numel) else getattr(value, "size", None)
    return size == 1


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
