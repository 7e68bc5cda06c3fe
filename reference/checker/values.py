"""Both values of a loss returned alone are judged: the plain call's, and the differentiated call's.

A JAX ``custom_vjp`` computes its value twice, in the function (a plain call)
and in its forward rule (what ``jax.vjp`` returns); an
``autograd.Function`` may compute another value when its inputs require
gradients. Training uses the second; a check that judged only the first would
pass a forward rule that returns N times the loss. Each value goes through the
same verdict (``verdict.judge``), so it is held to the same comparison.
"""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType
from typing import Any

from reference.checker.battery import Case
from reference.checker.runner import Call
from reference.checker.verdict import FAIL, CaseResult, Context, judge
from softmax_grad.compare import worst


def judge_call(ctx: Context, case: Case, call: Call, framework: ModuleType | Any) -> CaseResult:
    """``judge`` the call, then again with the differentiated call's value in the loss's place; a fault there fails."""
    result = judge(ctx, case, call, framework)
    if call.second_loss is None or call.error or not isinstance(call.result, tuple):
        return result
    quiet = replace(call, result=(call.second_loss, call.result[1]), printed="", warned=[], mutated=[])
    second = judge(ctx, case, quiet, framework)
    if second.status != FAIL:
        return result
    why = [m for m in second.messages if m.startswith("loss")] or second.messages[:1]
    if all(line in result.messages for line in why):
        return result  # the same fault, already said
    result.status = FAIL
    result.messages += [f"{call.second_loss_is} differs from the loss: {why[0]}", *why[1:]]
    result.max_abs_error = worst([result.max_abs_error, second.max_abs_error])
    result.max_rel_error = worst([result.max_rel_error, second.max_rel_error])
    return result
