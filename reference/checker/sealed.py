"""The target runs apart: one child process a check, started once, that the checker controls and ends.

The checker sends each case's inputs to the child and reads back NumPy
arrays, the function's traceback, prints and warnings; the oracle and the
verdict stay here. Nothing the target does in the child (``os._exit``, an
``atexit`` hook, a thread left running, a patched module, a signal handler)
reaches the checker's verdict or its exit status:

* a child that dies during a call (an exit, a signal, a crash) fails that case
  with a sentence, and the cases after it are not run;
* a child that does not answer within the time limit is hung: its whole
  process group is killed (``inf``: no limit);
* a child whose reply breaks the protocol is lying: it fails the same way.

The child lives in its own session (its own process group), so a process
the target starts dies with it. POSIX only (``select`` on pipes, ``killpg``).

A fresh interpreter that imports torch or JAX takes seconds. For a function
handed over from Python whose framework is torch or JAX, the child is forked
instead from a template process that imported that framework once (and
nothing of the target's): still a fresh process for each check, started in
milliseconds. The command line, one check a process, spawns its child.
"""

from __future__ import annotations

import atexit
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from reference.checker import runner, wire
from reference.checker.battery import Case, cast
from reference.checker.errors import CheckError
from reference.checker.kinds import Kind

# Runs in the child: makes ``reference`` and ``reference.checker`` bare packages so that importing the
# child's modules does not run their __init__ (which imports the JAX oracle), then serves requests.
_BOOTSTRAP = """
import sys, types
root = sys.argv[1]
sys.path.insert(0, root)
for name in ("reference", "reference.checker"):
    package = types.ModuleType(name)
    package.__path__ = [root + "/" + name.replace(".", "/")]
    sys.modules[name] = package
from reference.checker.child import main
for name in ("reference", "reference.checker"):
    del sys.modules[name]  # a target that imports reference gets the real package
main(sys.argv[2:])
"""
# The template: the same bare packages, the child's modules and one framework imported; then, for each
# pair of pipe ends it receives, a fork that serves them in a session of its own.
_TEMPLATE = """
import os, signal, socket, sys, types
root, control, framework = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, root)
for name in ("reference", "reference.checker"):
    package = types.ModuleType(name)
    package.__path__ = [root + "/" + name.replace(".", "/")]
    sys.modules[name] = package
from reference.checker.child import main
from reference.checker import frameworks
frameworks.adapter(framework)
for name in ("reference", "reference.checker"):
    del sys.modules[name]
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the forks are reaped by the system
channel = socket.socket(fileno=control)
while True:
    try:
        _, fds, _, _ = socket.recv_fds(channel, 16, 2)
    except OSError:
        os._exit(0)
    if len(fds) != 2:
        os._exit(0)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        channel.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            main([str(fds[0]), str(fds[1])])
        finally:
            os._exit(0)
    for fd in fds:
        os.close(fd)
    channel.sendall(pid.to_bytes(8, "big"))
"""
_ROOT = str(Path(__file__).resolve().parent.parent.parent)
_TEMPLATES: dict[str, _Template] = {}


class _Template:
    """A process with one framework imported, that forks a fresh child for each check (see the module's note)."""

    def __init__(self, framework: str) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _TEMPLATE, _ROOT, str(theirs.fileno()), framework],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._channel = ours
        self._channel.settimeout(120.0)  # the first fork waits for the framework's import

    def fork(self, ends: tuple[int, int]) -> int:
        """The pid of a new child serving ``ends`` (requests in, replies out)."""
        socket.send_fds(self._channel, [b"fork"], list(ends))
        data = b""
        while len(data) < 8:
            chunk = self._channel.recv(8 - len(data))
            if not chunk:
                raise OSError("the template process ended")
            data += chunk
        return int.from_bytes(data, "big")

    def close(self) -> None:
        self._channel.close()
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._process.wait()


def _template(framework: str) -> _Template:
    if framework not in _TEMPLATES:
        if not _TEMPLATES:
            atexit.register(lambda: [t.close() for t in _TEMPLATES.values()])
        _TEMPLATES[framework] = _Template(framework)
    return _TEMPLATES[framework]
_GRACE = 5.0  # seconds a child that was told goodbye gets before it is killed


def _deadline(timeout: float) -> float | None:
    return None if math.isinf(timeout) else time.monotonic() + timeout


def _received(name: str) -> SimpleNamespace:
    """What ``verdict.judge`` needs of an adapter, for results that came back as NumPy (or as stand-ins)."""

    def to_numpy(value: Any) -> Any:
        if isinstance(value, wire.Unreadable):
            raise value.exception()
        return np.asarray(value)

    return SimpleNamespace(NAME=name, to_numpy=to_numpy)


class Child:
    """The child process of one check: ``load`` the target once, then ``call`` it on each case; ``close`` ends it."""

    def __init__(self, template: _Template | None = None, env: dict[str, str] | None = None) -> None:
        requests_read, self._requests = os.pipe()
        self._replies, replies_write = os.pipe()
        self._log = tempfile.TemporaryFile()
        self._process: subprocess.Popen | None = None  # None: forked by a template, which reaps it
        try:
            if template is not None:
                self._pid = template.fork((requests_read, replies_write))
            else:
                self._process = subprocess.Popen(
                    [sys.executable, "-c", _BOOTSTRAP, _ROOT, str(requests_read), str(replies_write)],
                    pass_fds=(requests_read, replies_write),
                    stdin=subprocess.DEVNULL,
                    stdout=self._log,
                    stderr=self._log,
                    start_new_session=True,  # its own process group: killpg ends whatever the target started
                    env=env,  # a mesh check's: its device count (reference.checker.mesh)
                )
                self._pid = self._process.pid
        except BaseException:
            os.close(self._requests)
            os.close(self._replies)
            self._log.close()
            raise
        finally:
            os.close(requests_read)
            os.close(replies_write)
        os.set_blocking(self._requests, False)
        self.gone: str | None = None  # why the child can no longer run a case
        self._loading: tuple[dict[str, Any], float | None, float] = ({}, None, math.inf)
        self.adapter: SimpleNamespace | None = None

    # ------------------------------------------------------------- lifecycle
    def _kill(self) -> None:
        try:
            os.killpg(self._pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _how_it_ended(self) -> str:
        if self._process is None:
            return "ended"  # forked by the template, which alone could read its exit status
        try:
            status = self._process.wait(timeout=_GRACE)
        except subprocess.TimeoutExpired:
            self._kill()
            status = self._process.wait()
        if status < 0:
            what = f"was killed by {signal.Signals(-status).name}"
        else:
            what = f"exited with status {status}"
        self._log.seek(0)
        last = [line for line in self._log.read().decode(errors="replace").splitlines() if line.strip()]
        return what + (f" (its last words: {last[-1][:200]!r})" if last else "")

    def close(self) -> None:
        """Say goodbye, then kill the child's process group whatever it does, and reap it."""
        if self._process is None or self._process.poll() is None:
            try:
                wire.send(self._requests, {"op": "bye"}, time.monotonic() + 1.0)
                if self._process is not None:
                    self._process.wait(timeout=1.0)
            except (wire.PipeClosedError, wire.DeadlinePassedError, subprocess.TimeoutExpired):
                pass
        self._kill()
        if self._process is not None:
            self._process.wait()
        os.close(self._requests)
        os.close(self._replies)
        self._log.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exchange(self, request: dict[str, Any], timeout: float) -> Any:
        deadline = _deadline(timeout)
        wire.send(self._requests, request, deadline)
        return wire.receive(self._replies, deadline)

    # ------------------------------------------------------------- the target
    def start_loading(self, target: dict[str, Any], framework: str, kinds: list[str], timeout: float,
                      mesh: tuple[int, int] | None = None) -> None:  # fmt: skip
        """Ask the child to load the target; it does while the checker computes the oracle (see ``loaded``)."""
        request = {"op": "load", "target": target, "framework": framework, "kinds": kinds, "sys_path": sys.path,
                   "mesh": mesh}  # fmt: skip
        timeout = max(timeout, runner.DEFAULT_TIMEOUT)  # the limit is per case; an import may take its time
        self._loading = (target, _deadline(timeout), timeout)
        wire.send(self._requests, request, self._loading[1])

    def loaded(self) -> dict[str, Any]:
        """The load's outcome: ``{"framework": ..., "problems": {kind: why it cannot be called as that kind}}``.

        Raises ``CheckError`` when the target cannot be loaded, or its loading kills or hangs the child.
        """
        target, deadline, timeout = self._loading
        where = target.get("spec") or target.get("module") or target.get("file") or "the function"
        try:
            reply = wire.receive(self._replies, deadline)
        except wire.PipeClosedError:
            raise CheckError(f"loading {where} ended the process that loads it: it {self._how_it_ended()}") from None
        except wire.DeadlinePassedError:
            self._kill()
            raise CheckError(f"loading {where} did not finish within {timeout:g} s (--timeout)") from None
        except wire.WireError as exc:
            raise CheckError(f"loading {where}: the child process sent {exc}") from None
        if not isinstance(reply, dict) or not ("error" in reply or "framework" in reply):
            raise CheckError(f"loading {where}: the child process sent a malformed reply")
        if "error" in reply:
            raise CheckError(str(reply["error"]))
        self.adapter = _received(str(reply["framework"]))
        return reply

    def call(self, kind: Kind, case: Case, dtype: np.dtype, timeout: float) -> runner.Call:
        """Run the target on ``case`` in the child; a dead, hung or lying child is a failed call (and ``gone``)."""
        request = {"op": "call", "kind": kind.name, "dtype": np.dtype(dtype).name, "layout": case.layout,
                   "inputs": cast(case.inputs, dtype), "grad_output": cast(case.grad_output, dtype)}  # fmt: skip
        try:
            reply = self._exchange(request, timeout)
        except wire.PipeClosedError:
            ended = self._how_it_ended()
            self.gone = f"the function ended its process on {case.name!r}"
            return runner.Call(
                error=f"the process running the function {ended} during the call: os._exit, a signal or a crash "
                "in native code; a check must never end that way"
            )
        except wire.DeadlinePassedError:
            self._kill()
            self.gone = f"the function hung on {case.name!r}"
            return runner.Call(timed_out=True, error=runner.hung(timeout))
        except wire.WireError as exc:
            self._kill()
            self.gone = f"the process running the function broke the checker's protocol on {case.name!r}"
            return runner.Call(error=f"the process running the function sent {exc}: the function wrote to the "
                                     "checker's pipe, or replaced the code that answers it")  # fmt: skip
        return _as_call(reply)


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _as_call(reply: Any) -> runner.Call:
    """The ``Call`` a well-formed reply describes; a reply of the wrong shape is a lying child's."""
    fields = {"result", "by_autodiff", "error", "traceback", "printed", "warned", "mutated", "second_loss",
              "second_loss_is"}  # fmt: skip
    texts = ("error", "traceback")
    if (
        not isinstance(reply, dict)
        or set(reply) != fields
        or not all(reply[key] is None or isinstance(reply[key], str) for key in texts)
        or not isinstance(reply["printed"], str)
        or not isinstance(reply["second_loss_is"], str)
        or not all(_texts(reply[key]) for key in ("warned", "mutated"))
    ):
        return runner.Call(error="the process running the function sent a malformed reply")
    return runner.Call(
        result=reply["result"],
        by_autodiff=bool(reply["by_autodiff"]),
        error=reply["error"],
        traceback=reply["traceback"],
        printed=reply["printed"],
        warned=list(reply["warned"]),
        mutated=list(reply["mutated"]),
        second_loss=reply["second_loss"],
        second_loss_is=reply["second_loss_is"],
    )


def open_child(
    fn: Any, framework: str, kinds: list[str], timeout: float, mesh: tuple[int, int] | None = None
) -> Child | None:
    """A child loading ``fn`` (a function, or a ``file.py:name`` spec); ``child.loaded()`` waits for it.

    With ``mesh``, the child is always spawned, with its device count in its
    environment (``reference.checker.mesh``): a template imported JAX already.

    None when ``fn`` is a function no other process can find (a lambda, a
    closure, a ``__main__`` function): it then runs in this process.
    """
    from reference.checker.targets import locate, parse

    if isinstance(fn, str):
        parse(fn)  # a malformed spec or a missing file fails here, before any process starts
        how: dict[str, Any] | None = {"spec": fn}
    else:
        how = locate(fn)
    if how is None:
        return None
    template = None
    if mesh is not None:
        from reference.checker.mesh import environment

        child = Child(env=environment(mesh))
        try:
            child.start_loading(how, framework, kinds, timeout, mesh)
        except BaseException:
            child.close()
            raise
        return child
    if not isinstance(fn, str) and framework in ("torch", "jax"):  # this process imported it: so may a template
        try:
            template = _template(framework)
        except OSError:
            template = None
    try:
        child = Child(template)
    except OSError:
        if template is not None:
            _TEMPLATES.pop(framework).close()
        child = Child()  # the template failed: spawn
    try:
        child.start_loading(how, framework, kinds, timeout)
    except BaseException:
        child.close()
        raise
    return child
