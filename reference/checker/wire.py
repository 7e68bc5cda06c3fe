"""The messages between the checker and the child process that runs the target: JSON and raw array bytes.

A message is an 8-byte length, then a JSON header, then the bytes of its
arrays. The checker never unpickles what the child sends: a child that the
target has taken over can make its reply wrong, and the verdict says so, but
it cannot make the checker run code. Every reply is read against a deadline
(``None``: none), so a child that stops talking is a hung child, not a hung
checker.

Values: None, booleans, numbers (NaN and infinities too), strings, lists,
tuples, mappings with string keys, NumPy arrays of numbers or text, and two
stand-ins for what the target returned but the child could not turn into
numbers: ``Unreadable`` (converting it raised) and ``Opaque`` (an object of
some other type).

>>> import numpy as np
>>> back = decode(encode({"X": np.arange(3.0), "y": (1, None), "reg": float("inf")}))
>>> back["X"].tolist(), back["y"], back["reg"]
([0.0, 1.0, 2.0], (1, None), inf)
>>> decode(b"not a message")
Traceback (most recent call last):
    ...
reference.checker.wire.WireError: a malformed message: its header is not JSON
"""

from __future__ import annotations

import json
import math
import os
import select
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

MAX_MESSAGE_BYTES = 1 << 31  # far above any case of the battery; a child claiming more is lying
_ARRAY_KINDS = "biufcUS"
_EXTRA_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2")  # ml_dtypes, which JAX installs


class WireError(Exception):
    """A message the checker cannot read: the child sent what the protocol does not allow."""


class PipeClosedError(Exception):
    """The other end closed the pipe (the child died, or the checker is done)."""


class DeadlinePassedError(Exception):
    """No complete message came before the deadline."""


class Unreadable:
    """A value the child could not convert to an array: converting it raised ``error`` (its type's name)."""

    def __init__(self, error: str, message: str) -> None:
        self.error, self.message = error, message

    def exception(self) -> Exception:
        """An exception of a class with the original's name, so the verdict's sentence reads as before."""
        return type(self.error, (Exception,), {})(self.message)


class Opaque:
    """What the child sends for an object that is not numbers: the name of its type."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name


def opaque(type_name: str) -> object:
    """An object whose type has the name of what the target returned (the verdict names that type)."""
    return type(type_name, (), {})()


# ----------------------------------------------------------------- encoding
def _dtype_name(dtype: np.dtype) -> str | None:
    if dtype.name in _EXTRA_DTYPES:
        return dtype.name
    return dtype.str if dtype.kind in _ARRAY_KINDS else None


def _node(value: Any, arrays: list[np.ndarray]) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic) and _dtype_name(value.dtype) is not None:
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        if _dtype_name(value.dtype) is None:
            raise TypeError(f"arrays of dtype {value.dtype} cannot be sent")
        arrays.append(value if value.flags.c_contiguous else value.copy(order="C"))  # 0-d stays 0-d
        return {"array": len(arrays) - 1}
    if isinstance(value, Unreadable):
        return {"unreadable": [value.error, value.message]}
    if isinstance(value, Opaque):
        return {"opaque": value.type_name}
    if isinstance(value, tuple):
        return {"tuple": [_node(item, arrays) for item in value]}
    if isinstance(value, list):
        return {"list": [_node(item, arrays) for item in value]}
    if isinstance(value, Mapping):
        return {"dict": {str(key): _node(item, arrays) for key, item in value.items()}}
    return {"opaque": type(value).__name__}


def encode(message: Any) -> bytes:
    """``message`` as bytes: the JSON header (its arrays' dtypes, shapes and places), then the arrays."""
    arrays: list[np.ndarray] = []
    tree = _node(message, arrays)
    table, offset = [], 0
    for arr in arrays:
        table.append({"dtype": _dtype_name(arr.dtype), "shape": list(arr.shape), "offset": offset})
        offset += arr.nbytes
    header = json.dumps({"tree": tree, "arrays": table}).encode()
    return len(header).to_bytes(8, "big") + header + b"".join(arr.tobytes() for arr in arrays)


# ----------------------------------------------------------------- decoding, strictly
def _dtype(name: Any) -> np.dtype:
    if not isinstance(name, str):
        raise WireError(f"a malformed message: dtype {name!r}")
    if name in _EXTRA_DTYPES:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
    try:
        dtype = np.dtype(name)
    except TypeError:
        raise WireError(f"a malformed message: dtype {name!r}") from None
    if dtype.kind not in _ARRAY_KINDS or dtype.str != name:
        raise WireError(f"a malformed message: dtype {name!r} is not allowed")
    return dtype


def _array(entry: Any, body: memoryview) -> np.ndarray:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "offset"}:
        raise WireError("a malformed message: an array entry")
    dtype, shape, offset = _dtype(entry["dtype"]), entry["shape"], entry["offset"]
    if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape) and type(offset) is int):
        raise WireError("a malformed message: an array's shape or place")
    nbytes = math.prod(shape) * dtype.itemsize
    if offset < 0 or offset + nbytes > len(body):
        raise WireError("a malformed message: an array runs past the message")
    return np.frombuffer(body[offset : offset + nbytes], dtype=dtype).reshape(shape).copy()


def _value(node: Any, arrays: list[np.ndarray], depth: int = 0) -> Any:
    if depth > 32:
        raise WireError("a malformed message: nested too deeply")
    if node is None or isinstance(node, bool | int | float | str):
        return node
    if not (isinstance(node, dict) and len(node) == 1):
        raise WireError("a malformed message: a node")
    (tag, body), = node.items()
    if tag == "array" and type(body) is int and 0 <= body < len(arrays):
        return arrays[body]
    if tag in ("list", "tuple") and isinstance(body, list):
        items = [_value(item, arrays, depth + 1) for item in body]
        return tuple(items) if tag == "tuple" else items
    if tag == "dict" and isinstance(body, dict):
        return {key: _value(item, arrays, depth + 1) for key, item in body.items()}
    if tag == "unreadable" and isinstance(body, list) and len(body) == 2 and all(isinstance(s, str) for s in body):
        return Unreadable(body[0][:100] if body[0].isidentifier() else "Exception", body[1])
    if tag == "opaque" and isinstance(body, str):
        return opaque(body[:100] if body.isidentifier() else "object")
    raise WireError(f"a malformed message: a node tagged {tag!r}")


def decode(data: bytes) -> Any:
    """The message in ``data``; ``WireError`` for anything the protocol does not allow."""
    view = memoryview(data)
    if len(view) < 8:
        raise WireError("a malformed message: too short")
    size = int.from_bytes(view[:8], "big")
    try:
        header = json.loads(bytes(view[8 : 8 + size]))
    except (ValueError, UnicodeDecodeError):
        raise WireError("a malformed message: its header is not JSON") from None
    if not (isinstance(header, dict) and set(header) == {"tree", "arrays"} and isinstance(header["arrays"], list)):
        raise WireError("a malformed message: its header")
    body = view[8 + size :]
    arrays = [_array(entry, body) for entry in header["arrays"]]
    return _value(header["tree"], arrays)


# ----------------------------------------------------------------- the pipe
def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    # Past the deadline, select still looks once: a reply that came in time but is read late is no hang.
    return min(max(deadline - time.monotonic(), 0.0), 3600.0)  # select takes no more; longer is several rounds


def _passed(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlinePassedError


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        ready, _, _ = select.select([fd], [], [], _remaining(deadline))
        if not ready:
            _passed(deadline)
            continue
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise PipeClosedError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def send(fd: int, message: Any, deadline: float | None = None) -> None:
    """Write ``message`` to ``fd`` (framed by its length), before ``deadline`` (``time.monotonic()``)."""
    data = encode(message)
    frame = memoryview(len(data).to_bytes(8, "big") + data)
    while frame:
        _, ready, _ = select.select([], [fd], [], _remaining(deadline))
        if not ready:
            _passed(deadline)
            continue
        try:
            frame = frame[os.write(fd, frame[: 1 << 16]) :]
        except BlockingIOError:  # the checker's end is non-blocking: a full pipe waits in select, not in write
            continue
        except (BrokenPipeError, ConnectionResetError):
            raise PipeClosedError from None


def receive(fd: int, deadline: float | None = None) -> Any:
    """The next message on ``fd``; ``PipeClosedError``, ``DeadlinePassedError`` or ``WireError`` if none can be read."""
    size = int.from_bytes(_read_exactly(fd, 8, deadline), "big")
    if size > MAX_MESSAGE_BYTES:
        raise WireError(f"a malformed message: it claims {size} bytes")
    return decode(_read_exactly(fd, size, deadline))
