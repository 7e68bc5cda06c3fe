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
