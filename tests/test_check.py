"""The checker of a user's own function: right implementations pass, each fault is caught and named.

Implementations are written here the way a student or a framework author would,
not with the suite's code, and run through both the Python API and the command.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from reference.checker import CheckError, check, load_target, rerun
from softmax_grad.cli import main


# ------------------------------------------------------------------ implementations under test
def scores_mean(scores, y):
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    dscores = np.exp(log_p)
    dscores[rows, y] -= 1
    return -log_p[rows, y].mean(), dscores / len(y)


def scores_sum(scores, y):
    loss, dscores = scores_mean(scores, y)
    return loss * len(y), dscores * len(y)


def linear_course(W, X, y, reg):
    """The course convention: R = reg * sum W^2, so dW gets 2 reg W."""
    loss, dscores = scores_mean(X @ W, y)
    return loss + reg * np.sum(W * W), X.T @ dscores + 2 * reg * W


def linear_derivation(W, X, y, reg):
    """The derivation's convention: R = reg/2 * sum W^2."""
    loss, dscores = scores_mean(X @ W, y)
    return loss + 0.5 * reg * np.sum(W * W), X.T @ dscores + reg * W


def linear_naive(W, X, y, reg):
    """Loops over samples and classes, as in the course's softmax_loss_naive."""
    loss, dW = 0.0, np.zeros_like(W)
    for i in range(X.shape[0]):
        s = X[i] @ W
        s = s - s.max()
        p = np.exp(s) / np.exp(s).sum()
        loss += -s[y[i]] + np.log(np.exp(s).sum())
        for j in range(W.shape[1]):
            dW[:, j] += (p[j] - (j == y[i])) * X[i]
    N = X.shape[0]
    return loss / N + reg * np.sum(W * W), dW / N + 2 * reg * W


def two_layer(params, X, y, reg, relu_open=np.greater):
    Z1 = X @ params["W1"] + params["b1"]
    H1 = np.maximum(Z1, 0)
    loss, dS = scores_mean(H1 @ params["W2"] + params["b2"], y)
    dZ1 = (dS @ params["W2"].T) * relu_open(Z1, 0)
    grads = {
        "W1": X.T @ dZ1 + reg * params["W1"],
        "b1": dZ1.sum(0),
        "W2": H1.T @ dS + reg * params["W2"],
        "b2": dS.sum(0),
    }
    return loss + 0.5 * reg * (np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2)), grads


# ------------------------------------------------------------------ faults
def off_by_a_tenth_of_a_percent(scores, y):
    loss, d = scores_mean(scores, y)
    return loss, d * 1.001


def wrong_loss(scores, y):
    loss, d = scores_mean(scores, y)
    return loss + 1e-6, d


def no_max_shift(scores, y):
    with np.errstate(all="ignore"):  # the overflow is the fault under test, not noise
        e = np.exp(scores)
        p = e / e.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        loss = -np.log(p[rows, y]).mean()
    p[rows, y] -= 1
    return loss, p / len(y)


def raises(scores, y):
    if scores.shape[1] == 2:
        raise ValueError("binary case not handled")
    return scores_mean(scores, y)


def writes_into_scores(scores, y):
    scores -= scores.max(axis=1, keepdims=True)  # the second post's in-place shift
    return scores_mean(scores, y)


def wrong_shape(scores, y):
    loss, d = scores_mean(scores, y)
    return loss, d[:, :-1]


def missing_key(params, X, y, reg):
    loss, grads = two_layer(params, X, y, reg)
    del grads["b2"]
    return loss, grads


def relu_gate_at_zero(params, X, y, reg):
    return two_layer(params, X, y, reg, relu_open=np.greater_equal)


def not_a_pair(scores, y):
    return scores_mean(scores, y)[1]


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
    ],
    ids=["scores mean", "scores sum", "linear reg_scale 0.5", "linear reg_scale 1", "linear naive loops", "two-layer"],
)
def test_right_implementations_pass(fn, kind, options):
    report = check(fn, kind, **options)
    assert report.passed, report.format()
    assert len(report.cases) >= 6


# ------------------------------------------------------------------ faults are caught and named
@pytest.mark.parametrize(
    ("fn", "kind", "options", "expected"),
    [
        (off_by_a_tenth_of_a_percent, "scores", {}, "dscores: values differ"),
        (wrong_loss, "scores", {}, "loss: values differ"),
        (no_max_shift, "scores", {}, "non-finite value"),
        (raises, "scores", {}, "the function raised ValueError: binary case not handled"),
        (writes_into_scores, "scores", {}, "the function wrote into its argument scores"),
        (wrong_shape, "scores", {}, "dscores: shape"),
        (missing_key, "two_layer", {}, "grads is missing 'b2'"),
        (relu_gate_at_zero, "two_layer", {}, "b1: values differ"),
        (not_a_pair, "scores", {}, "expected f(scores, y) -> (loss, dscores)"),
        (linear_course, "linear", {}, "matches the reg_scale=1.0 convention"),
        (linear_derivation, "linear", {"reg_scale": 1.0}, "matches the reg_scale=0.5 convention"),
        (scores_sum, "scores", {}, "matches reduction='sum'"),
        (scores_mean, "scores", {"reduction": "sum"}, "matches reduction='mean'"),
    ],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", None),
)
def test_each_fault_is_caught_and_named(fn, kind, options, expected):
    report = check(fn, kind, **options)
    assert not report.passed
    messages = [m for case in report.cases for m in case.messages]
    assert any(expected in m for m in messages), "\n".join(messages)


def test_the_missing_max_shift_fails_exactly_on_the_large_logit_case():
    report = check(no_max_shift, "scores")
    assert [case.name for case in report.cases if not case.passed] == ["logit spread 1000"]


def test_a_raising_function_fails_its_case_and_the_others_still_run():
    report = check(raises, "scores")
    verdicts = {case.name: case.passed for case in report.cases}
    assert verdicts["C=2"] is False and verdicts["N=1"] is True and verdicts["ties"] is True


def test_the_wrong_signature_is_refused_before_any_case():
    with pytest.raises(CheckError, match=r"cannot be called as f\(W, X, y, reg\)"):
        check(scores_mean, "linear")


def test_the_failing_case_is_saved_and_reruns(tmp_path, capsys):
    path = tmp_path / "failure.npz"
    report = check(off_by_a_tenth_of_a_percent, "scores", save_failure=path)
    assert report.failure_file == str(path) and "rerun" in report.rerun
    result = rerun(path, off_by_a_tenth_of_a_percent)
    assert not result.passed and result.name == report.first_failure.name
    assert rerun(path, scores_mean).passed
    assert "FAIL" in capsys.readouterr().out


# ------------------------------------------------------------------ the command
def write(tmp_path, source: str):
    path = tmp_path / "mine.py"
    path.write_text("import numpy as np\n\n" + textwrap.dedent(source))
    return path


COURSE_SOURCE = """
def softmax_loss_vectorized(W, X, y, reg):
    scores = X @ W
    scores = scores - scores.max(axis=1, keepdims=True)
    log_sums = np.log(np.exp(scores).sum(axis=1))
    N = X.shape[0]
    loss = np.mean(log_sums - scores[np.arange(N), y]) + reg * np.sum(W * W)
    p = np.exp(scores - log_sums[:, None])
    p[np.arange(N), y] -= 1
    return loss, X.T @ p / N + 2 * reg * W
"""

# The same with the loss as -log(p_y): infinite once p_y underflows, even after the max shift.
LOG_OF_P_SOURCE = """
def softmax_loss_vectorized(W, X, y, reg):
    scores = X @ W
    scores = scores - scores.max(axis=1, keepdims=True)
    p = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    N = X.shape[0]
    loss = -np.log(p[np.arange(N), y]).mean() + reg * np.sum(W * W)
    p[np.arange(N), y] -= 1
    return loss, X.T @ p / N + 2 * reg * W
"""


def test_command_passes_a_right_function_with_exit_0(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a failure would save its case here, not in the repository
    path = write(tmp_path, COURSE_SOURCE)
    assert main(["check", f"{path}:softmax_loss_vectorized", "--kind", "linear", "--reg-scale", "1"]) == 0
    assert "cases pass" in capsys.readouterr().out


def test_command_fails_a_wrong_convention_with_exit_1_and_a_rerun_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, COURSE_SOURCE)
    target = f"{path}:softmax_loss_vectorized"
    assert main(["check", target, "--kind", "linear"]) == 1
    out = capsys.readouterr().out
    assert "matches the reg_scale=1.0 convention" in out
    assert (tmp_path / "softmax-grad-failure.npz").is_file()
    assert f"rerun('softmax-grad-failure.npz', {target!r})" in out
    assert not rerun(tmp_path / "softmax-grad-failure.npz", target).passed


def test_log_of_the_probability_fails_only_the_large_logit_case(tmp_path, capsys):
    path = write(tmp_path, LOG_OF_P_SOURCE)
    fn = load_target(f"{path}:softmax_loss_vectorized")
    with np.errstate(divide="ignore"):
        report = check(fn, "linear", reg_scale=1.0)
    assert [case.name for case in report.cases if not case.passed] == ["logit spread 1000"]
    assert "non-finite value inf" in report.first_failure.messages[0]


def test_command_json_output(tmp_path, capsys):
    path = write(tmp_path, COURSE_SOURCE)
    assert main(["check", f"{path}:softmax_loss_vectorized", "--kind", "linear", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is False and data["kind"] == "linear" and len(data["cases"]) >= 6


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing.py:f", "no such file"),
        ("{path}:nope", "has no 'nope'"),
        ("{path}", "TARGET must be"),
        ("no_such_module_here:f", "importing no_such_module_here failed"),
        ("{path}:softmax_loss_vectorized --kind scores", "cannot be called as f(scores, y)"),
    ],
    ids=["no file", "no function", "no colon", "no module", "wrong signature"],
)
def test_command_exits_2_when_the_target_cannot_be_loaded_or_called(tmp_path, capsys, target, message):
    path = write(tmp_path, COURSE_SOURCE)
    words = target.format(path=path).split()
    kind = ["--kind", "linear"] if "--kind" not in words else []
    assert main(["check", *words, *kind]) == 2
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

    case = check(bad_db2, "two_layer").first_failure
    assert any("b2: shape" in m for m in case.messages)
    assert np.isnan(case.max_abs_error) and np.isnan(case.max_rel_error)
