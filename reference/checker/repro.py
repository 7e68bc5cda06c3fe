"""Save the first failing case, and rerun it: ``python -m reference.checker FILE.npz TARGET``.

The rerun prints the verdict (and the function's traceback if it raises) and
exits 1 while the case still fails, 0 once it passes, 2 if the file or the
target cannot be loaded; the report's rerun line names the interpreter the
check ran under (``sys.executable``), so it finds the same packages.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reference.checker.battery import Case

_META = "softmax_grad_meta"


def save(path: Path, case: Case, settings: dict[str, Any]) -> None:
    """Write ``case`` and the check's settings to ``path`` (its folder is created)."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in case.inputs.items():
        if isinstance(value, dict):
            arrays |= {f"params_{k}": v for k, v in value.items()}
        else:
            arrays[name] = np.asarray(value)
    if case.grad_output is not None:  # the case's cotangent (eq. 54): the rerun judges the same VJP
        arrays["grad_output"] = np.asarray(case.grad_output)
    options = dict(settings["options"])
    if options["weight"] is not None:
        arrays["option_weight"] = np.asarray(options["weight"])
    options["weight"] = None
    meta = {**settings, "options": options, "case": case.name, "tier": case.tier, "layout": case.layout,
            "relu_zeros": case.relu_zeros, "notes": list(case.notes)}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        np.savez(file, **{_META: np.array(json.dumps(meta))}, **arrays)


def load(path: str | Path) -> tuple[Case, dict[str, Any]]:
    """The case and the settings saved by ``save``."""
    with np.load(path) as data:
        meta = json.loads(str(data[_META]))
        arrays = {k: data[k] for k in data.files if k != _META}
    if "option_weight" in arrays:
        meta["options"]["weight"] = arrays.pop("option_weight")
    grad_output = arrays.pop("grad_output", None)
    if grad_output is not None and grad_output.ndim == 0:
        grad_output = float(grad_output)
    inputs: dict[str, Any] = {k: v for k, v in arrays.items() if not k.startswith("params_")}
    params = {k.removeprefix("params_"): v for k, v in arrays.items() if k.startswith("params_")}
    if params:
        inputs["params"] = params
    if "reg" in inputs:
        inputs["reg"] = float(inputs["reg"])
    case = Case(meta["case"], meta["tier"], inputs, meta["layout"], meta["relu_zeros"], tuple(meta["notes"]),
                grad_output)  # fmt: skip
    return case, meta


def rerun(path: str | Path, fn: Callable | str):
    """Rerun the case saved at ``path`` on ``fn`` (a function or ``file.py:name``); print and return the verdict.

    The function runs as in ``check``: in a child process when one can load it.
    The result is a ``CaseResult``: ``result.passed`` is True once the case passes.
    """
    from reference.checker import checking, frameworks, kinds, runner, sealed
    from reference.checker.values import judge_call

    case, meta = load(path)
    options = meta["options"]
    settings = checking.Settings.of(
        meta["kind"], framework=meta["framework"], dtype=meta["dtype"], strict=meta["strict"],
        reduction=meta["reduction"], reg_scale=meta["reg_scale"], timeout=meta["timeout"], **options,
    )  # fmt: skip
    spec = kinds.get(meta["kind"])
    expected = checking._Oracle(spec, case, settings, checking.padding_sizes(spec, [case]))
    child = sealed.open_child(fn, settings.framework, [spec.name], settings.timeout)
    try:
        if child is not None:
            takes = bool(child.loaded().get("takes_grad_output"))
            adapter = child.adapter
            call = child.call(spec, case, settings.np_dtype, settings.timeout)
        else:
            adapter = frameworks.adapter(settings.framework)
            takes = runner.takes_grad_output(fn)
            call = runner.call(fn, spec, case, adapter, settings.np_dtype, settings.timeout)
    finally:
        if child is not None:
            child.close()
    if not (takes or call.by_autodiff):  # as check judges it: gradients computed without the cotangent, at 1
        expected = expected.at_unit_cotangent()
    result = judge_call(checking.context(spec, case, settings, expected, adapter), case, call, adapter)
    failed = not result.passed or (meta["strict"] and result.status == "warn")
    verdict = "FAIL" if failed else result.status
    print(f"case {case.name!r} ({meta['kind']}, {meta['framework']}, {meta['dtype']}): {verdict}")
    for line in result.messages + result.warnings + result.notes:
        print(f"  {line}")
    if result.traceback:
        print(result.traceback, end="")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from reference.checker.errors import CheckError

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m reference.checker FILE.npz path/to/file.py:function", file=sys.stderr)
        return 2
    try:
        result = rerun(args[0], args[1])
    except (CheckError, OSError, ValueError, KeyError) as exc:
        print(f"softmax-grad rerun: {exc}", file=sys.stderr)
        return 2
    strict = load(args[0])[1]["strict"]
    return 0 if result.passed and not (strict and result.status == "warn") else 1
