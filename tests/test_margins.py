"""``benchmarks.margins`` runs: one seed, one dtype, one kind, a correct target and two slips (a few seconds).

The full sweep (seeds 0-20, every kind, option and dtype) is a command, not a
test: ``python -m benchmarks.margins`` (docs/margins.md gives a measured run).
"""

from __future__ import annotations

from benchmarks.margins import MULTIPLE, main, sweep


def test_one_seed_of_the_sweep_passes_correct_code_and_catches_the_slips():
    table = sweep(seeds=[0], dtypes=["float32"], kinds=["scores"], options=["none"],
                  targets=["torch", "manual.vectorized"], mutants=["missing 1/N", "0.1% error (scores)"])  # fmt: skip
    for target in ("torch", "manual.vectorized"):
        margin = table.correct[("float32", target)]
        assert margin.checks == 1 and margin.failed == 0 and margin.largest < MULTIPLE, margin
    for slip in ("missing 1/N", "0.1% error (scores)"):
        for dtype in ("float64", "float32"):
            margin = table.mutants[(slip, dtype)]
            assert margin.checks == margin.failed == 1 and margin.smallest > MULTIPLE, (slip, dtype, margin)
    assert "| float32 | torch | 1 | 0 | 0 |" in table.format()


def test_the_command_prints_the_table(capsys):
    assert main(["--seeds", "0", "--dtypes", "float32", "--kinds", "scores", "--options", "none",
                 "--targets", "manual.vectorized", "--mutants", "--quiet"]) == 0  # fmt: skip
    assert "| float32 | manual.vectorized | 1 | 0 |" in capsys.readouterr().out
