"""Values published elsewhere, and the per-element variant's promise to loop.

The published values come from the toy model of the two-layer-net exercise of
Stanford's CS231n course (assignment 1): its weights from ``np.random.seed(0)``
with std 0.1, its inputs ``10 * randn`` from ``np.random.seed(1)``, and the
scores and loss that the exercise prints as correct. They were computed by the
course, not by this suite. The course writes the penalty as ``reg * sum W^2``,
so its ``reg = 0.05`` is this suite's ``reg = 0.1`` (eq. 3 has ``reg / 2``).
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import numpy as np
import pytest

import reference
from manual import per_element
from manual._forward import two_layer_forward
from reference.checker import check
from tests.conftest import VARIANTS

PUBLISHED_SCORES = np.array(
    [
        [-0.81233741, -1.27654624, -0.70335995],
        [-0.17129677, -1.18803311, -0.47310444],
        [-0.51590475, -1.01354314, -0.8504215],
        [-0.15419291, -0.48629638, -0.52901952],
        [-0.00618733, -0.12435261, -0.15226949],
    ]
)
PUBLISHED_LOSS = 1.30378789133  # at the course's reg = 0.05, penalty reg * sum W^2


def toy_model():
    np.random.seed(0)
    params = {
        "W1": 0.1 * np.random.randn(4, 10),
        "b1": np.zeros(10),
        "W2": 0.1 * np.random.randn(10, 3),
        "b2": np.zeros(3),
    }
    np.random.seed(1)
    return params, 10 * np.random.randn(5, 4), np.array([0, 1, 2, 2, 1])


def test_forward_pass_gives_the_published_scores():
    params, X, _ = toy_model()
    _, _, S = two_layer_forward(params, X)
    assert np.max(np.abs(S - PUBLISHED_SCORES)) < 1e-7  # published to 8 decimals


@pytest.mark.parametrize("implementation", [*VARIANTS, "reference", "finite_differences"])
def test_every_implementation_gives_the_published_loss(implementation):
    module = {"reference": reference, "finite_differences": reference.finite_differences}.get(
        implementation, VARIANTS.get(implementation)
    )
    params, X, y = toy_model()
    loss, _ = module.two_layer_loss(params, X, y, reg=0.1)
    assert abs(loss - PUBLISHED_LOSS) < 1e-10  # published to 11 decimals


def test_the_checker_accepts_the_course_convention_on_the_course_model():
    def course_two_layer(params, X, y, reg):  # the course's penalty: reg * sum W^2
        loss, grads = VARIANTS["vectorized"].two_layer_loss(params, X, y, reg=2 * reg)
        return loss, grads

    params, X, y = toy_model()
    assert abs(course_two_layer(params, X, y, 0.05)[0] - PUBLISHED_LOSS) < 1e-10
    assert check(course_two_layer, "two_layer", reg_scale=1.0).passed


# --------------------------------------------------------------- per-element really loops
MATRIX_CALLS = {"dot", "matmul", "outer", "einsum", "tensordot", "inner", "vdot", "sum"}
GRADIENT_CODE = ["_loss_and_dscores", "_weight_gradient", "_bias_gradient", "_softmax_rows", "softmax_jacobian"]


def matrix_work(function) -> list[str]:
    """Matrix products and whole-array reductions in a function's source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(function))))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            found.append(f"line {node.lineno}: @")
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in MATRIX_CALLS:
                found.append(f"line {node.lineno}: {name}()")
    return found


@pytest.mark.parametrize("name", [*GRADIENT_CODE, "two_layer_loss"])
def test_per_element_gradients_use_no_matrix_product(name):
    found = matrix_work(getattr(per_element, name))
    # Only the row sums of exp(scores), precomputed as in the source post's listing, are vectorized.
    if name == "_loss_and_dscores":
        found = [f for f in found if not f.endswith("sum()")]
    assert not found, f"per_element.{name} uses {found}"


def test_the_matrix_detector_finds_what_it_looks_for():
    assert matrix_work(VARIANTS["vectorized"].two_layer_loss)  # H1.T @ dS and friends
