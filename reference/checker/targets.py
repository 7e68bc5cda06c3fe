"""Loading a target, ``path/to/file.py:function`` or ``package.module:function``, without letting it end the check.

Importing runs the user's module: an exception, a ``sys.exit`` or any other
``BaseException`` (but ``KeyboardInterrupt``) there is a ``CheckError``, and a
missing optional framework says how to install it. The checker loads the
target in its child process (``reference.checker.sealed``); ``locate`` says how
that process can find a function the caller already holds, ``resolve`` finds it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from reference.checker.errors import CheckError
from reference.checker.frameworks import INSTALL_HINT
from reference.checker.kinds import Kind
from reference.checker.runner import describe

_FILE_MODULE = "softmax_grad_target_"  # the name prefix of modules loaded from a file by _from_file


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
    module_spec = importlib.util.spec_from_file_location(f"{_FILE_MODULE}{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # dataclasses and pickling look modules up by name
    module_spec.loader.exec_module(module)
    return module


def parse(spec: str) -> tuple[str, str, bool]:
    """``(where, name, is_file)`` of ``path/to/file.py:function`` or ``package.module:function``, importing nothing.

    >>> parse("numpy:exp")
    ('numpy', 'exp', False)
    """
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise CheckError(f"TARGET must be path/to/file.py:function or package.module:function, got {spec!r}")
    is_file = where.endswith(".py") or "/" in where or "\\" in where
    if is_file and not Path(where).is_file():
        raise CheckError(f"no such file: {where}")
    return where, name, is_file


def _attribute(module: ModuleType, where: str, name: str) -> Any:
    target: Any = module
    for part in name.split("."):
        if not hasattr(target, part):
            raise CheckError(f"{where} has no {name!r}")
        target = getattr(target, part)
    return target


def load_target(spec: str) -> Callable:
    """Load ``path/to/file.py:function`` or ``package.module:function`` (``function`` may be dotted)."""
    where, name, is_file = parse(spec)
    if is_file:
        module = _imported(where, lambda: _from_file(where))
    else:
        module = _imported(where, lambda: importlib.import_module(where))
    target = _attribute(module, where, name)
    if not callable(target):
        raise CheckError(f"{spec} is a {type(target).__name__}, not a function")
    return target


# ----------------------------------------------------------------- finding a function in another process
def _where(obj: Any) -> dict[str, str] | None:
    """The module (or file) and qualified name under which ``obj`` itself can be found again; None if none."""
    module_name, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not (isinstance(module_name, str) and isinstance(qualname, str)) or "<" in qualname:
        return None  # a lambda or a closure
    module = sys.modules.get(module_name)
    if module is None or module_name in ("__main__", "__mp_main__"):
        return None  # a script's functions: another process would rerun the script to find them
    try:
        found = _attribute(module, module_name, qualname)
    except CheckError:
        return None
    if found is not obj:
        return None
    if module_name.startswith(_FILE_MODULE) and getattr(module, "__file__", None):
        return {"file": module.__file__, "qualname": qualname}
    return {"module": module_name, "qualname": qualname}


def locate(fn: Callable) -> dict[str, Any] | None:
    """How a fresh process can find ``fn``: its module and name, or its pickle; None when it cannot.

    A lambda, a closure, a doctest's function or one of a script's ``__main__``
    cannot be found from outside; the checker then runs it in its own process.

    >>> locate(load_target)
    {'module': 'reference.checker.targets', 'qualname': 'load_target'}
    >>> locate(lambda S, y: None) is None
    True
    """
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and isinstance(getattr(fn, "__name__", None), str):  # Function.apply
        where = _where(owner)
        if where is not None and getattr(owner, fn.__name__, None) == fn:
            return {**where, "attribute": fn.__name__}
    where = _where(fn)
    if where is not None:
        return where
    try:
        data = pickle.dumps(fn)
    except Exception:
        return None
    return None if b"__main__" in data else {"pickle": data.hex()}


def resolve(how: dict[str, Any]) -> Callable:
    """The function ``locate`` (or a ``spec``) describes, loaded here."""
    if "spec" in how:
        return load_target(how["spec"])
    if "pickle" in how:
        return pickle.loads(bytes.fromhex(how["pickle"]))
    if "file" in how:
        module = _imported(how["file"], lambda: _from_file(how["file"]))
        where = how["file"]
    else:
        module = _imported(how["module"], lambda: importlib.import_module(how["module"]))
        where = how["module"]
    target = _attribute(module, where, how["qualname"])
    return getattr(target, how["attribute"]) if how.get("attribute") else target


def signature_problem(fn: Callable, kind: Kind) -> str | None:
    """Why ``fn`` cannot be called as ``kind`` says, or None (also when it has no signature to read)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # builtins and some C functions have no signature to check
    try:
        signature.bind(*(None for _ in kind.arguments))
    except TypeError as exc:
        name = getattr(fn, "__name__", repr(fn))
        return f"{name}{signature} cannot be called as {kind.signature}: {exc}"
    return None

