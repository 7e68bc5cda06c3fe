"""The checker of a user's function: right implementations pass, each fault is caught and named.

Implementations are written here the way a student or a framework author would,
not with the suite's code, and run through both the Python API and the command.
A checker that always passed would fail the fault tests; one that always failed
would fail the right-implementation tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from reference.checker import CheckError, check, load_target, rerun
from reference.checker.battery import CORRECTNESS, ROBUSTNESS, battery
from softmax_grad.cli import main
from tests.targets.numpy_targets import (
    WEIGHT,
    assumes_c_order,
    canonical,
    gradient_of_another_function,
    linear_ce,
    linear_course,
    linear_derivation,
    linear_naive,
    missing_key,
    no_reg_gradient,
    not_a_pair,
    off_by_a_tenth_of_a_percent,
    penalty_disagrees,
    raises,
    scores_mean,
    scores_sum,
    shifted_by,
    sign_flipped,
    two_layer,
    unshifted,
    weighted_smoothed,
    writes_into_scores,
    wrong_from_n_20,
    wrong_loss,
    wrong_only_at_n_1,
    wrong_shape,
)


def failures(report):
    return [case.name for case in report.cases if case.status == "FAIL"]


def messages(report):
    return [m for case in report.cases for m in case.messages]


# ------------------------------------------------------------------ right answers pass
@pytest.mark.parametrize(
    ("fn", "kind", "options"),
    [
        (scores_mean, "scores", {}),
        (scores_sum, "scores", {"reduction": "sum"}),
        (linear_derivation, "linear", {}),
        (linear_course, "linear", {"reg_scale": 1.0}),
        (linear_naive, "linear", {"reg_scale": 1.0}),
        (two_layer, "two_layer", {}),
        (lambda p, X, y, reg: two_layer(p, X, y, reg, relu_open=np.greater_equal), "two_layer", {}),
    ],
    ids=["scores mean", "scores sum", "linear 0.5", "linear 1", "linear loops", "two-layer", "relu'(0)=1"],
)
def test_right_implementations_pass(fn, kind, options):
    report = check(fn, kind, **options)
    assert report.passed and not report.warned, report.format()
    assert len(report.cases) >= 10


def test_the_canonical_course_solution_passes_with_a_warning_that_teaches():
    report = check(canonical, "linear", reg_scale=1.0)
    assert report.passed, report.format()
    assert [(c.name, c.tier) for c in report.warned] == [("logit spread 1000", ROBUSTNESS)]
    warning = report.warned[0].warnings[0]
    assert "the loss is inf but the gradient is right (dW matches to" in warning
    assert "underflows to 0" in warning and "log-sum-exp" in warning and "eq. 15" in warning
    assert "verdict: pass, with warnings" in report.format()
    strict = check(canonical, "linear", reg_scale=1.0, strict=True)
    assert not strict and strict.first_failure.name == "logit spread 1000"


def test_a_finite_wrong_loss_fails_even_on_a_robustness_case():
    def clipped(W, X, y, reg):  # -log(p + 1e-300): finite, and 690 where the loss is 1000
        _, dW = canonical(W, X, y, reg)
        N = X.shape[0]
        S = X @ W
        S = S - S.max(axis=1, keepdims=True)
        p = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)
        return -np.log(p[np.arange(N), y] + 1e-300).mean() + reg * np.sum(W * W), dW

    report = check(clipped, "linear", reg_scale=1.0)
    assert failures(report) == ["logit spread 1000"] and not report.warned


def test_relu_derivative_one_at_zero_is_accepted_with_a_note_only_where_z1_has_zeros():
    report = check(lambda p, X, y, reg: two_layer(p, X, y, reg, relu_open=np.greater_equal), "two_layer")
    noted = [c.name for c in report.cases if any("relu'(0) = 1" in n and "accepted" in n for n in c.notes)]
    assert noted == ["dead ReLU units (exact zeros in Z1)"]
    assert "relu'(0)" not in str(check(two_layer, "two_layer"))  # relu'(0) = 0, eq. (10)'s choice: nothing to note


def test_a_loss_as_a_one_element_array_is_accepted_with_a_note():
    report = check(lambda S, y: (np.array([scores_mean(S, y)[0]]), scores_mean(S, y)[1]), "scores")
    assert report.passed, report.format()
    assert all("shape (1,); its one value was taken" in " ".join(c.notes) for c in report.cases)


# ------------------------------------------------------------------ faults are caught and named
@pytest.mark.parametrize(
    ("fn", "kind", "options", "expected"),
    [
        (off_by_a_tenth_of_a_percent, "scores", {}, "dscores: values differ"),
        (wrong_loss, "scores", {}, "loss: values differ"),
        (raises, "scores", {}, "the function raised ValueError: binary case not handled"),
        (writes_into_scores, "scores", {}, "the function wrote into its argument scores"),
        (wrong_shape, "scores", {}, "dscores: shape"),
        (missing_key, "two_layer", {}, "grads is missing 'b2'"),
        (not_a_pair, "scores", {}, "returned ndarray, expected f(scores, y) -> (loss, dscores)"),
        (linear_course, "linear", {}, "dW matches the reg_scale=1.0 convention"),
        (linear_derivation, "linear", {"reg_scale": 1.0}, "dW matches the reg_scale=0.5 convention"),
        (no_reg_gradient, "linear", {}, "dW lacks the penalty term"),
        (scores_sum, "scores", {}, "dscores matches reduction='sum': N = 6 times the mean's"),
        (scores_mean, "scores", {"reduction": "sum"}, "dscores matches reduction='mean'"),
        (sign_flipped, "scores", {}, "dscores has the wrong sign"),
        (off_by_a_tenth_of_a_percent, "scores", {}, "dscores is 1.001 times the right one"),
        (gradient_of_another_function, "scores", {}, "the loss is right but dscores is not its gradient"),
    ],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", None),
)
def test_each_fault_is_caught_and_named(fn, kind, options, expected):
    report = check(fn, kind, **options)
    assert not report.passed
    assert any(expected in m for m in messages(report)), "\n".join(messages(report))


def test_the_unshifted_formula_fails_on_a_nan_gradient():
    with np.errstate(all="ignore"):
        report = check(unshifted, "scores")
    masked = ["vocabulary padded with -inf (4717 classes of 4799)", "per-row masks (-inf), as constrained decoding"]
    # the masked cases' rows sit up to 1000 below 0 (battery.MASK_OFFSETS): exp underflows there too
    assert failures(report) == ["rows 1000 apart in offset", *masked, "logit spread 1000"]
    assert any("dscores: non-finite value nan" in m for m in report.cases[-1].messages)


@pytest.mark.parametrize(
    ("shift", "failing"),
    [
        (lambda S: S - S.max(), "rows 1000 apart in offset"),  # one global max: far-off rows underflow to 0 / 0
        (lambda S: S - S.mean(axis=1, keepdims=True), "logit spread 1000"),  # max 800 above the mean overflows
    ],
    ids=["global max", "row mean"],
)
def test_a_shift_that_is_not_the_row_max_fails(shift, failing):
    with np.errstate(all="ignore"):
        report = check(shifted_by(shift), "scores")
    assert failing in failures(report)


def test_bugs_from_n_20_on_and_on_odd_layouts_are_caught():
    assert {"N=48"} <= set(failures(check(wrong_from_n_20, "scores")))
    assert failures(check(assumes_c_order, "scores")) == ["Fortran-ordered scores", "non-contiguous scores"]


def test_a_transposed_dw1_is_caught_on_square_layers():
    report = check(lambda p, X, y, reg: two_layer(p, X, y, reg, transpose_square_dW1=True), "two_layer")
    assert "square layers (D = H = C)" in failures(report)
    assert all(
        len(set(c.inputs["params"]["W1"].shape)) == 1 for c in battery("two_layer", 0) if c.name in failures(report)
    )
    square = next(c for c in report.cases if c.name.startswith("square"))
    assert any(m.startswith("W1 is transposed") for m in square.messages)


def test_no_reduction_hint_where_mean_and_sum_agree():
    report = check(wrong_only_at_n_1, "scores")
    assert failures(report) == ["N=1"]
    assert not any("reduction" in m for m in report.first_failure.messages)
    assert check(scores_sum, "scores").cases[0].status == "pass"  # at N = 1 the sum is the mean


def test_the_first_failure_shows_the_function_s_traceback():
    report = check(raises, "scores")
    assert "binary case not handled" in report.first_failure.traceback
    assert "in raises" in report.format() and "checker/runner.py" not in report.first_failure.traceback


def test_a_raising_function_fails_its_case_and_the_others_still_run():
    report = check(raises, "scores")
    verdicts = {case.name: case.passed for case in report.cases}
    assert verdicts["C=2"] is False and verdicts["N=1"] is True and verdicts["ties"] is True


def test_the_wrong_signature_is_refused_before_any_case():
    with pytest.raises(CheckError, match=r"cannot be called as f\(W, X, y, reg\)"):
        check(scores_mean, "linear")


def test_assert_passed_raises_with_the_first_failing_line_first_then_the_verdict():
    check(scores_mean, "scores").assert_passed()
    report = check(scores_sum, "scores")
    with pytest.raises(AssertionError, match="first failing case: 'C=2'") as raised:
        report.assert_passed()
    first_line = str(raised.value).splitlines()[0]  # what pytest's summary line shows
    assert first_line.startswith("case 'C=2' (correctness) fails: loss: values differ at index"), first_line
    assert str(report) == report.format() and str(report).endswith("verdict: FAIL")


def test_the_error_columns_count_a_wrong_loss():
    report = check(wrong_loss, "scores")  # gradients right to 1e-17, the loss off by 1e-6
    assert all(c.status == "FAIL" and c.max_abs_error > 0.9e-6 for c in report.cases if c.tier == "correctness")


# ------------------------------------------------------------------ linear cross-entropy
def test_linear_ce_with_and_without_bias():
    report = check(linear_ce, "linear_ce")
    assert report.passed and any(c.name.startswith("a wide vocabulary") for c in report.cases), report.format()

    def no_bias(X, W, y):
        loss, grads = linear_ce(X, W, y, np.zeros(W.shape[1]))
        return loss, {"X": grads["X"], "W": grads["W"]}

    assert check(no_bias, "linear_ce").passed

    def dx_summed(X, W, y, bias):
        loss, grads = linear_ce(X, W, y, bias)
        return loss, {**grads, "X": grads["X"] * len(y)}

    report = check(dx_summed, "linear_ce")
    assert not report and "X matches reduction='sum': N = 8 times the mean's" in report.first_failure.messages[-1]


# ------------------------------------------------------------------ the battery
def test_every_case_has_a_tier_and_the_battery_covers_what_it_must():
    for kind in ("scores", "linear", "two_layer", "linear_ce"):
        cases = battery(kind, 0)
        assert {c.tier for c in cases} == {CORRECTNESS, ROBUSTNESS}
        assert [c.name for c in cases if c.tier == ROBUSTNESS] == ["logit spread 1000"]
        assert max(len(c.labels) for c in cases) >= 48
        assert {c.layout for c in cases} == {"C", "F", "strided"}
    assert any(c.name.startswith("square") for c in battery("two_layer", 0))
    regs = {c.inputs["reg"] for c in battery("linear", 0)}
    assert len(regs - {0.0}) >= 3
    def random_shapes(seed):
        return [c.inputs["scores"].shape for c in battery("scores", seed) if c.name.startswith("random")]

    assert random_shapes(1) != random_shapes(2)


def test_ignored_rows_appear_and_every_row_ignored_is_robustness_only():
    cases = battery("scores", 0, ignore_index=-100)
    assert all((c.labels == -100).any() for c in cases if len(c.labels) > 1)
    last = cases[-1]
    assert last.name == "every row ignored" and last.tier == ROBUSTNESS and (last.labels == -100).all()


# ------------------------------------------------------------------ dtype and options
def test_float32_is_judged_by_its_rounding_error_bound():
    def in_float32(scores, y, factor=1.0):
        assert scores.dtype == np.float32
        loss, d = scores_mean(scores, y)
        return loss, (d * np.float32(factor)).astype(np.float32)

    report = check(in_float32, "scores", dtype="float32")
    assert report.passed, report.format()
    assert "judged by rounding-error bounds in float32" in report.format() and "of its bound" in report.format()
    assert not check(lambda S, y: in_float32(S, y, 1.01), "scores", dtype="float32")


@pytest.mark.parametrize("form", ["list", "npy"])
def test_command_takes_class_weights_as_a_list_or_a_npy_file(tmp_path, capsys, form):
    weight = "1,2,0.5,1.5,0.25" if form == "list" else str(tmp_path / "w.npy")
    np.save(tmp_path / "w.npy", WEIGHT)
    target = "tests/targets/numpy_targets.py:weighted_smoothed"
    common = ["check", target, "--kind", "scores", "--label-smoothing", "0.1", "--ignore-index", "-100", "--json"]
    with np.errstate(invalid="ignore"):
        assert main([*common, "--weight", weight]) == 0, capsys.readouterr().out[-2000:]
        assert json.loads(capsys.readouterr().out)["options"]["weight"] == WEIGHT.tolist()
        assert main(common) == 1  # the same function without its weights given: its loss is not the plain one
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*common, "--weight", "1,two"])
    assert "expected numbers separated by commas" in capsys.readouterr().err


def test_options_are_applied_by_the_oracle():
    options = {"weight": WEIGHT, "label_smoothing": 0.1, "ignore_index": -100}
    with np.errstate(invalid="ignore"):  # every row ignored: 0 / 0, as the definition says
        report = check(weighted_smoothed, "scores", **options)
    assert report.passed, report.format()
    assert not check(weighted_smoothed, "scores", **{**options, "label_smoothing": 0.0})


# ------------------------------------------------------------------ hostile targets
def test_sys_exit_inside_the_function_fails_every_case():
    report = check(lambda S, y: sys.exit(0), "scores")
    assert not report and all("called sys.exit(0)" in c.messages[0] for c in report.cases)


def test_a_hung_function_fails_and_the_rest_is_not_run():
    release = threading.Event()

    def hangs(scores, y):
        if scores.shape[1] == 2:
            release.wait(30)
        return scores_mean(scores, y)

    try:
        report = check(hangs, "scores", timeout=0.3)
    finally:
        release.set()
    assert failures(report)[0] == "C=2" and "did not return within 0.3 s" in report.first_failure.messages[0]
    assert all(c.messages == ["not run: the function hung on 'C=2'"] for c in report.cases[2:])


def test_printing_is_noted_not_shown(capsys):
    def chatty(scores, y):
        print("debug", scores.shape)
        return scores_mean(scores, y)

    report = check(chatty, "scores")
    assert report.passed and capsys.readouterr().out == ""
    assert "the function printed 1 line(s), first: 'debug (1, 5)'" in report.cases[0].notes


def test_popping_params_and_ragged_gradients_are_verdicts():
    def pops(params, X, y, reg):
        W1 = params.pop("W1")
        return two_layer({**params, "W1": W1}, X, y, reg)

    report = check(pops, "two_layer")
    assert "the function removed params['W1'] from the caller's mapping (a pop or del)" in report.cases[0].messages

    def ragged(scores, y):
        return 0.0, [[1.0, 2.0], [3.0]]

    assert "dscores could not be read as an array" in check(ragged, "scores").cases[0].messages[0]


@pytest.mark.parametrize("returned", [None, "loss", {"loss": 1.0}], ids=repr)
def test_results_of_the_wrong_type_fail_clearly(returned):
    report = check(lambda S, y: returned, "scores")
    assert not report and "expected f(scores, y) -> (loss, dscores)" in report.cases[0].messages[0]


# ------------------------------------------------------------------ the command
def write(tmp_path, source: str, name: str = "mine.py"):
    path = tmp_path / name
    path.write_text("import numpy as np\n\n" + textwrap.dedent(source))
    return path


COURSE_SOURCE = """
def softmax_loss_vectorized(W, X, y, reg):
    N = X.shape[0]
    scores = X @ W
    scores = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(N), y]).mean() + reg * np.sum(W * W)
    probs[np.arange(N), y] -= 1
    return loss, X.T @ probs / N + 2 * reg * W


def broken(W, X, y, reg):
    raise RuntimeError("not written yet")
"""


def test_command_passes_the_course_solution_with_a_warning_and_exit_0(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a failure would save its case here, not in the repository
    target = f"{write(tmp_path, COURSE_SOURCE)}:softmax_loss_vectorized"
    assert main(["check", target, "--kind", "linear", "--reg-scale", "1"]) == 0
    assert "WARNING on 'logit spread 1000'" in capsys.readouterr().out
    assert main(["check", target, "--kind", "linear", "--reg-scale", "1", "--strict"]) == 1


def test_command_fails_with_exit_1_and_the_rerun_works_with_this_interpreter(tmp_path, capsys):
    path = write(tmp_path, COURSE_SOURCE)
    save = tmp_path / "not" / "yet" / "there"
    assert main(["check", f"{path}:broken", "--kind", "linear", "--save", str(save)]) == 1
    out = capsys.readouterr().out
    saved = save / "softmax-grad-failure.npz"
    assert saved.is_file() and sys.executable in out and "RuntimeError: not written yet" in out
    command = out.split("to rerun that case:\n  ")[1].splitlines()[0]
    still = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)
    assert still.returncode == 1 and "RuntimeError: not written yet" in still.stdout
    assert "Traceback" in still.stdout and 'raise RuntimeError("not written yet")' in still.stdout
    fixed = subprocess.run(
        [sys.executable, "-m", "reference.checker", str(saved), f"{path}:softmax_loss_vectorized"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert fixed.returncode == 0 and "pass" in fixed.stdout and not fixed.stderr
    assert not rerun(saved, load_target(f"{path}:broken")).passed


def test_save_where_no_folder_can_be_made_exits_2_before_running(tmp_path, capsys):
    path = write(tmp_path, COURSE_SOURCE)
    (tmp_path / "file").write_text("")
    assert main(["check", f"{path}:broken", "--kind", "linear", "--save", str(tmp_path / "file" / "x")]) == 2
    captured = capsys.readouterr()
    assert "cannot create the folder" in captured.err and captured.out == ""


def test_command_json_is_standard(tmp_path, capsys):
    path = write(tmp_path, COURSE_SOURCE)
    assert main(["check", f"{path}:broken", "--kind", "linear", "--json"]) == 1

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    data = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert data["passed"] is False and data["kind"] == "linear" and len(data["cases"]) >= 10
    case = data["cases"][0]
    assert case["max_abs_error"] is None and case["max_abs_error_is"] == "NaN" and case["passed"] is False


def test_a_module_calling_sys_exit_at_import_exits_2(tmp_path, capsys):
    path = write(tmp_path, "import sys\n\nsys.exit(0)\n\ndef f(scores, y):\n    return 0.0, scores\n", "exits.py")
    assert main(["check", f"{path}:f", "--kind", "scores"]) == 2
    assert "called sys.exit(0)" in capsys.readouterr().err


def test_sys_exit_in_the_call_exits_1_from_the_command(tmp_path, capsys):
    path = write(tmp_path, "import sys\n\ndef f(scores, y):\n    sys.exit(0)\n")
    assert main(["check", f"{path}:f", "--kind", "scores", "--json"]) == 1


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing.py:f", "no such file"),
        ("{path}:nope", "has no 'nope'"),
        ("{path}", "TARGET must be"),
        ("no_such_module_here:f", "importing no_such_module_here failed"),
        ("{path}:softmax_loss_vectorized --kind scores", "cannot be called as f(scores, y)"),
        ("{path}:softmax_loss_vectorized --label-smoothing 2", "label_smoothing must lie in [0, 1], got 2.0"),
    ],
    ids=["no file", "no function", "no colon", "no module", "wrong signature", "bad option"],
)
def test_command_exits_2_when_the_target_cannot_be_loaded_or_called(tmp_path, capsys, target, message):
    path = write(tmp_path, COURSE_SOURCE)
    words = target.format(path=path).split()
    kind = ["--kind", "linear"] if "--kind" not in words else []
    assert main(["check", *words, *kind, "--json"]) == 2
    assert message in capsys.readouterr().err


def test_load_target_accepts_module_paths():
    assert load_target("numpy:exp") is np.exp


def test_reference_check_is_the_checker():
    import reference

    report = reference.check(scores_mean, kind="scores")
    assert report and report.kind == "scores"


def test_reg_reaches_the_function_as_a_float():
    def insists_on_a_float(W, X, y, reg):
        assert type(reg) is float, type(reg)
        return linear_derivation(W, X, y, reg)

    assert check(insists_on_a_float, "linear").passed


def test_a_shape_failure_shows_as_nan_error_whatever_the_order_of_comparisons():
    def bad_db2(params, X, y, reg):  # b2 is compared last; its shape failure must still show
        loss, grads = two_layer(params, X, y, reg)
        return loss, {**grads, "b2": grads["b2"][:-1]}

    report = check(bad_db2, "two_layer")
    case = report.first_failure
    assert any("b2: shape" in m for m in case.messages)
    assert np.isnan(case.max_abs_error) and np.isnan(case.max_rel_error)
    assert f"| {case.name} | {case.tier} | FAIL | shape | shape |" in str(report)


def test_the_suites_own_linear_cross_entropy_passes_the_checker():
    # Two oracles that share reference/losses.py but no code path: the checker's batched autodiff and
    # reference.linear_cross_entropy, each on its own options.
    import reference

    def fn(X, W, y, bias):
        chunk = 3 if W.shape[1] < 100 else 1000  # several chunks and a tail, on every case
        return reference.linear_cross_entropy(X, W, y, bias=bias, label_smoothing=0.1, z_loss=1e-4, chunk_size=chunk)

    reference.check(fn, "linear_ce", label_smoothing=0.1, z_loss=1e-4).assert_passed()


# ------------------------------------------------------------------ diagnoses that must not mislead
@pytest.mark.parametrize("reg_scale", [1.0, 0.5])
def test_a_loss_and_gradient_on_different_penalties_are_told_so_not_sent_to_another_reg_scale(reg_scale):
    report = check(penalty_disagrees, "linear", reg_scale=reg_scale)
    said = messages(report)
    assert not report and any("the loss and dW disagree on the penalty" in m for m in said), said
    assert any("the loss has R = 1 * reg * sum W^2; dW is the gradient of R = 0.5 * reg" in m for m in said), said
    assert not any("--reg-scale 0.5 if" in m or "--reg-scale 1 if" in m for m in said), said


def test_a_nan_from_one_max_over_the_batch_is_told_to_shift_each_row_by_its_own():
    with np.errstate(all="ignore"):
        report = check(shifted_by(lambda S: S - S.max()), "scores")
        by_row_mean = check(shifted_by(lambda S: S - S.mean(axis=1, keepdims=True)), "scores")
    far = next(c for c in report.cases if c.name == "rows 1000 apart in offset")
    assert any("shift each row by its own max, m_i = max_j s_ij (eq. 15)" in m for m in far.messages), far.messages
    spread = next(c for c in by_row_mean.cases if c.name == "logit spread 1000")
    assert spread.status == "FAIL" and not any("own max" in m for m in spread.messages)  # rows 210 apart: not it
