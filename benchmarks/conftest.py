"""``--bench-size quick|full`` picks the workloads (``softmax-grad bench --quick`` passes quick)."""

from __future__ import annotations


def pytest_addoption(parser):
    parser.addoption(
        "--bench-size", choices=("quick", "full"), default="full", help="benchmark workloads (default: full)"
    )


def pytest_generate_tests(metafunc):
    if "workload" in metafunc.fixturenames:
        from benchmarks.workloads import SIZES

        sizes = SIZES[metafunc.config.getoption("--bench-size")]
        workloads = [(function, shape) for function in metafunc.module.FUNCTIONS for shape in sizes[function]]
        metafunc.parametrize("workload", workloads, ids=[f"{f}-{'x'.join(map(str, s))}" for f, s in workloads])
