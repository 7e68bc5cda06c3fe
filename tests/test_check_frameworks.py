"""PyTorch and JAX functions under the checker: custom backward passes run, faults in them are named.

The functions live in tests/targets/, written as a framework author would. A
loss returned alone is differentiated by ``backward(g)`` or ``jax.vjp`` at a cotangent,
which is what runs the custom ``autograd.Function`` or ``custom_vjp``.
"""

from __future__ import annotations

import sys

import pytest

from reference.checker import CheckError, check
from softmax_grad.cli import main
from tests.targets import jax_targets, torch_targets


# ------------------------------------------------------------------ PyTorch
@pytest.mark.parametrize(
    ("fn", "kind", "options"),
    [
        (torch_targets.custom_function, "scores", {}),
        (torch_targets.custom_function, "scores", {"dtype": "float32"}),
        (torch_targets.library_smoothed, "scores", {"label_smoothing": 0.1}),
        (torch_targets.library_ignore, "scores", {"ignore_index": -100}),
        (torch_targets.capped_with_z_loss, "scores", {"softcap": 30.0, "z_loss": 1e-4}),
        (torch_targets.linear_pair, "linear", {}),
        (torch_targets.two_layer_autograd, "two_layer", {}),
    ],
    ids=["custom Function", "float32", "smoothing", "ignore_index", "softcap, z-loss", "linear: loss, dW", "two-layer"],
)
def test_right_torch_functions_pass(fn, kind, options):
    report = check(fn, kind, **options)
    assert report.passed and not report.warned, report.format()
    assert report.framework == "torch" and "auto: the function module imports torch" in report.format()


def test_a_torch_loss_alone_goes_through_backward():
    report = check(torch_targets.custom_function, "scores")
    assert "its gradients are torch's autodiff of it" in " ".join(report.cases[0].notes)
    assert all(case.name != "every row ignored" for case in report.cases)
    ignored = check(torch_targets.library_ignore, "scores", ignore_index=-100).cases[-1]
    assert ignored.name == "every row ignored" and ignored.tier == "robustness" and ignored.status == "pass"


@pytest.mark.parametrize(
    ("fn", "options", "expected"),
    [
        (torch_targets.custom_function_sum_backward, {}, "dscores matches reduction='sum': N = 6 times the mean's"),
        (torch_targets.custom_function_off_by_a_percent, {"dtype": "float32"}, "dscores is 1.01 times the right one"),
        (torch_targets.library_smoothed, {}, "loss: values differ"),
    ],
    ids=["backward without 1/N", "float32 off by 1%", "smoothing not asked for"],
)
def test_faults_in_torch_functions_are_named(fn, options, expected):
    report = check(fn, "scores", **options)
    assert not report.passed
    assert any(expected in m for case in report.cases for m in case.messages), report.format()


def test_without_torch_a_torch_target_exits_2_with_the_install_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` sees when it is not installed
    monkeypatch.delitem(sys.modules, "reference.checker.frameworks.torch", raising=False)
    with pytest.raises(
        CheckError, match=r"PyTorch is not installed; install the extra: pip install 'softmax-grad\[torch\]'"
    ):
        check(lambda S, y: None, "scores", framework="torch")
    # The command loads the target in its child process only: there, torch is a package that is not installed.
    fake = tmp_path / "without_torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    monkeypatch.syspath_prepend(str(fake.parent))
    path = tmp_path / "mine.py"
    path.write_text("import torch\n\n\ndef f(scores, y):\n    return torch.nn.functional.cross_entropy(scores, y)\n")
    assert main(["check", f"{path}:f", "--kind", "scores"]) == 2
    err = capsys.readouterr().err
    assert "it imports torch, but PyTorch is not installed" in err and "softmax-grad[torch]" in err


# ------------------------------------------------------------------ JAX
def test_a_jax_custom_vjp_is_what_is_checked():
    report = check(jax_targets.cross_entropy, "scores")
    assert report.passed and report.framework == "jax", report.format()
    flipped = check(jax_targets.cross_entropy_flipped, "scores")
    assert not flipped and "dscores has the wrong sign" in " ".join(flipped.first_failure.messages)


def test_a_jax_function_in_float32_is_told_its_errors_are_float32_rounding():
    report = check(jax_targets.in_float32, "scores")
    assert not report.passed
    assert "are float32 rounding" in report.first_failure.messages[-1]
    assert not any(" 1 times the right one" in m for c in report.cases for m in c.messages)


def test_auto_picks_the_framework_the_function_reads(tmp_path):
    from reference.checker import load_target
    from reference.checker.frameworks import detect

    path = tmp_path / "mixed.py"
    path.write_text(
        "import jax.numpy as jnp\nimport numpy as np\nimport torch\n\n\n"
        "def with_jax(scores, y):\n    return jnp.sum(scores)\n\n\n"
        "def with_numpy(scores, y):\n    return np.sum(scores), scores\n\n\n"
        "def with_torch(scores, y):\n    return torch.logsumexp(scores, 1).mean()\n"
    )
    picked = {name: detect(load_target(f"{path}:{name}")) for name in ("with_jax", "with_numpy", "with_torch")}
    assert picked == {"with_jax": "jax", "with_numpy": "numpy", "with_torch": "torch"}


# ------------------------------------------------------------------ both values of a loss returned alone
def test_a_custom_vjp_whose_forward_rule_returns_the_sum_fails():
    report = check(jax_targets.cross_entropy_sum_forward, "scores")
    assert not report and report.framework == "jax"
    said = report.first_failure.messages
    assert any(m.startswith("the value jax.vjp returns (a custom_vjp's forward rule) differs") for m in said)
    assert any("loss matches reduction='sum'" in m for m in said), said


@pytest.mark.parametrize(
    ("fn", "named"),
    [
        (torch_targets.forward_wrong_when_grad_wanted, "loss: values differ"),
        (torch_targets.forward_wrong_without_grad, "the loss of a call without gradients (torch.no_grad()"),
    ],
    ids=["wrong when grad is wanted", "wrong without grad"],
)
def test_a_torch_function_whose_forward_depends_on_requires_grad_fails(fn, named):
    report = check(fn, "scores")
    assert not report and report.first_failure.name == "C=2"
    assert any(m.startswith(named) for m in report.first_failure.messages), report.first_failure.messages
