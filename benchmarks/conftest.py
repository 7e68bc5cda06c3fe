"""``--bench-size quick|full`` picks the workloads (``softmax-grad bench --quick`` passes quick).

Without the option, a run that times (``--benchmark-enable``) takes the full workloads, and the smoke run
of plain ``pytest`` (benchmarks disabled, each run once) the quick ones: the same contenders and code
paths (tuned's many row blocks from 4096x1000 on), without the largest arrays.
"""

from __future__ import annotations


def pytest_addoption(parser):
    parser.addoption(
        "--bench-size",
        choices=("quick", "full"),
        default=None,
        help="benchmark workloads (default: full when timing, quick for the smoke run of plain pytest)",
    )


def bench_size(config) -> str:
    """The workloads asked for, else ``quick`` for the smoke run and ``full`` for a timed one."""
    size = config.getoption("--bench-size")
    if size is not None:
        return size
    smoke = config.getoption("benchmark_disable") and not config.getoption("benchmark_enable")
    return "quick" if smoke else "full"


def pytest_generate_tests(metafunc):
    if "workload" in metafunc.fixturenames:
        from benchmarks.workloads import SIZES

        sizes = SIZES[bench_size(metafunc.config)]
        workloads = [(function, shape) for function in metafunc.module.FUNCTIONS for shape in sizes[function]]
        metafunc.parametrize("workload", workloads, ids=[f"{f}-{'x'.join(map(str, s))}" for f, s in workloads])
