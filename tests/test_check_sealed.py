"""The target runs apart: nothing it does (exit, atexit, threads, patching, signals, lies) decides the verdict.

Every hostile check runs in one driver process of its own, never in pytest's:
if the checker's child ever stopped fencing a target, ``os._exit(0)`` would
end pytest itself with status 0. The driver prints one JSON line per check and
``DONE`` at the end; a missing line, a missing ``DONE`` or a driver that never
returns (a thread left running) fails the tests below.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reference.checker import CheckError, check
from tests.targets import hostile

ROOT = Path(__file__).resolve().parent.parent

DRIVER = r"""
import contextlib, io, json, sys
from reference.checker import CheckError, check
from softmax_grad.cli import main
from tests.targets import hostile

def api(name, fn, **options):
    try:
        report = check(fn, "scores", **options)
        first = report.first_failure
        seen = {"passed": report.passed, "statuses": [c.status for c in report.cases],
                "first": first.messages if first else [], "last": report.cases[-1].messages,
                "notes": sorted({n for c in report.cases for n in c.notes})}
    except CheckError as exc:
        seen = {"error": str(exc)}
    print(json.dumps({"api " + name: seen}), flush=True)

def cli(name, target, *extra):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["check", target, "--kind", "scores", "--json", *extra])
    passed = json.loads(out.getvalue())["passed"] if out.getvalue() else None
    print(json.dumps({"cli " + name: {"status": status, "passed": passed, "stderr": err.getvalue()}}), flush=True)

T = "tests/targets/hostile.py:"
api("os._exit in the call", hostile.exits_in_the_call)
api("atexit", hostile.exits_at_exit)
api("thread", hostile.leaves_a_thread)
api("patch", hostile.patches_the_compare)
api("segfault", hostile.crashes)
api("lies", hostile.lies)
api("main thread", hostile.needs_the_main_thread)
api("hang", hostile.hangs_on_two_classes, timeout=2.0)
api("import", "tests/targets/exits_at_import.py:f")
api("inf", hostile.right, timeout=float("inf"))
cli("os._exit in the call", T + "exits_in_the_call")
cli("atexit", T + "exits_at_exit")
cli("thread", T + "leaves_a_thread")
cli("patch", T + "patches_the_compare")
cli("import", "tests/targets/exits_at_import.py:f")
cli("inf", T + "right", "--timeout", "inf")
print("DONE", flush=True)
"""


@pytest.fixture(scope="module")
def driven() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # The limit is a guard against a driver that never ends (what a thread left running did), not a timing test.
    done = subprocess.run([sys.executable, "-c", DRIVER], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines and lines[-1] == "DONE", done.stdout[-2000:] + done.stderr[-3000:]
    seen: dict = {}
    for line in lines[:-1]:
        seen |= json.loads(line)
    return seen


@pytest.mark.parametrize(
    ("name", "passed", "first"),
    [
        ("os._exit in the call", False, "exited with status 0 during the call"),
        ("atexit", False, "dscores: values differ"),
        ("thread", True, None),
        ("patch", False, "dscores: values differ"),
        ("segfault", False, "was killed by SIGSEGV during the call"),
        ("lies", False, "sent a malformed message"),
        ("main thread", True, None),
        ("hang", False, "did not return within 2 s"),
        ("inf", True, None),
    ],
)
def test_from_python_a_hostile_target_gets_the_verdict_its_numbers_deserve(driven, name, passed, first):
    seen = driven[f"api {name}"]
    assert seen["passed"] is passed, seen
    if first is not None:
        assert any(first in message for message in seen["first"]), seen["first"]
    assert "the function ran in a child process" not in seen["notes"]  # where it ran is the header's, not a note


def test_a_dead_hung_or_lying_child_stops_the_check_with_a_sentence_for_the_rest(driven):
    for name, why in [("os._exit in the call", "ended its process"), ("hang", "hung on 'C=2'"),
                      ("lies", "broke the checker's protocol")]:  # fmt: skip
        statuses = driven[f"api {name}"]["statuses"]
        first = statuses.index("FAIL")
        assert set(statuses[first:]) == {"FAIL"}, (name, statuses)
        last = driven[f"api {name}"]["last"]
        assert len(last) == 1 and last[0].startswith("not run: ") and why in last[0], (name, last)
    assert driven["api hang"]["statuses"][0] == "pass"  # N=1 ran before the hang


@pytest.mark.parametrize(
    ("name", "status"),
    [("os._exit in the call", 1), ("atexit", 1), ("thread", 0), ("patch", 1), ("import", 2), ("inf", 0)],
)
def test_from_the_command_a_hostile_target_gets_the_right_exit_status(driven, name, status):
    seen = driven[f"cli {name}"]
    assert seen["status"] == status, seen
    assert seen["passed"] is {0: True, 1: False, 2: None}[status]


def test_a_module_ending_its_process_at_import_cannot_be_loaded(driven):
    expected = "exits_at_import.py:f ended the process that loads it: it exited with status 0"
    assert expected in driven["api import"]["error"]
    assert "ended the process that loads it" in driven["cli import"]["stderr"]


# ------------------------------------------------------------------ in this process, harmless targets only
def test_the_right_answer_passes_apart_and_a_lambda_runs_here_with_a_note():
    sealed = check(hostile.right, "scores")
    assert sealed and sealed.ran == "in a child process", str(sealed)
    here = check(lambda S, y: hostile.right(S, y), "scores", timeout=math.inf)
    assert here and here.ran.startswith("in the checker's own process"), str(here)


def test_a_bad_timeout_is_refused_and_inf_is_not_an_overflow():
    with pytest.raises(ValueError, match="timeout must be > 0 seconds"):
        check(hostile.right, "scores", timeout=float("nan"))
    assert check(hostile.right, "scores", timeout=1e12)  # past threading's limit of about 9.2e9 s


def test_a_spec_string_is_loaded_by_the_child_only():
    report = check("tests/targets/hostile.py:right", "scores")
    assert report and report.framework == "numpy"
    with pytest.raises(CheckError, match="no such file"):
        check("tests/targets/nowhere.py:f", "scores")
