"""The two margins of the checker's bound verdict, measured: correct code's largest ratio, each slip's smallest.

``python -m benchmarks.margins`` runs, for every seed, kind, loss option and
dtype asked for, correct targets (PyTorch's ``F.cross_entropy`` as its users
write it, plain ``jax.value_and_grad`` of ``jax.nn.log_softmax``, and in
float32 the suite's own ``manual`` variants wrapped as targets) and the named
slips over the checker's battery, judged as ``reference.check`` judges them
(eq. 44 of docs/derivation.md: ``|error| <= MULTIPLE (bound + the framework's
own error)``). It prints, per dtype and target, the largest ``error / bound``
seen for correct code, and per slip the smallest of its checks' worst ratios:
how close the slip came to passing. docs/margins.md holds a measured run.

It runs in this process through the checker's own pieces (``battery``,
``checking._Oracle``, ``checking.context``, ``runner.run``, ``values.judge_call``),
not a child process per check: every case is padded to one size for all seeds,
so the oracle compiles once per class count and option set (a new class count
per seed only for the wide vocabulary), and a JAX target compiles each case
shape once. The targets and slips are the tests' own (``tests.targets``,
``tests.test_bounds``), so this is a development tool, beside the benchmarks.

``python -m benchmarks.margins --seeds 0 --dtypes float32 --kinds scores``
is a quick look; tests/test_margins.py runs one seed of it.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

import manual
from reference.checker import battery, checking, frameworks, kinds, runner
from reference.checker.values import judge_call
from reference.checker.verdict import FAIL, CaseResult
from softmax_grad.bounds import LOW_PRECISION, MULTIPLE
from tests import test_bounds as slips

KINDS = ("scores", "linear", "two_layer", "linear_ce")
DTYPES = ("float32", "bfloat16", "float16")
WEIGHT = (1.0, 2.0, 0.5, 1.5, 0.25)  # a class weight fixes C = 5 for every case
# Each option set: the check's keywords. Weights come with smoothing, where the classic slip (eq. 18) lives.
OPTIONS: dict[str, dict[str, Any]] = {
    "none": {},
    "weight + smoothing": {"weight": np.array(WEIGHT), "label_smoothing": 0.1},
    "ignore_index": {"ignore_index": -100},
    "label_smoothing": {"label_smoothing": 0.1},
    "z_loss": {"z_loss": 0.01},
    "softcap": {"softcap": 30.0},
    "reduction sum": {"reduction": "sum"},
}
VARIANTS = ("vectorized", "per_row", "per_element", "tuned", "compiled")


# ------------------------------------------------------------------ correct targets
def _loss_options(options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(reduction, the loss options) of an option set."""
    rest = dict(options)
    return rest.pop("reduction", "mean"), rest


def _framework_target(framework: str, kind: str, options: dict[str, Any]) -> Callable:
    """The framework's own loss of ``kind`` as its users write it (the checker's yardstick), the loss alone."""
    reduction, opts = _loss_options(options)
    return functools.partial(frameworks.adapter(framework).LOSSES[kind], reduction=reduction, **opts)


def _variant_target(name: str, kind: str, options: dict[str, Any]) -> Callable | None:
    """``manual.VARIANTS[name]`` wrapped as a target; None where the variant has no such option."""
    variant = manual.VARIANTS[name]
    reduction, opts = _loss_options(options)
    if kind == "scores":
        return lambda scores, y: variant.softmax_loss(scores, y, reduction=reduction, **opts)
    if kind == "linear_ce":
        return lambda X, W, y, bias: variant.linear_cross_entropy(X, W, y, bias=bias, reduction=reduction, **opts)
    if opts:  # linear_loss and two_layer_loss take no loss option
        return None
    if kind == "linear":
        return lambda W, X, y, reg: variant.linear_loss(W, X, y, reg=reg, reduction=reduction)
    return None if reduction != "mean" else lambda params, X, y, reg: variant.two_layer_loss(params, X, y, reg=reg)


@dataclass(frozen=True)
class Target:
    """A correct target: ``build(kind, options)`` gives the function (None: it does not apply)."""

    name: str
    framework: str
    build: Callable[[str, dict[str, Any]], Callable | None]
    dtypes: tuple[str, ...] = DTYPES


TARGETS = {
    "torch": Target("torch", "torch", functools.partial(_framework_target, "torch")),
    "jax": Target("jax", "jax", functools.partial(_framework_target, "jax")),
    **{
        f"manual.{name}": Target(f"manual.{name}", "numpy", functools.partial(_variant_target, name), ("float32",))
        for name in VARIANTS
    },
}


# ------------------------------------------------------------------ the named slips
@dataclass(frozen=True)
class Mutant:
    """A named slip: its function, the kind and option set it is checked at, and the dtypes."""

    name: str
    fn: Callable
    framework: str
    kind: str
    option: str
    dtypes: tuple[str, ...] = ("float64", "float32")
    strict: bool = False


def _slip(edit: str, **options: Any) -> Callable:
    return functools.partial(slips.option_slip, edit=edit, **options)


MUTANTS = {
    mutant.name: mutant
    for mutant in (
        Mutant("0.1% error (scores)", slips.scaled_scores, "numpy", "scores", "none"),
        Mutant("0.1% error (linear_ce)", slips.scaled_linear_ce, "numpy", "linear_ce", "none"),
        Mutant("missing 1/N", slips.without_mean, "numpy", "scores", "none"),
        Mutant("reg twice", slips.reg_twice, "numpy", "linear", "none"),
        Mutant("transposed square dW1", slips.transposed_dw1, "numpy", "two_layer", "none"),
        Mutant("smoothing without class weights",
               _slip("smoothing_unweighted", weight=np.array(WEIGHT), label_smoothing=0.1),
               "numpy", "scores", "weight + smoothing"),
        Mutant("ignored rows counted", _slip("ignored_counted", ignore_index=-100), "numpy", "scores", "ignore_index"),
        Mutant("z-loss without its 2", _slip("z_without_2", z_loss=0.01), "numpy", "scores", "z_loss"),
        Mutant("softcap without 1 - tanh^2", _slip("softcap_factor_missing", softcap=30.0), "numpy", "scores",
               "softcap"),
        Mutant("Liger-style p_y - 1 (NumPy)", slips.probabilities_rounded_first, "numpy", "scores", "none",
               ("bfloat16",)),
        Mutant("Liger-style p_y - 1 (torch)", slips.torch_liger_style, "torch", "scores", "none", ("bfloat16",)),
        Mutant("Liger-style p_y - 1 (torch, strict)", slips.torch_liger_style, "torch", "scores", "none",
               ("bfloat16",), strict=True),
    )
}  # fmt: skip


# ------------------------------------------------------------------ running the checker's pieces
@functools.cache
def _sizes(kind: str, option: str, seeds: tuple[int, ...]) -> dict[str, int]:
    """Every axis but C padded to its largest over all the seeds' batteries: one oracle program per class count."""
    settings = checking.Settings.of(kind, **OPTIONS[option])
    spec = kinds.get(kind)
    sizes: dict[str, int] = {}
    for seed in seeds:
        cases = checking._battery(spec, replace(settings, seed=seed))
        for axis, n in checking.padding_sizes(spec, cases).items():
            sizes[axis] = max(sizes.get(axis, 0), n)
    return sizes


@dataclass
class Group:
    """One (kind, option set, dtype, seed): its settings, battery and oracle results, shared by every target."""

    settings: checking.Settings
    spec: kinds.Kind
    cases: list[battery.Case]
    oracles: list[Any]

    @classmethod
    def of(cls, kind: str, option: str, dtype: str, seed: int, seeds: tuple[int, ...]) -> Group:
        settings = checking.Settings.of(kind, dtype=dtype, seed=seed, **OPTIONS[option])
        spec = kinds.get(kind)
        cases = checking._battery(spec, settings)
        oracles = [checking._Oracle(spec, case, settings, _sizes(kind, option, seeds)) for case in cases]
        checking._warm(oracles)
        return cls(settings, spec, cases, oracles)

    def judge(self, fn: Callable, framework: str, strict: bool = False) -> list[CaseResult]:
        """``fn`` on every case, judged as ``reference.check`` judges it (in this process)."""
        adapter = frameworks.adapter(framework)
        settings = replace(self.settings, strict=strict)
        dtype = settings.np_dtype
        results = []
        takes = runner.takes_grad_output(fn)
        for case, expected in zip(self.cases, self.oracles, strict=True):
            g = battery.cast(case.grad_output, dtype)  # the case's cotangent (eq. 54), as reference.check passes it
            call = runner.run(fn, self.spec, battery.cast(case.inputs, dtype), case.layout, adapter, dtype, None, g)
            if case.grad_output is not None and not (takes or call.by_autodiff):
                expected = expected.at_unit_cotangent()  # its own gradients, computed without the cotangent
            ctx = checking.context(self.spec, case, settings, expected, adapter)
            results.append(judge_call(ctx, case, call, adapter))
        return results


def _worst(results: Iterable[CaseResult]) -> tuple[float, str]:
    """The largest ratio over the cases and outputs (a NaN ratio, a malformed result, counts as inf), and where."""
    worst, where = 0.0, ""
    for result in results:
        ratios = result.ratios or {"(no result)": math.inf}
        for name, ratio in ratios.items():
            ratio = math.inf if math.isnan(ratio) else ratio
            if ratio >= worst:
                worst, where = ratio, f"{result.name}: {name}"
    return worst, where


@dataclass
class Margin:
    """One table row: how many checks, how many failed, how many passed only by the framework's own error."""

    checks: int = 0
    failed: int = 0
    within_own: int = 0
    largest: float = 0.0  # correct code: the largest ratio seen
    smallest: float = math.inf  # a slip: the smallest of its checks' worst ratios
    at_largest: str = ""
    at_smallest: str = ""

    def add(self, results: list[CaseResult], where: str) -> None:
        worst, case = _worst(results)
        self.checks += 1
        self.failed += any(r.status == FAIL for r in results)
        self.within_own += any(r.within_own for r in results if r.status != FAIL)
        if worst >= self.largest:
            self.largest, self.at_largest = worst, f"{where}, {case}"
        if worst < self.smallest:
            self.smallest, self.at_smallest = worst, f"{where}, {case}"


@dataclass
class Table:
    correct: dict[tuple[str, str], Margin] = field(default_factory=dict)  # (dtype, target) -> margin
    mutants: dict[tuple[str, str], Margin] = field(default_factory=dict)  # (mutant, dtype) -> margin
    seconds: float = 0.0

    def format(self) -> str:
        lines = [f"bound verdict margins (MULTIPLE = {MULTIPLE:g}), {self.seconds:.0f} s", "",
                 "| dtype | correct target | checks | FAIL | pass only by own error | largest ratio | at |",
                 "|---|---|---|---|---|---|---|"]  # fmt: skip
        for (dtype, target), m in sorted(self.correct.items()):
            lines.append(f"| {dtype} | {target} | {m.checks} | {m.failed} | {m.within_own} | {m.largest:.3g} | "
                         f"{m.at_largest} |")  # fmt: skip
        lines += ["", "| slip | dtype | checks | caught | smallest worst ratio | at |", "|---|---|---|---|---|---|"]
        for (name, dtype), m in self.mutants.items():
            lines.append(f"| {name} | {dtype} | {m.checks} | {m.failed} | {m.smallest:.3g} | {m.at_smallest} |")
        return "\n".join(lines)


def sweep(
    seeds: Iterable[int] = range(21),
    dtypes: Iterable[str] = DTYPES,
    kinds: Iterable[str] = KINDS,
    options: Iterable[str] = tuple(OPTIONS),
    targets: Iterable[str] = tuple(TARGETS),
    mutants: Iterable[str] = tuple(MUTANTS),
    low_precision_seeds: dict[str, Iterable[int]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Table:
    """Every correct target and slip over the battery at every (seed, kind, option set, dtype) asked for.

    ``low_precision_seeds`` limits a target's bfloat16 and float16 checks to
    some seeds (JAX compiles each case shape anew per dtype, and runs low
    precision slowly on CPU).
    """
    start = time.perf_counter()
    seeds, dtypes, kinds_, options = tuple(seeds), tuple(dtypes), tuple(kinds), tuple(options)
    chosen = [TARGETS[name] for name in targets]
    slips_ = [MUTANTS[name] for name in mutants]
    limited = {name: set(s) for name, s in (low_precision_seeds or {}).items()}
    table = Table()
    built: dict[tuple[str, str, str], Callable | None] = {}  # one function object per target: JAX compiles once
    every_dtype = dict.fromkeys((*dtypes, *(d for m in slips_ for d in m.dtypes)))
    pairs = dict.fromkeys([(k, o) for k in kinds_ for o in options] + [(m.kind, m.option) for m in slips_])
    for seed in seeds:
        for kind, option in pairs:
            for dtype in every_dtype:
                runs = [
                    (t.name, t.framework, False, None)
                    for t in chosen
                    if dtype in dtypes
                    and dtype in t.dtypes
                    and kind in kinds_
                    and option in options
                    and not (dtype in LOW_PRECISION and t.name in limited and seed not in limited[t.name])
                ]
                runs += [(m.name, m.framework, m.strict, m) for m in slips_
                         if dtype in m.dtypes and (m.kind, m.option) == (kind, option)]  # fmt: skip
                if not runs:
                    continue
                group = Group.of(kind, option, dtype, seed, seeds)
                for name, framework, strict, mutant in runs:
                    key = (name, kind, option)
                    if mutant is None and key not in built:
                        built[key] = TARGETS[name].build(kind, OPTIONS[option])
                    fn = mutant.fn if mutant is not None else built[key]
                    if fn is None:
                        continue
                    row = table.mutants if mutant else table.correct
                    margin = row.setdefault((name, dtype) if mutant else (dtype, name), Margin())
                    margin.add(group.judge(fn, framework, strict), f"{kind}, {option}, seed {seed}")
                if progress:
                    progress(f"seed {seed} {kind} {option} {dtype}: {time.perf_counter() - start:.0f} s")
        if progress:  # the table so far: a long sweep stopped early still says what it covered
            table.seconds = time.perf_counter() - start
            progress(f"after seed {seed}:\n{table.format()}")
    table.seconds = time.perf_counter() - start
    return table


def _seeds(text: str) -> list[int]:
    """``"0-20"``, ``"0,3,5"``: the seeds.

    >>> _seeds("0-2,7")
    [0, 1, 2, 7]
    """
    out: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        out += list(range(int(first), int(last or first) + 1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.margins", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=_seeds, default=list(range(21)), help="e.g. 0-20 (default) or 0,3")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--mutants", nargs="*", default=list(MUTANTS), choices=list(MUTANTS))
    parser.add_argument(
        "--jax-low-precision-seeds",
        type=_seeds,
        default=None,
        help="run JAX's bfloat16 and float16 checks at these seeds only (default: every seed)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)  # fmt: skip
    limits = {"jax": args.jax_low_precision_seeds} if args.jax_low_precision_seeds is not None else None
    table = sweep(args.seeds, args.dtypes, args.kinds, args.options, args.targets, args.mutants, limits,
                  None if args.quiet else functools.partial(print, flush=True))  # fmt: skip
    print(table.format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
