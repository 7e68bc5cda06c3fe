"""The checker's child process: it loads the target, calls it on each case it is sent, and sends back numbers.

It runs the target in its main thread (so code that needs it, such as
``signal.signal``, works), through the framework adapters, and converts what
the target returned to NumPy arrays (``reference.checker.wire``); the oracle and
the verdict stay in the checker. Started by ``reference.checker.sealed``, which
imports only what this module needs (not ``reference``'s JAX oracle), so a NumPy
target's child starts in a fraction of a second.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from reference.checker import frameworks, kinds, runner, targets, wire
from reference.checker.errors import CheckError


class _Target:
    fn: Callable | None = None
    adapter: ModuleType | None = None


def _dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes  # bfloat16 and the float8 types

        return np.dtype(getattr(ml_dtypes, name))


def _load(request: Mapping[str, Any], target: _Target) -> dict[str, Any]:
    sys.path[:0] = [entry for entry in request["sys_path"] if entry not in sys.path]  # the checker's, first
    try:
        fn = targets.resolve(request["target"])
        if not callable(fn):
            raise CheckError(f"the target is a {type(fn).__name__}, not a function")
        chosen = frameworks.detect(fn) if request["framework"] == "auto" else request["framework"]
        target.adapter = frameworks.adapter(chosen)
        if request.get("mesh"):  # a mesh check: the arguments go onto the simulated devices
            from reference.checker.mesh import OnMesh

            target.adapter = OnMesh(target.adapter, tuple(request["mesh"]))
    except CheckError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # an unpickling error, an odd object
        return {"error": f"the target cannot be loaded here: {type(exc).__name__}: {exc}"}
    target.fn = fn
    problems = {name: targets.signature_problem(fn, kinds.get(name)) for name in request["kinds"]}
    return {"framework": chosen, "problems": problems, "takes_grad_output": runner.takes_grad_output(fn)}


def _readable(value: Any, adapter: ModuleType) -> Any:
    """``value`` as an array, or a stand-in that tells the verdict why it is not one."""
    try:
        arr = np.asarray(adapter.to_numpy(value))
    except Exception as exc:
        return wire.Unreadable(type(exc).__name__, str(exc))
    if arr.dtype == object or wire._dtype_name(arr.dtype) is None:
        return wire.Opaque(type(value).__name__)
    return arr


def _gradients(kind: kinds.Kind, returned: Any, adapter: ModuleType, named: bool) -> Any:
    if kind.mapping or named:
        if not isinstance(returned, Mapping):
            return wire.Opaque(type(returned).__name__)
        return {str(key): _readable(value, adapter) for key, value in returned.items()}
    return _readable(returned, adapter)


def _call(request: Mapping[str, Any], target: _Target) -> dict[str, Any]:
    kind, dtype = kinds.get(request["kind"]), _dtype(request["dtype"])
    outcome = runner.run(target.fn, kind, request["inputs"], request["layout"], target.adapter, dtype,
                         grad_output=request.get("grad_output"))  # fmt: skip
    if outcome.error:
        result = None
    elif isinstance(outcome.result, tuple) and len(outcome.result) == 2:
        loss, grads = outcome.result
        result = (_readable(loss, target.adapter), _gradients(kind, grads, target.adapter, outcome.by_autodiff))
    else:
        result = wire.Opaque(type(outcome.result).__name__)
    second = None if outcome.second_loss is None else _readable(outcome.second_loss, target.adapter)
    return {
        "result": result,
        "by_autodiff": outcome.by_autodiff,
        "error": outcome.error,
        "traceback": outcome.traceback,
        "printed": outcome.printed[:10000],
        "warned": outcome.warned,
        "mutated": outcome.mutated,
        "second_loss": second,
        "second_loss_is": outcome.second_loss_is,
    }


def main(argv: list[str]) -> int:
    """Serve requests on the pipes ``argv`` names until the checker says goodbye or closes them."""
    requests, replies = int(argv[0]), int(argv[1])
    target = _Target()
    while True:
        try:
            request = wire.receive(requests)
        except (wire.PipeClosedError, wire.WireError):
            os._exit(0)
        if request.get("op") == "load":
            reply = _load(request, target)
        elif request.get("op") == "call" and target.fn is not None:
            reply = _call(request, target)
        else:
            os._exit(0)  # goodbye: at once, past any thread or atexit hook the target left
        sys.stdout.flush()
        wire.send(replies, reply)
