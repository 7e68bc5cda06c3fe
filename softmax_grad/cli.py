"""The ``softmax-grad`` command: a thin face over ``manual`` and ``reference``.

    softmax-grad verify     every variant against both oracles (exit 0 only if all pass)

This module is the one place that imports both sides.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence


def _verify(args: argparse.Namespace) -> int:
    import manual
    import reference
    from softmax_grad.verify import format_table, verify

    unknown = [name for name in args.variant if name not in manual.VARIANTS]
    if unknown:
        print(
            f"softmax-grad verify: unknown variant {unknown[0]!r}; choose from {list(manual.VARIANTS)}", file=sys.stderr
        )
        return 2
    variants = {name: manual.VARIANTS[name] for name in (args.variant or manual.VARIANTS)}
    oracles = {"autodiff": reference, "finite_differences": reference.finite_differences}
    print(
        f"verifying {', '.join(variants)} against JAX autodiff and finite differences "
        "(float64 and float32; the first JAX call per shape compiles)...",
        file=sys.stderr,
    )
    start = time.perf_counter()
    rows = verify(variants, oracles)
    ok = all(row.ok for row in rows)
    if args.json:
        print(json.dumps([{**row.__dict__, "ok": row.ok} for row in rows], indent=2))
    else:
        print(format_table(rows))
        for row in rows:
            for failure in row.failures[:3]:
                print(f"FAIL {failure}")
        total = sum(row.cases for row in rows)
        verdict = "all pass" if ok else f"{sum(not row.ok for row in rows)} rows FAIL"
        print(f"\n{total} calls, {len(rows)} rows: {verdict} ({time.perf_counter() - start:.1f} s)")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softmax-grad", description="Hand-derived softmax-loss gradients, checked against JAX autodiff."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check every variant against both oracles")
    verify.add_argument("--variant", action="append", default=[], help="only this variant (repeatable)")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(run=_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
