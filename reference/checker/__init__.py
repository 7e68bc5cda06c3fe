"""Check a user's own softmax-loss implementation against the JAX reference.

``check(fn, kind=...)`` (kind ``scores``, ``linear``, ``two_layer`` or
``linear_ce``) runs ``fn`` on a battery of cases in two tiers
(correctness: moderate inputs; robustness: logits 1000 apart, every row
ignored), compares its loss and every gradient with the autodiff oracle at the
tolerance of the cases' dtype, names the slip when a result matches one, and
returns a ``Report`` that is truthy when it passed. ``softmax-grad check`` is
the same from the shell. A NumPy, PyTorch or JAX function may return the loss
and its gradients, or (torch, JAX) the loss alone, which the framework's own
autodiff differentiates: that is what runs a custom backward.

The function runs in a child process the checker starts once a check and
controls, so nothing it does (an exit, an ``atexit`` hook, a thread left
running, a patched module) can change a verdict or an exit status.

The package, one concern a module: ``kinds`` (signatures), ``battery`` (the
cases), ``oracle`` (JAX autodiff with every loss option), ``frameworks``
(one adapter per framework), ``runner`` (the fenced call), ``sealed`` (the
child process, from the checker's side), ``child`` (from its own), ``wire``
(their messages), ``verdict`` (tiers and diagnoses), ``values`` (both values
of a loss returned alone), ``hints`` (non-finite results), ``report``,
``targets`` (loading ``file.py:function``, finding a function from another
process), ``repro`` (save and rerun a failing case), ``checking`` (``check``
itself, and its ``Settings``).

The penalty is ``R = reg_scale * reg * sum W^2``: ``reg_scale=0.5`` is the
derivation's convention (eq. 3), ``1.0`` the one many course versions use.

>>> import numpy as np
>>> def my_loss(scores, y):  # forgets the 1/N of the gradient
...     shifted = scores - scores.max(axis=1, keepdims=True)
...     p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
...     rows = np.arange(len(y))
...     loss = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[rows, y])
...     p[rows, y] -= 1
...     return loss, p
>>> report = check(my_loss, kind="scores")
>>> bool(report), report.first_failure.name
(False, 'C=2')
>>> report.first_failure.messages[-1]
"dscores matches reduction='sum': N = 6 times the mean's; divide the data term by N"
"""

from __future__ import annotations

from reference.checker.checking import check
from reference.checker.errors import CheckError
from reference.checker.kinds import KINDS
from reference.checker.report import Report
from reference.checker.repro import rerun
from reference.checker.targets import load_target
from reference.checker.verdict import CaseResult

__all__ = ["KINDS", "CaseResult", "CheckError", "Report", "check", "load_target", "rerun"]
