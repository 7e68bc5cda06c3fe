"""GPU figures: the compiled closed form against JAX autodiff, in bytes per second.

    python -m benchmarks.gpu [--out DIR] [--repeats 30]

For each shape (float32 scores, N x C), times on the default JAX device:

* ``compiled core``: ``manual.compiled.softmax_loss_core``, loss and dS together;
* ``jax autodiff``: ``jax.jit(jax.value_and_grad(reference.losses.softmax_loss_value))``;
* ``elementwise pass``: ``jax.jit(jnp.exp)`` over the same array, the bandwidth ceiling
  for anything that reads the scores once and writes an array of the same size.

Effective bandwidth counts the bytes of the scores read plus the gradient (or the
exp) written, divided by the median time; compilation is excluded and every call
is blocked on. Prints a Markdown table and writes ``gpu.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from manual.compiled import softmax_loss_core
from reference.losses import softmax_loss_value

SHAPES = [(8192, 32768), (4096, 131072)]


def median_seconds(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm up
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    device = jax.devices()[0]
    contenders = {
        "compiled core": softmax_loss_core,
        "jax autodiff": jax.jit(jax.value_and_grad(softmax_loss_value)),
        "elementwise pass": jax.jit(jnp.exp),
    }
    rows = []
    for N, C in SHAPES:
        key = jax.random.PRNGKey(0)
        S = jax.random.normal(key, (N, C), jnp.float32)
        y = jax.random.randint(jax.random.PRNGKey(1), (N,), 0, C)
        moved = 2 * S.nbytes  # scores read + gradient written
        for name, fn in contenders.items():
            call_args = (S,) if name == "elementwise pass" else (S, y)
            t = median_seconds(fn, call_args, args.repeats)
            rows.append({"shape": [N, C], "contender": name, "median_s": t, "bandwidth_GBps": moved / t / 1e9})
        # Agreement check: the closed form and autodiff give the same gradient here too.
        loss_c, dS_c = softmax_loss_core(S, y)
        loss_a, dS_a = contenders["jax autodiff"](S, y)
        scale = float(jnp.max(jnp.abs(dS_a)))
        rows.append(
            {
                "shape": [N, C],
                "check": "compiled vs autodiff",
                "max_abs_error_over_max": float(jnp.max(jnp.abs(dS_c - dS_a))) / scale,
                "loss_rel_error": abs(float(loss_c) - float(loss_a)) / abs(float(loss_a)),
            }
        )

    print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}, numpy {np.__version__}\n")
    print("| N x C | contender | median | effective bandwidth | vs autodiff | share of elementwise bandwidth |")
    print("|---|---|---|---|---|---|")
    for N, C in SHAPES:
        timed = {r["contender"]: r for r in rows if r["shape"] == [N, C] and "contender" in r}
        for name, r in timed.items():
            speedup = timed["jax autodiff"]["median_s"] / r["median_s"]
            share = r["bandwidth_GBps"] / timed["elementwise pass"]["bandwidth_GBps"]
            print(
                f"| {N}x{C} | {name} | {r['median_s'] * 1e3:.3f} ms | {r['bandwidth_GBps']:.0f} GB/s "
                f"| {speedup:.2f}x | {share:.0%} |"
            )
    for r in rows:
        if "check" in r:
            print(
                f"\n{r['shape']}: {r['check']}: max |dS error| / max |dS| = {r['max_abs_error_over_max']:.1e}, "
                f"loss relative error {r['loss_rel_error']:.1e}"
            )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    meta = {"device": device.device_kind, "platform": device.platform, "jax": jax.__version__}
    (Path(args.out) / "gpu.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
