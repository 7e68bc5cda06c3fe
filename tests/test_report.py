"""The benchmark report: table and summary from pytest-benchmark's JSON; the plot only with matplotlib."""

from __future__ import annotations

import json
import sys

import pytest

from softmax_grad.report import floors, load, loop_speedups, overview, render, summary, table


def fake_json(tmp_path, variants=("per_element", "per_row", "vectorized"), extra=(), missing_peers=None):
    def bench(contender, kind, median, shape=(4096, 1000), dtype="float64"):
        group = f"softmax_loss {'x'.join(map(str, shape))} {dtype}"
        info = {
            "kind": kind, "function": "softmax_loss", "shape": list(shape), "dtype": dtype,
            "contender": contender, "scores_elements": shape[0] * shape[1],
            "variants": list(variants), "missing_peers": missing_peers or {},
        }  # fmt: skip
        return {"group": group, "extra_info": info, "stats": {"median": median, "iqr": median / 10, "rounds": 5}}

    benchmarks = [
        bench("per_row", "numpy", 0.12),
        bench("vectorized", "numpy", 0.045),
        bench("np.exp floor", "numpy", 0.040),
        bench("copy floor", "numpy", 0.010),
        bench("row-sum floor", "numpy", 0.004),
        bench("per_element", "numpy", 0.009, shape=(100, 100)),
        bench("vectorized", "numpy", 0.0002, shape=(100, 100)),
        bench("np.exp floor", "numpy", 0.00005, shape=(100, 100)),
        bench("copy floor", "numpy", 0.0001, shape=(100, 100)),  # larger than exp here: the floor is the copy
        bench("compiled core", "jax", 0.012),
        bench("jax autodiff", "jax", 0.048),
        bench("jnp.exp floor", "jax", 0.005),
        *(bench(*row) for row in extra),
    ]
    path = tmp_path / "benchmarks.json"
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


PEERS = [("torch", "torch", 0.030), ("compiled (device)", "jax", 0.013)]


def test_table_has_speedups_floor_ratios_and_skipped_loop_variants(tmp_path):
    markdown = table(load(fake_json(tmp_path)))
    assert "### softmax_loss 4096x1000 float64" in markdown
    assert "| vectorized | NumPy | 45.0 ms | 4.5 ms | 1.00x | 1.12 | 0.94 |" in markdown  # 45 / 40, 45 / 48
    assert "| per_element | NumPy | skipped: over the loop budget |" in markdown
    assert "| per_element | NumPy | 9.0 ms | 900.0 us | 1.00x | 0.02x | 90.00 | - |" in markdown  # / the 100 us copy
    # every interface in the one table: the device rows beside the NumPy ones, against the same floor
    assert "| compiled core | jax.Array | 12.0 ms | 1.2 ms | 3.75x | 0.30 | 0.25 |" in markdown


def test_every_row_is_set_against_the_fastest_peer(tmp_path):
    markdown = table(load(fake_json(tmp_path, extra=PEERS)))
    assert "| torch | torch, CPU | 30.0 ms | 3.0 ms | 1.50x | 0.75 | 1.00 |" in markdown  # torch is the fastest peer
    assert "| vectorized | NumPy | 45.0 ms | 4.5 ms | 1.00x | 1.12 | 1.50 |" in markdown  # 45 / 30
    assert "| jax autodiff | jax.Array | 48.0 ms | 4.8 ms | 0.94x | 1.20 | 1.60 |" in markdown
    assert "| np.exp floor | NumPy | 40.0 ms | 4.0 ms | 1.12x | - | - |" in markdown  # floors are not ratioed


def test_the_overview_puts_peers_beside_the_variants_with_the_ratios(tmp_path):
    rows = overview(load(fake_json(tmp_path, extra=PEERS)), "float64").splitlines()
    assert rows[0] == (
        "| workload | per_element | per_row | vectorized | compiled core | compiled (device) | torch | jax autodiff "
        "| np.exp floor | copy floor | row-sum floor | jnp.exp floor | ours / fastest peer "
        "| compiled (device) / jax autodiff |"
    )
    # ours: the fastest public call (compiled on the device, 13 ms) over the fastest peer (torch, 30 ms)
    assert rows[2].startswith("| softmax_loss 100x100 | 9.0 ms | skipped | 200.0 us |")
    assert rows[3].endswith("| 30.0 ms | 48.0 ms | 40.0 ms | 10.0 ms | 4.0 ms | 5.0 ms | 0.43 | 0.27 |")


def test_without_torch_the_tables_say_why_its_rows_are_missing(tmp_path):
    note = "torch is not installed (pip install 'softmax-grad[torch]'): its rows are skipped"
    timings = load(fake_json(tmp_path, missing_peers={"torch": note}))
    assert f"| torch |  | skipped: {note} |" in table(timings)
    assert "| torch |" not in overview(timings, "float64")  # no column for a peer that never ran


def test_the_floors_set_textbook_against_tuned_when_a_tuned_variant_exists(tmp_path):
    variants = ("per_element", "per_row", "vectorized", "tuned")
    timings = load(fake_json(tmp_path, variants, extra=[("tuned", "numpy", 0.015)]))
    lines = floors(timings).splitlines()
    assert lines[0].endswith("| vectorized / floor | tuned / floor | vectorized / tuned |")
    assert "| 4096x1000 float64 | 40.0 ms | 10.0 ms | 4.0 ms | 4.00 | exp (compute) | 1.12 | 0.38 | 3.00 |" in lines
    assert "| tuned | NumPy | 15.0 ms |" in table(timings)
    assert "| per_element | NumPy | skipped: over the loop budget |" in table(timings)


def test_summary_puts_every_workload_in_one_row(tmp_path):
    timings = load(fake_json(tmp_path))
    numpy_rows = summary(timings, "numpy", "float64").splitlines()
    assert numpy_rows[0].startswith(
        "| workload | per_element | per_row | vectorized | np.exp floor | copy floor | row-sum floor |"
    )
    assert "| softmax_loss 4096x1000 | skipped | 120.0 ms | 45.0 ms | 40.0 ms | 10.0 ms | 4.0 ms | 1.12 |" in numpy_rows
    assert "| softmax_loss 100x100 | 9.0 ms | skipped | 200.0 us | 50.0 us | 100.0 us | - | 2.00 |" in numpy_rows
    assert "| softmax_loss 4096x1000 | 12.0 ms | 48.0 ms | 5.0 ms | 4.00x |" in summary(timings, "jax", "float64")


def test_floors_name_the_larger_pass_and_what_bounds_the_machine(tmp_path):
    lines = floors(load(fake_json(tmp_path))).splitlines()
    assert lines[0] == (
        "| workload | np.exp floor | copy floor | row-sum floor | exp / copy | bound by | vectorized / floor |"
    )
    assert "| 100x100 float64 | 50.0 us | 100.0 us | - | 0.50 | memory | 2.00 |" in lines
    assert "| 4096x1000 float64 | 40.0 ms | 10.0 ms | 4.0 ms | 4.00 | exp (compute) | 1.12 |" in lines


def test_the_report_shows_the_loop_speedup_at_100x100(tmp_path):
    assert (
        loop_speedups(load(fake_json(tmp_path))) == "- softmax_loss 100x100 float64: vectorized is 45x over per_element"
    )
    markdown, _ = render(fake_json(tmp_path), tmp_path / "out")
    assert "## The machine's floors, measured in this run" in markdown and "45x over per_element" in markdown


def test_render_writes_report_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    _, message = render(fake_json(tmp_path), tmp_path / "out", "Machine: test")
    assert (tmp_path / "out" / "report.md").read_text().startswith("# softmax-grad benchmarks\n\nMachine: test")
    assert (tmp_path / "out" / "softmax_loss.png").stat().st_size > 1000
    assert "plot written" in message


def test_without_matplotlib_the_table_still_comes_and_the_plot_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    markdown, message = render(fake_json(tmp_path), tmp_path / "out")
    assert "speedup vs" in markdown and (tmp_path / "out" / "report.md").is_file()
    assert not (tmp_path / "out" / "softmax_loss.png").exists()
    assert message.startswith("plot skipped: matplotlib is not installed")


def test_bench_prints_a_short_float64_summary_and_leaves_the_rest_to_the_report(tmp_path):
    from softmax_grad.cli import terminal_summary

    text = terminal_summary(fake_json(tmp_path, extra=PEERS))
    assert text.startswith("float64, median per call:") and "| torch | jax autodiff |" in text
    assert "softmax_loss 4096x1000" in text and "###" not in text  # no per-workload tables
    assert len(text.splitlines()) < len(table(load(fake_json(tmp_path))).splitlines())


def test_linear_cross_entropy_memory_sits_beside_time(tmp_path):
    def bench(contender, kind, minimum, memory):
        info = {
            "kind": kind, "function": "linear_cross_entropy", "shape": [8, 4, 1000], "dtype": "float32",
            "contender": contender, "scores_elements": 8000, "variants": [],
            "working_memory_bytes": memory, "logits_bytes": 32000,
        }  # fmt: skip
        stats = {"min": minimum, "median": 1.1 * minimum, "iqr": 0.0, "rounds": 3}
        return {"group": "linear_cross_entropy 8x4x1000 float32", "extra_info": info, "stats": stats}

    benchmarks = [
        bench("numpy dense", "numpy lce", 2.0, 64 * 2**20),
        bench("vectorized", "numpy lce", 2.5, 4 * 2**20),
        bench("jax autodiff", "jax lce", 1.0, 100 * 2**20),
        bench("compiled core", "jax lce", 1.2, 5 * 2**20),
        bench("torch dense", "torch lce", 1.6, 700 * 2**20),
        bench("torch chunked", "torch lce", 4.0, 70 * 2**20),
    ]
    path = tmp_path / "lce.json"
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    markdown, _ = render(path, tmp_path / "out")
    assert "## Linear cross-entropy: time and working memory" in markdown
    # each against the dense form of its own framework, and all against the fastest peer (JAX autodiff, 1.0 s)
    assert "| vectorized | NumPy | 2.50 s | 2.75 s | 4.0 MiB | 1.25 | 0.062 | 2.50 |" in markdown
    assert "| compiled core | jax.Array | 1.20 s | 1.32 s | 5.0 MiB | 1.20 | 0.050 | 1.20 |" in markdown
    assert "| torch chunked | torch, CPU | 4.00 s | 4.40 s | 70.0 MiB | 2.50 | 0.100 | 4.00 |" in markdown


def test_the_report_header_names_the_cpu_its_simd_and_the_versions_timed():
    import numpy as np
    from numpy._core._multiarray_umath import __cpu_features__ as features

    from softmax_grad.cli import _machine

    header = _machine()
    assert header.startswith("Machine: ") and "cores" in header
    assert f"numpy {np.__version__}" in header and "jax " in header
    expected = "AVX-512" if features.get("AVX512F") else "AVX2" if features.get("AVX2") else None
    if expected is not None:
        assert expected in header, header
