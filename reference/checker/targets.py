"""Loading a target, ``path/to/file.py:function`` or ``package.module:function``, without letting it end the check.

Importing runs the user's module: an exception, a ``sys.exit`` or any other
``BaseException`` (but ``KeyboardInterrupt``) there is a ``CheckError``, and a
missing optional framework says how to install it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from reference.checker.errors import CheckError
from reference.checker.frameworks import INSTALL_HINT
from reference.checker.runner import describe


def _imported(where: str, run: Callable[[], ModuleType]) -> ModuleType:
    try:
        return run()
    except KeyboardInterrupt:
        raise
    except ImportError as exc:
        if exc.name in INSTALL_HINT:
            raise CheckError(f"importing {where} failed: it imports {exc.name}, but {INSTALL_HINT[exc.name]}") from None
        raise CheckError(f"importing {where} failed: {type(exc).__name__}: {exc}") from None
    except BaseException as exc:  # SystemExit at import must not end the check with status 0
        raise CheckError(f"importing {where} failed: {describe(exc).removeprefix('the function ')}") from None


def _from_file(where: str) -> ModuleType:
    path = Path(where)
    if not path.is_file():
        raise CheckError(f"no such file: {where}")
    sys.path.insert(0, str(path.resolve().parent))  # so that the file's own imports work
    module_spec = importlib.util.spec_from_file_location(f"softmax_grad_target_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # dataclasses and pickling look modules up by name
    module_spec.loader.exec_module(module)
    return module


def load_target(spec: str) -> Callable:
    """Load ``path/to/file.py:function`` or ``package.module:function`` (``function`` may be dotted)."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise CheckError(f"TARGET must be path/to/file.py:function or package.module:function, got {spec!r}")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _imported(where, lambda: _from_file(where))
    else:
        module = _imported(where, lambda: importlib.import_module(where))
    target: Any = module
    for part in name.split("."):
        if not hasattr(target, part):
            raise CheckError(f"{where} has no {name!r}")
        target = getattr(target, part)
    if not callable(target):
        raise CheckError(f"{spec} is a {type(target).__name__}, not a function")
    return target
