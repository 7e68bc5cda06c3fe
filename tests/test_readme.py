"""README shows the exact commands that CI runs, so the two cannot drift apart."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def ci_commands() -> list[str]:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return [line for line in lines if line.startswith("python3.11 -m venv .venv ")]


def test_ci_runs_two_commands():
    assert len(ci_commands()) == 2


def test_readme_shows_the_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    for command in ci_commands():
        assert f"\n{command}\n" in readme, f"README.md lacks the CI command: {command}"


def first_python_block(section: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"## {section}\n")
    block = readme[readme.index("```python\n", start) + len("```python\n") :]
    return block[: block.index("```")]


def test_the_calling_example_runs():
    exec(first_python_block("Calling a variant"), {})


def test_the_loss_options_example_runs_and_can_fail():
    block = first_python_block("Loss options")
    exec(block, {})
    # Its last assertion is the soft-target gradient; with p - t in its place it must fail.
    wrong = block.replace("soft.sum(axis=1, keepdims=True) * p - soft", "p - soft")
    assert wrong != block
    with pytest.raises(AssertionError):
        exec(wrong, {})


def test_the_linear_cross_entropy_example_runs():
    exec(first_python_block("Linear cross-entropy at vocabulary scale"), {})


def test_the_vocabulary_across_devices_example_is_on_a_default_mesh():
    # It needs 8 devices: tests/sharded_vocab_parallel.py runs it in a subprocess that has them
    # (tests/test_vocab_parallel.py starts it). Here: that it is there, on jax.make_mesh's default axes.
    block = first_python_block("The vocabulary across devices")
    assert 'jax.make_mesh((2, 4), ("batch", "vocab"))' in block and "axis_types" not in block
    assert "readme_example()" in (ROOT / "tests" / "sharded_vocab_parallel.py").read_text()


def checker_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Check your own implementation") : readme.index("## What the suite guarantees")]
    return [block.split("```")[0] for block in section.split("```python\n")[1:]]


def test_the_course_solution_in_readme_passes_with_the_warning_readme_shows(tmp_path, capsys, monkeypatch):
    from softmax_grad.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_softmax.py").write_text(checker_blocks()[0])
    readme = (ROOT / "README.md").read_text()
    assert ".venv/bin/softmax-grad check my_softmax.py:softmax_loss_vectorized --kind linear --reg-scale 1\n" in readme
    assert main(["check", "my_softmax.py:softmax_loss_vectorized", "--kind", "linear", "--reg-scale", "1"]) == 0
    out = capsys.readouterr().out
    shown = readme[readme.index("WARNING on 'logit spread 1000'") :].split("```")[0]
    for line in [*shown.splitlines()[:2], "verdict: pass, with warnings"]:
        assert line in out


def test_the_torch_and_jax_examples_in_readme_pass_and_the_guard_runs():
    torch_example, jax_example, guard = checker_blocks()[1:4]
    exec(torch_example, {})
    exec(jax_example, {})
    from tests.targets.torch_targets import library_smoothed  # float32-ready, label smoothing 0.1

    namespace = {"reference": __import__("reference"), "my_loss": library_smoothed}
    exec(guard, namespace)
    namespace["test_my_kernel"]()
