"""The ``softmax-grad`` command: a thin face over ``manual`` and ``reference``.

    softmax-grad verify     every variant against both oracles (exit 0 only if all pass)
    softmax-grad bench      time every variant side by side; write a table and a plot
    softmax-grad check      check your own function against the JAX reference

This module is the one place that imports both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def _verify(args: argparse.Namespace) -> int:
    import manual
    import reference
    from softmax_grad.verify import iter_verify, table_header, table_row

    unknown = [name for name in args.variant if name not in manual.VARIANTS]
    if unknown:
        print(
            f"softmax-grad verify: unknown variant {unknown[0]!r}; choose from {list(manual.VARIANTS)}", file=sys.stderr
        )
        return 2
    variants = {name: manual.VARIANTS[name] for name in (args.variant or manual.VARIANTS)}
    print(
        f"verifying {', '.join(variants)} against JAX autodiff and finite differences "
        "(float64 and float32; the first JAX call per shape compiles); each row as it is done...",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    if not args.json:
        print(table_header(), flush=True)
    rows = []
    for row in iter_verify(variants, reference.ORACLES):
        rows.append(row)
        if args.json:  # stdout stays one JSON document; the progress goes to stderr
            print(f"{table_row(row)}  ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
        else:
            print(table_row(row), flush=True)
    ok = all(row.ok for row in rows)
    if args.json:
        print(json.dumps([{**row.__dict__, "ok": row.ok} for row in rows], indent=2))
    else:
        for row in rows:
            for failure in row.failures[:3]:
                print(f"FAIL {failure}")
        total = sum(row.cases for row in rows)
        verdict = "all pass" if ok else f"{sum(not row.ok for row in rows)} rows FAIL"
        print(f"\n{total} calls, {len(rows)} rows: {verdict} ({time.perf_counter() - start:.1f} s)")
    return 0 if ok else 1


def _benchmarks_dir() -> Path | None:
    """The benchmarks folder: in the working directory, or beside the installed packages."""
    for root in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (root / "benchmarks" / "test_benchmarks.py").is_file():
            return root / "benchmarks"
    return None


def _machine() -> str:
    """The report's header: CPU model, cores, the widest SIMD that NumPy's kernels use, and the versions timed."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    simd = _widest_simd()
    versions = ", ".join(f"{name} {_version(name)}" for name in ("numpy", "jax"))
    return (
        f"Machine: {cpu}, {os.cpu_count()} cores{f', {simd}' if simd else ''}; "
        f"Python {platform.python_version()}, {versions}, {platform.system()}"
    )


def _widest_simd() -> str:
    """``"AVX-512"``, ``"AVX2"`` or ``"NEON"``: which of NumPy's ``exp`` kernels runs, and so its floor.

    An AVX-512 ``exp`` runs near memory speed; an AVX2 one is bound by its own
    arithmetic (issue 14), so a report must say which machine it comes from.
    """
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # the module moved: say nothing rather than guess
        return ""
    for feature, name in (("AVX512F", "AVX-512"), ("AVX2", "AVX2"), ("ASIMD", "NEON")):
        if features.get(feature):
            return f"{name} (NumPy's widest SIMD here)"
    return ""


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _bench(args: argparse.Namespace) -> int:
    from softmax_grad.report import render

    folder = _benchmarks_dir()
    if folder is None:
        print("softmax-grad bench: no benchmarks/ folder found; run it from a clone of the repository", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "benchmarks.json"
    size, max_time, min_rounds = ("quick", "0.05", "3") if args.quick else ("full", "0.5", "5")
    command = [
        sys.executable, "-m", "pytest", str(folder), "-o", "addopts=", "-p", "no:cacheprovider",
        "--benchmark-enable", "--benchmark-only", "--benchmark-quiet", f"--benchmark-json={json_path}",
        f"--benchmark-max-time={max_time}", f"--benchmark-min-rounds={min_rounds}", f"--bench-size={size}",
        "-q", "-rs", "--no-header",
    ]  # fmt: skip
    print(f"running the {size} benchmarks (pytest-benchmark); the summary follows when they are done", file=sys.stderr)
    # pytest's own lines (one per benchmark) are kept back: printed only if something fails
    done = subprocess.run(command, cwd=folder.parent, check=False, capture_output=True, text=True)
    if done.returncode != 0 or not json_path.is_file():
        print(done.stdout[-6000:] + done.stderr[-2000:], file=sys.stderr)
        print(f"softmax-grad bench: the benchmarks failed (pytest exit {done.returncode})", file=sys.stderr)
        return 1
    machine = _machine()
    _, plot_message = render(json_path, out, machine)
    print(terminal_summary(json_path))
    print(f"{machine}\nfull report (every workload, float32 too) in {out / 'report.md'}; timings in {json_path}")
    print(plot_message)
    return 0


def terminal_summary(json_path: Path) -> str:
    """What ``bench`` prints: the float64 medians of every contender and peer, one row per workload; the rest
    (float32, every workload's table, linear cross-entropy's memory) stays in report.md."""
    from softmax_grad.report import load, overview

    return f"float64, median per call:\n{overview(load(json_path), 'float64')}"


def _save_path(save: str) -> Path:
    """``--save``: a ``.npz`` file, or a folder (created) that gets ``softmax-grad-failure.npz``."""
    path = Path(save)
    if path.suffix != ".npz":
        path = path / "softmax-grad-failure.npz"
    path.parent.mkdir(parents=True, exist_ok=True)  # now, so that a bad folder fails before any case runs
    return path


def _weight(text: str) -> object:
    """``--weight``: a comma list of numbers, or a ``.npy`` file holding one (C,) array."""
    import numpy as np

    if text.endswith(".npy"):
        try:
            return np.load(text, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text}: {exc}") from None
    try:
        return np.array([float(part) for part in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas (1,2.5,0.5) or a .npy file, got {text!r}"
        ) from None


def _check(args: argparse.Namespace) -> int:
    from reference.checker import KINDS, CheckError, check

    try:
        save = None if args.json else _save_path(args.save)
    except OSError as exc:
        print(f"softmax-grad check: --save {args.save}: cannot create the folder: {exc}", file=sys.stderr)
        return 2
    try:
        report = check(
            args.target,  # loaded by the checker's child process only: its import cannot touch this one
            args.kind,
            framework=args.framework,
            dtype=args.dtype,
            strict=args.strict,
            reduction=args.reduction,
            reg_scale=args.reg_scale,
            weight=args.weight,
            ignore_index=args.ignore_index,
            label_smoothing=args.label_smoothing,
            z_loss=args.z_loss,
            softcap=args.softcap,
            seed=args.seed,
            timeout=args.timeout,
            save_failure=save,
            mesh=args.mesh,
        )
    except (CheckError, ValueError, TypeError) as exc:
        print(f"softmax-grad check: {exc}", file=sys.stderr)
        print(f"expected for --kind {args.kind}: {KINDS.get(args.kind, '?')}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2, allow_nan=False) if args.json else report.format())
    return 0 if report.passed else 1


def _add_check(commands: argparse._SubParsersAction) -> None:
    from reference.checker import KINDS
    from reference.checker.frameworks import FRAMEWORKS
    from reference.checker.runner import DEFAULT_TIMEOUT

    check = commands.add_parser(
        "check",
        help="check your own function against the JAX reference",
        description="Exit status: 0 every case passes (warnings allowed unless --strict), 1 a case fails, "
        "2 the target cannot be loaded or called, or its framework is not installed.",
        epilog="The cotangent (kinds scores and linear_ce; derivation eq. 54): every case draws its own grad_output "
        "g, a scalar of either sign with 0.5 <= |g| <= 3 for mean and sum, an (N,) vector of mixed signs with "
        "exact zeros for none, and the gradients are judged as the vector-Jacobian product at g (row i's "
        "gradient times g_i; g times the gradient for mean and sum). A torch or jax function that returns the "
        "loss alone is differentiated at g: loss.backward(g), jax.vjp. A function that returns its gradients "
        "itself (every numpy function) is called as f(..., grad_output=g) when it has a parameter named "
        "grad_output (g a float for mean and sum, an (N,) array of the case's dtype for none) and must return the "
        "vector-Jacobian product at g; without that parameter it is called as before and its gradients are "
        "judged at g = 1. With --reduction none the loss returned is the (N,) per-row losses (ignored rows 0, "
        "class weights multiplied in, nothing divided). Masked classes (eq. 56): the scores and linear_ce cases "
        "include -inf lanes (a vocabulary padded past a multiple of 64; a bias of -inf on padding columns; "
        "per-row masks), except with --label-smoothing, which a mask makes undefined; with --softcap a mask "
        "must stay -inf.",
    )
    check.add_argument("target", help="path/to/file.py:function or package.module:function")
    check.add_argument(
        "--kind", required=True, choices=tuple(KINDS), help="; ".join(f"{k}: {v}" for k, v in KINDS.items())
    )
    check.add_argument(
        "--framework",
        choices=FRAMEWORKS,
        default="auto",
        help="what the function is written in (default auto: torch or jax if its module imports it, else numpy); "
        "torch and jax functions may return the loss alone, differentiated by backward(g) or jax.vjp at the "
        "case's cotangent g (see below)",
    )
    check.add_argument(
        "--dtype", choices=("float64", "float32", "bfloat16", "float16"), default="float64",
        help="dtype of the cases; every output is judged by its rounding-error bound in it",
    )  # fmt: skip
    check.add_argument(
        "--strict", action="store_true",
        help="judge by the rounding-error bound alone: in bfloat16 and float16 a result beyond its bound fails even "
        "when it is within the framework's own error (reported beside it); and count warnings as failures",
    )  # fmt: skip
    check.add_argument(
        "--reduction", choices=("mean", "sum", "none"), default="mean",
        help="loss over samples (default mean); none: the (N,) per-row losses, for kinds scores and linear_ce "
        "only (linear and two_layer add a penalty on the weights, which belongs to no row)",
    )  # fmt: skip
    check.add_argument(
        "--reg-scale",
        type=float,
        default=0.5,
        help="penalty R = REG_SCALE * reg * sum W^2: 0.5 as in the derivation (default), 1 as in many courses",
    )
    options = check.add_argument_group("loss options your function implements (applied by the oracle)")
    options.add_argument(
        "--weight",
        type=_weight,
        default=None,
        metavar="W",
        help="class weights: a comma list (1,2.5,0.5) or a .npy file; fixes C = the number of weights",
    )
    options.add_argument("--label-smoothing", type=float, default=0.0, metavar="E", help="in [0, 1] (default 0)")
    options.add_argument(
        "--ignore-index", type=int, default=None, metavar="I", help="label of rows to skip; the cases then include some"
    )
    options.add_argument("--z-loss", type=float, default=0.0, metavar="Z", help="z * mean lse^2 (default 0)")
    options.add_argument("--softcap", type=float, default=None, metavar="C", help="logits become C tanh(S / C)")
    check.add_argument("--seed", type=int, default=0, help="seed of the random cases (default 0)")
    check.add_argument(
        "--mesh",
        default=None,
        metavar="BxV",
        help="JAX targets (linear_ce, scores): run on a simulated BxV device mesh, rows over B batch shards, "
        "classes over V vocabulary shards (e.g. 2x4; a single k means 1xk)",
    )
    check.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="per-case time limit; a function still running after it fails as hung, and its process is killed "
        f"(default {DEFAULT_TIMEOUT:g}; inf: no limit)",
    )
    check.add_argument(
        "--save",
        default="softmax-grad-failure.npz",
        metavar="PATH",
        help="where the first failing case is saved: a .npz file, or a folder (created if missing)",
    )
    check.add_argument("--json", action="store_true", help="machine-readable output, standard JSON (saves no file)")
    check.set_defaults(run=_check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softmax-grad", description="Hand-derived softmax-loss gradients, checked against JAX autodiff."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check every variant against both oracles")
    verify.add_argument("--variant", action="append", default=[], help="only this variant (repeatable)")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(run=_verify)
    bench = commands.add_parser("bench", help="time every variant side by side; write a table and a plot")
    bench.add_argument("--quick", action="store_true", help="a few workloads, about 3.5 minutes of CPU time")
    bench.add_argument("--out", default="bench-report", help="folder for the JSON, report.md and the plot")
    bench.set_defaults(run=_bench)
    _add_check(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
