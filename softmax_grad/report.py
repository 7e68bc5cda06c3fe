"""Turn pytest-benchmark's JSON into a Markdown table and a log-log plot.

One table per workload, every contender a row, whatever its interface (NumPy
arrays, device arrays, torch tensors): median time, spread (the interquartile
range), speedup against the baselines present in the table (``per_element``,
``vectorized``), the ratio to the floor, and the ratio to the fastest peer, the
code a user would run instead (``torch``, ``jax autodiff``; see
benchmarks/peers.py). Variant names come from the JSON, so a variant added to
``manual.VARIANTS`` (``tuned``, the engineered NumPy kernel) shows up as it is;
when one is called ``tuned``, the floors table sets it beside ``vectorized``.
The floor of a table is the larger of two NumPy passes over the same (N, C)
array measured in the same run, one ``np.exp`` and one copy (a read and a
write of the same bytes): a loss and its gradient need both the ``exp`` work
and that memory traffic. Which one is larger says what bounds this machine:
``exp`` (compute) or memory; without them, a jitted ``jnp.exp``.
The plot shows median time against N x C for ``softmax_loss``, one line per
contender; it needs matplotlib (the ``plot`` extra) and is skipped with a
message without it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

BASELINES = ("per_element", "vectorized")
TEXTBOOK, TUNED = "vectorized", "tuned"
# What a user would run instead of the suite (benchmarks/peers.py), and what the suite offers for the same call.
PEERS = ("torch", "torch dense", "torch chunked", "jax autodiff")
OURS_ON_DEVICE = "compiled (device)"
INTERFACES = {"numpy": "NumPy", "jax": "jax.Array", "torch": "torch, CPU"}
LOOPS = ("per_element", "per_row")
EXP_FLOOR, COPY_FLOOR, ROW_SUM_FLOOR, JAX_FLOOR = "np.exp floor", "copy floor", "row-sum floor", "jnp.exp floor"
FLOORS = (EXP_FLOOR, COPY_FLOOR, ROW_SUM_FLOOR, JAX_FLOOR)
# The passes a floor is the larger of: NumPy tables take the exp pass and the copy pass, jax tables jnp.exp.
BOUNDING_FLOORS = (EXP_FLOOR, COPY_FLOOR, JAX_FLOOR)


@dataclass(frozen=True)
class Timing:
    group: str
    kind: str
    function: str
    shape: tuple[int, ...]
    dtype: str
    contender: str
    scores_elements: int
    median: float
    iqr: float
    rounds: int
    variants: tuple[str, ...]
    missing_peers: tuple[tuple[str, str], ...] = ()

    @property
    def interface(self) -> str:
        """What the contender takes and returns: NumPy arrays, device arrays or torch tensors."""
        return INTERFACES.get(self.kind.split()[0], self.kind)


def load(path: str | Path) -> list[Timing]:
    """Read the timings of a ``--benchmark-json`` file."""
    data = json.loads(Path(path).read_text())
    timings = []
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        stats = bench["stats"]
        timings.append(
            Timing(
                group=bench["group"],
                kind=info["kind"],
                function=info["function"],
                shape=tuple(info["shape"]),
                dtype=info["dtype"],
                contender=info["contender"],
                scores_elements=info["scores_elements"],
                median=stats["median"],
                iqr=stats["iqr"],
                rounds=stats["rounds"],
                variants=tuple(info.get("variants", ())),
                missing_peers=tuple(sorted(info.get("missing_peers", {}).items())),
            )
        )
    return timings


def markdown_row(cells: list[str]) -> str:
    """One row of a Markdown table.

    >>> markdown_row(["a", "b"])
    '| a | b |'
    """
    return "| " + " | ".join(cells) + " |"


def seconds(value: float) -> str:
    """A duration with a readable unit.

    >>> seconds(0.0123), seconds(4.5e-6), seconds(2.0)
    ('12.3 ms', '4.5 us', '2.00 s')
    """
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.1f} us"


def _group_order(timings: list[Timing]) -> list[str]:
    first = {}
    for t in timings:
        first.setdefault(t.group, (t.function, t.kind, t.dtype, t.scores_elements, t.shape))
    return sorted(first, key=lambda g: first[g])


def floor_of(medians: dict[str, float]) -> float | None:
    """The larger of the NumPy floors in one table (exp pass, copy pass), else the ``jnp.exp`` pass, else None.

    >>> floor_of({"np.exp floor": 0.004, "copy floor": 0.003, "jnp.exp floor": 0.001, "vectorized": 0.005})
    0.004
    >>> floor_of({"jnp.exp floor": 0.001})
    0.001
    """
    present = [medians[f] for f in (EXP_FLOOR, COPY_FLOOR) if f in medians]
    if not present and JAX_FLOOR in medians:
        present = [medians[JAX_FLOOR]]
    return max(present) if present else None


def fastest_peer(medians: dict[str, float]) -> float | None:
    """The smallest median among the peers in one table, or None without one.

    >>> fastest_peer({"torch": 0.009, "jax autodiff": 0.005, "vectorized": 0.006})
    0.005
    """
    present = [medians[p] for p in PEERS if p in medians]
    return min(present) if present else None


def _missing_peer_notes(rows: list[Timing]) -> list[tuple[str, str]]:
    return sorted({note for t in rows for note in t.missing_peers})


def table(timings: list[Timing]) -> str:
    """Markdown: one table per workload; "x floor" is the time over the floor (``floor_of``), "/ fastest peer"
    the time over the fastest peer's (``fastest_peer``): under 1 is faster than anything a user would pick instead.
    """
    by_group: dict[str, list[Timing]] = defaultdict(list)
    for t in timings:
        by_group[t.group].append(t)
    out = []
    for group in _group_order(timings):
        rows = sorted(by_group[group], key=lambda t: t.median, reverse=True)
        medians = {t.contender: t.median for t in rows}
        baselines = [b for b in BASELINES if b in medians]
        floor, peer = floor_of(medians), fastest_peer(medians)
        header = ["contender", "interface", "median", "spread (IQR)", *[f"speedup vs {b}" for b in baselines]]
        header += ["x floor", "/ fastest peer"]
        out += [f"### {group}", "", markdown_row(header), "|" + "---|" * len(header)]
        for t in rows:
            cells = [t.contender, t.interface, seconds(t.median), seconds(t.iqr)]
            cells += [f"{medians[b] / t.median:.2f}x" for b in baselines]
            cells.append(f"{t.median / floor:.2f}" if floor and t.contender not in FLOORS else "-")
            cells.append(f"{t.median / peer:.2f}" if peer and t.contender not in FLOORS else "-")
            out.append(markdown_row(cells))
        blank = [""] * (len(header) - 3)
        numpy_rows = [t for t in rows if t.kind == "numpy"]
        for variant in [v for v in (numpy_rows[0].variants if numpy_rows else ()) if v not in medians]:
            out.append(markdown_row([variant, "NumPy", "skipped: over the loop budget", *blank]))
        for peer_name, note in _missing_peer_notes(rows):
            out.append(markdown_row([peer_name, "", f"skipped: {note}", *blank]))
        out.append("")
    return "\n".join(out)


def summary(timings: list[Timing], kind: str, dtype: str) -> str:
    """Markdown: one row per workload, one column per contender, median times.

    The overview that the per-workload tables detail; a loop variant that sat a
    workload out shows as "skipped".
    """
    chosen = [t for t in timings if t.kind == kind and t.dtype == dtype]
    if kind == "numpy":  # every registered variant gets a column, skipped or not
        contenders = list(dict.fromkeys(c for t in chosen for c in (*t.variants, t.contender)))
    else:
        contenders = list(dict.fromkeys(t.contender for t in chosen))
    rows: dict[tuple, dict[str, float]] = defaultdict(dict)
    for t in chosen:
        rows[(t.function, t.shape)][t.contender] = t.median
    floors = [f for f in FLOORS if f in contenders]
    names = [c for c in contenders if c not in floors] + floors
    header = ["workload", *names]
    if floors and "vectorized" in names:
        header.append("vectorized / floor")
    if "compiled core" in names and "jax autodiff" in names:
        header.append("autodiff / compiled core")
    lines = [markdown_row(header), "|" + "---|" * len(header)]
    for (function, shape), medians in sorted(rows.items(), key=lambda kv: (kv[0][0], math.prod(kv[0][1]))):
        cells = [f"{function} {'x'.join(map(str, shape))}"]
        cells += [seconds(medians[c]) if c in medians else "-" if c in FLOORS else "skipped" for c in names]
        if floors and "vectorized" in names:
            floor = floor_of(medians)
            cells.append(f"{medians['vectorized'] / floor:.2f}" if "vectorized" in medians and floor else "-")
        if "compiled core" in names and "jax autodiff" in names:
            cells.append(f"{medians['jax autodiff'] / medians['compiled core']:.2f}x")
        lines.append(markdown_row(cells))
    return "\n".join(lines)


def ours(contenders: list[str], variants: tuple[str, ...]) -> list[str]:
    """The suite's own public calls among ``contenders``: the variants and the compiled call on device arrays."""
    return [c for c in contenders if c in variants or c == OURS_ON_DEVICE]


def overview(timings: list[Timing], dtype: str) -> str:
    """Markdown: one row per workload, every contender of every interface a column, and the ratios that matter.

    "ours / fastest peer" divides the fastest of the suite's public calls (the
    variants, NumPy in and out, and ``compiled`` on device arrays, checks
    included) by the fastest peer; "compiled (device) / jax autodiff" sets the
    hand-derived closed form beside the autodiff a JAX user would write.
    """
    chosen = [t for t in timings if t.dtype == dtype]
    variants = tuple(dict.fromkeys(v for t in chosen for v in t.variants))
    contenders = list(dict.fromkeys([*variants, *(t.contender for t in chosen)]))
    floors_present = [f for f in FLOORS if f in contenders]
    peers = [p for p in PEERS if p in contenders]
    names = [c for c in contenders if c not in floors_present and c not in peers] + peers + floors_present
    rows: dict[tuple, dict[str, float]] = defaultdict(dict)
    for t in chosen:
        rows[(t.function, t.shape)][t.contender] = t.median
    ratios = []
    if peers:
        ratios.append("ours / fastest peer")
    if OURS_ON_DEVICE in names and "jax autodiff" in names:
        ratios.append("compiled (device) / jax autodiff")
    header = ["workload", *names, *ratios]
    lines = [markdown_row(header), "|" + "---|" * len(header)]
    for (function, shape), medians in sorted(rows.items(), key=lambda kv: (kv[0][0], math.prod(kv[0][1]))):
        cells = [f"{function} {'x'.join(map(str, shape))}"]
        cells += [seconds(medians[c]) if c in medians else "skipped" if c in variants else "-" for c in names]
        mine = [medians[c] for c in ours(list(medians), variants)]
        peer = fastest_peer(medians)
        if "ours / fastest peer" in ratios:
            cells.append(f"{min(mine) / peer:.2f}" if mine and peer else "-")
        if "compiled (device) / jax autodiff" in ratios:
            both = OURS_ON_DEVICE in medians and "jax autodiff" in medians
            cells.append(f"{medians[OURS_ON_DEVICE] / medians['jax autodiff']:.2f}" if both else "-")
        lines.append(markdown_row(cells))
    return "\n".join(lines)


def floors(timings: list[Timing]) -> str:
    """Markdown: the machine's floors per ``softmax_loss`` workload, and what bounds it there.

    The exp pass and the copy pass move the same bytes; when the exp pass takes
    clearly longer (1.5x or more) the machine is bound by ``exp`` (compute),
    else by memory traffic. The BLAS row-sum pass is a read alone.
    """
    by_workload: dict[tuple, dict[str, float]] = defaultdict(dict)
    for t in timings:
        if t.kind == "numpy" and t.function == "softmax_loss":
            by_workload[(t.shape, t.dtype)][t.contender] = t.median
    tuned = any(t.contender == TUNED for t in timings)
    header = ["workload", EXP_FLOOR, COPY_FLOOR, ROW_SUM_FLOOR, "exp / copy", "bound by", f"{TEXTBOOK} / floor"]
    if tuned:  # the textbook form against the engineered kernel against the floor: what each step buys
        header += [f"{TUNED} / floor", f"{TEXTBOOK} / {TUNED}"]
    lines = [markdown_row(header), "|" + "---|" * len(header)]
    for (shape, dtype), medians in sorted(by_workload.items(), key=lambda kv: (kv[0][1], math.prod(kv[0][0]))):
        if EXP_FLOOR not in medians or COPY_FLOOR not in medians:
            continue
        ratio = medians[EXP_FLOOR] / medians[COPY_FLOOR]
        cells = [f"{'x'.join(map(str, shape))} {dtype}"]
        cells += [seconds(medians[f]) if f in medians else "-" for f in (EXP_FLOOR, COPY_FLOOR, ROW_SUM_FLOOR)]
        cells += [f"{ratio:.2f}", "exp (compute)" if ratio >= 1.5 else "memory"]
        floor = floor_of(medians)
        cells.append(f"{medians[TEXTBOOK] / floor:.2f}" if TEXTBOOK in medians else "-")
        if tuned:
            cells.append(f"{medians[TUNED] / floor:.2f}" if TUNED in medians else "-")
            both = TEXTBOOK in medians and TUNED in medians
            cells.append(f"{medians[TEXTBOOK] / medians[TUNED]:.2f}" if both else "-")
        lines.append(markdown_row(cells))
    return "\n".join(lines)


def loop_speedups(timings: list[Timing], shape: tuple[int, ...] = (100, 100)) -> str:
    """One line per dtype: how much faster ``vectorized`` is than each loop variant on ``softmax_loss`` at ``shape``."""
    lines = []
    for dtype in ("float64", "float32"):
        medians = {
            t.contender: t.median
            for t in timings
            if t.kind == "numpy" and t.function == "softmax_loss" and t.shape == shape and t.dtype == dtype
        }
        if "vectorized" not in medians:
            continue
        loops = [f"{medians[v] / medians['vectorized']:.0f}x over {v}" for v in LOOPS if v in medians]
        if loops:
            lines.append(f"- softmax_loss {'x'.join(map(str, shape))} {dtype}: vectorized is " + ", ".join(loops))
    return "\n".join(lines)


def plot(timings: list[Timing], path: str | Path) -> str:
    """Write the log-log plot of ``softmax_loss`` time against N x C; return what was done."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install 'softmax-grad[plot]')"
    panels = [(kind, dtype) for kind in ("numpy", "jax") for dtype in ("float64", "float32")]
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), sharex=True, sharey=True)
    for ax, (kind, dtype) in zip(axes.flat, panels, strict=True):
        lines: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for t in timings:
            if t.function == "softmax_loss" and t.kind == kind and t.dtype == dtype:
                lines[t.contender].append((t.scores_elements, t.median))
        for contender, points in sorted(lines.items()):
            xs, ys = zip(*sorted(points), strict=True)
            style = ":" if contender in FLOORS else "-"
            ax.loglog(xs, ys, style, marker="o", label=contender)
        ax.set_title(f"softmax_loss, {kind}, {dtype}")
        ax.grid(True, which="both", alpha=0.3)
        if lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    for ax in axes[1]:
        ax.set_xlabel("N x C (scores)")
    for ax in axes[:, 0]:
        ax.set_ylabel("median time per call (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to {path}"


def render(json_path: str | Path, out_dir: str | Path, machine: str = "") -> tuple[str, str]:
    """Write ``report.md`` and ``softmax_loss.png`` into ``out_dir``; return the table and the plot message."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings = load(json_path)
    overviews = [
        f"## Summary: medians, {dtype}, every interface\n\n{overview(timings, dtype)}\n"
        for dtype in ("float64", "float32")
        if any(t.dtype == dtype for t in timings)
    ]
    head = []
    if any(t.contender == EXP_FLOOR for t in timings):
        head.append(f"## The machine's floors, measured in this run\n\n{floors(timings)}\n")
    speedups = loop_speedups(timings)
    if speedups:
        head.append(f"## Loops against vectorized\n\n{speedups}\n")
    markdown = "\n".join(head + overviews) + "\n## Every workload\n\n" + table(timings)
    memory = memory_table(json_path)
    if memory:
        markdown += "\n## Linear cross-entropy: time and working memory\n\n" + memory
    heading = f"# softmax-grad benchmarks\n\n{machine}\n\n" if machine else "# softmax-grad benchmarks\n\n"
    (out / "report.md").write_text(heading + markdown)
    return markdown, plot(timings, out / "softmax_loss.png")


# ----------------------------------------------------------- linear cross-entropy: memory beside time
DENSE = {"numpy lce": "numpy dense", "jax lce": "jax autodiff", "torch lce": "torch dense"}


def mebibytes(value: float) -> str:
    """Bytes as MiB.

    >>> mebibytes(3 * 2**20), mebibytes(1.5 * 2**30)
    ('3.0 MiB', '1536.0 MiB')
    """
    return f"{value / 2**20:.1f} MiB"


def memory_table(json_path: str | Path) -> str:
    """Markdown: per linear cross-entropy workload, each contender's time and working memory beside the dense form's
    of its own framework, and its time over the fastest peer's (torch dense or chunked, JAX autodiff).

    Reads ``extra_info["working_memory_bytes"]`` (benchmarks/test_linear_cross_entropy.py);
    time is the fastest round (the machine is shared: the minimum is the least disturbed),
    with the median beside it. Empty when no benchmark recorded its memory.
    """
    benches = [
        b for b in json.loads(Path(json_path).read_text())["benchmarks"] if "working_memory_bytes" in b["extra_info"]
    ]
    by_group: dict[str, list[dict]] = defaultdict(list)
    for bench in benches:
        by_group[bench["group"]].append(bench)
    out = []
    for group in sorted(by_group, key=lambda g: (by_group[g][0]["extra_info"]["scores_elements"], g)):
        rows = by_group[group]
        dense_of = {
            b["extra_info"]["kind"]: b
            for b in rows
            if b["extra_info"]["contender"] == DENSE.get(b["extra_info"]["kind"])
        }
        peer_times = [b["stats"]["min"] for b in rows if b["extra_info"]["contender"] in PEERS]
        peer = min(peer_times) if peer_times else None
        logits = rows[0]["extra_info"]["logits_bytes"]
        header = ["contender", "interface", "min time", "median", "working memory", "time / dense", "memory / dense"]
        header.append("/ fastest peer")
        out += [f"### {group} (logits: {mebibytes(logits)})", "", markdown_row(header), "|" + "---|" * len(header)]
        for bench in sorted(rows, key=lambda b: -b["extra_info"]["working_memory_bytes"]):
            info, stats = bench["extra_info"], bench["stats"]
            memory = info["working_memory_bytes"]
            dense = dense_of.get(info["kind"])
            interface = INTERFACES.get(info["kind"].split()[0], info["kind"])
            cells = [info["contender"], interface, seconds(stats["min"]), seconds(stats["median"]), mebibytes(memory)]
            if dense is not None and dense["extra_info"]["working_memory_bytes"] > 0:
                cells += [
                    f"{stats['min'] / dense['stats']['min']:.2f}",
                    f"{memory / dense['extra_info']['working_memory_bytes']:.3f}",
                ]
            else:
                cells += ["-", "-"]
            cells.append(f"{stats['min'] / peer:.2f}" if peer else "-")
            out.append(markdown_row(cells))
        notes = sorted({note for b in rows for note in b["extra_info"].get("missing_peers", {}).items()})
        out += [markdown_row([name, "", f"skipped: {note}", *[""] * (len(header) - 3)]) for name, note in notes]
        out.append("")
    return "\n".join(out)
