"""Targets that try to decide their own verdict, or end, hang or confuse the process that runs them.

Importing this module does nothing hostile: each function does its harm when
called, which the checker does in its child process. (A module that is hostile
at import is ``exits_at_import.py``, kept out of pytest's collection.)
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time

import numpy as np

from tests.targets.numpy_targets import scores_mean


def _doubled(scores, y):
    loss, d = scores_mean(scores, y)
    return loss, 2 * d  # wrong: a check must say FAIL


def exits_in_the_call(scores, y):
    os._exit(0)


def exits_at_exit(scores, y):
    """Wrong numbers, and an exit hook that would end any process running it with status 0."""
    atexit.register(os._exit, 0)
    return _doubled(scores, y)


def leaves_a_thread(scores, y):
    """Right numbers; a non-daemon thread left running would keep any process that ran it from ending."""
    threading.Thread(target=threading.Event().wait, name="left running", daemon=False).start()
    return scores_mean(scores, y)


def patches_the_compare(scores, y):
    """Wrong numbers, after making every comparison the process can reach say ok."""
    import softmax_grad.compare
    from softmax_grad.compare import Comparison

    def always_ok(actual, expected, tol, *, label, **_):
        return Comparison(label, True, 0.0, 0.0, f"{label}: ok")

    softmax_grad.compare.compare = always_ok
    for name in ("reference.checker.verdict", "reference.checker.values", "softmax_grad.cases"):
        if name in sys.modules:
            sys.modules[name].compare = always_ok
    return _doubled(scores, y)


def hangs_on_two_classes(scores, y):
    if scores.shape[1] == 2:
        time.sleep(3600)
    return scores_mean(scores, y)


def crashes(scores, y):
    os.kill(os.getpid(), signal.SIGSEGV)


def lies(scores, y):
    """Writes a malformed message into the pipe the child answers on (its number is the child's last argument)."""
    os.write(int(sys.argv[-1]), (12).to_bytes(8, "big") + b"not a header")
    return scores_mean(scores, y)


def needs_the_main_thread(scores, y):
    """signal.signal works only in the main thread: right numbers where the call runs there."""
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, previous)
    return scores_mean(scores, y)


def right(scores, y):
    return scores_mean(np.asarray(scores), y)
