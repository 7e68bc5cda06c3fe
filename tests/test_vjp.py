"""The backward as a vector-Jacobian product (derivation eqs. 54-55), checked without an oracle.

Every NumPy variant, float64 and float32, every option group, both loss
functions: "none" with the cotangent ``e_i`` is row ``i``'s "sum" gradient; any
cotangent gives ``sum_i g_i`` times the rows' gradients; the rows' losses add up
to "sum" and, over eq. (20)-(21)'s denominators, to "mean"; a scalar cotangent
scales every gradient and never the loss. Then invariance (hypothesis): a batch
split in two and recombined with the weighted mean's denominators, rows
permuted, any ``chunk_size``, and (in tests/test_masked.py) a vocabulary
padded with masked classes. Where two results are not bitwise equal they are
compared with the suite's float32/float64 row of softmax_grad/tolerances.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import DTYPES, VARIANTS
from tests.vjp_problems import FUNCTIONS, OPTION_GROUPS, Problem, agree, agree_grads, problem

# "compiled" is in the list (its helper makes it pass); run the NumPy ones alone with -k "not compiled".
NAMES = list(VARIANTS)
LOOPS = ("per_element", "per_row")  # Python loops over rows: fewer hypothesis examples
SEEDS = st.integers(0, 2**32 - 1)


def few(name: str) -> settings:
    return settings(max_examples=max(2, settings.default.max_examples // (5 if name in LOOPS else 3)))


def row_gradients(module, prob: Problem) -> list[dict[str, np.ndarray]]:
    """Row i's "sum" gradient, from a batch of that row alone, placed in a batch-shaped gradient."""
    _, whole = prob.call(module, "sum")
    rows = []
    for i in range(prob.rows):
        _, alone = prob.subset(slice(i, i + 1)).call(module, "sum")
        placed = {}
        for key, value in whole.items():
            if key in ("S", "X"):  # per-row gradients: row i, zeros elsewhere
                placed[key] = np.zeros_like(value)
                placed[key][i] = alone[key][0]
            else:  # dW, db: row i's contribution
                placed[key] = alone[key]
        rows.append(placed)
    return rows


@pytest.mark.parametrize("group", OPTION_GROUPS)
@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_none_is_the_vjp_of_the_per_row_losses(name, dtype, function, group):
    # eq. (54): with g = e_i, row i's "sum" gradient; with any g, sum_i g_i times the rows' gradients;
    # eq. (55): the rows' losses add up to "sum", and over D_n and K to "mean". The loss never moves with g.
    module, prob = VARIANTS[name], problem(function, group, dtype, seed=7)
    rows = row_gradients(module, prob)
    losses, _ = prob.call(module, "none")
    assert losses.shape == (prob.rows,) and losses.dtype == dtype
    for i in range(prob.rows):
        unit = np.zeros(prob.rows, dtype)
        unit[i] = 1
        loss_i, grads_i = prob.call(module, "none", unit)
        assert np.array_equal(loss_i, losses), "the cotangent changed the loss"
        agree_grads(grads_i, rows[i], prob.dtype, f"{name} g=e_{i}")
    g = np.array([1.5, 0.0, -2.0, 0.25, -0.5], dtype)[: prob.rows]  # mixed signs and a zero
    loss_g, grads_g = prob.call(module, "none", g)
    assert np.array_equal(loss_g, losses), "the cotangent changed the loss"
    expected = {key: sum(float(g[i]) * rows[i][key].astype(np.float64) for i in range(prob.rows)) for key in grads_g}
    agree_grads(grads_g, expected, prob.dtype, f"{name} g={g.tolist()}")

    total = float(np.sum(losses, dtype=np.float64))
    agree(prob.call(module, "sum")[0], total, prob.dtype, f"{name} sum of the rows")
    D_n, K = prob.denominators()
    z = prob.options.get("z_loss", 0.0)
    ce_rows = prob.call(module, "none", z_loss=0.0)[0].astype(np.float64) if z else losses.astype(np.float64)
    z_rows = losses.astype(np.float64) - ce_rows  # eq. (55): z k_i lse_i^2
    agree(prob.call(module, "mean")[0], ce_rows.sum() / D_n + z_rows.sum() / K, prob.dtype, f"{name} mean")
    if not z:  # eq. (54): the "mean" gradient is the "none" VJP at g = 1 / D_n
        _, mean_grads = prob.call(module, "mean")
        agree_grads(mean_grads, prob.call(module, "none", np.full(prob.rows, 1 / D_n, dtype))[1], dtype, name)


@pytest.mark.parametrize("group", ("plain", "everything", "soft targets"))
@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("reduction", ("mean", "sum"))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_a_scalar_cotangent_scales_every_gradient_and_not_the_loss(name, dtype, reduction, function, group):
    module, prob = VARIANTS[name], problem(function, group, dtype, seed=3)
    loss, grads = prob.call(module, reduction)
    for g in (-2.5, 0.0, 1.0, 3.0):
        loss_g, grads_g = prob.call(module, reduction, g)
        assert loss_g == loss, f"g = {g} changed the loss"
        agree_grads(grads_g, {k: g * v.astype(np.float64) for k, v in grads.items()}, prob.dtype, f"{name} g={g}")


# ------------------------------------------------------------------ invariance (hypothesis)
@st.composite
def drawn(draw, functions=FUNCTIONS):
    function = draw(st.sampled_from(functions))
    group = draw(st.sampled_from(OPTION_GROUPS))
    rows = draw(st.integers(2, 6))
    return problem(function, group, draw(st.sampled_from(DTYPES)), draw(SEEDS), rows=rows)


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_split_in_two_and_recombined_is_the_whole_batch(name):
    module = VARIANTS[name]

    @few(name)
    @given(drawn(), st.data())
    def check(prob, data):
        # "sum": the parts add up. "mean" (no z-loss): each part's mean times its share of D_n (eq. 20), and its
        # gradient is the VJP at the scalar cotangent D_n(part) / D_n (eq. 54).
        reduction = "sum" if prob.options.get("z_loss") else data.draw(st.sampled_from(["mean", "sum"]))
        cut = data.draw(st.integers(1, prob.rows - 1))
        parts = [prob.subset(slice(0, cut)), prob.subset(slice(cut, None))]
        whole_loss, whole = prob.call(module, reduction)
        D_n = prob.denominators()[0]
        if reduction == "mean" and (D_n == 0 or any(part.denominators()[0] == 0 for part in parts)):
            return  # a part, or the whole, with no kept weight: its mean is NaN by eq. (20)
        shares = [part.denominators()[0] / D_n if reduction == "mean" else 1.0 for part in parts]
        results = [part.call(module, reduction, share) for part, share in zip(parts, shares, strict=True)]
        combined = sum(share * float(loss) for share, (loss, _) in zip(shares, results, strict=True))
        agree(whole_loss, combined, prob.dtype, f"{name} loss")
        for key, value in whole.items():
            pieces = [grads[key].astype(np.float64) for _, grads in results]
            expected = np.concatenate(pieces) if key in ("S", "X") else pieces[0] + pieces[1]
            agree(value, expected, prob.dtype, f"{name} d{key}")

    check()


@pytest.mark.parametrize("name", NAMES)
def test_permuting_the_rows_permutes_the_gradient(name):
    module = VARIANTS[name]

    @few(name)
    @given(drawn(), SEEDS, st.sampled_from(["mean", "sum", "none"]))
    def check(prob, seed, reduction):
        order = np.random.default_rng(seed).permutation(prob.rows)
        g = np.random.default_rng(seed).standard_normal(prob.rows).astype(prob.dtype) if reduction == "none" else 1.5
        loss, grads = prob.call(module, reduction, g)
        moved_loss, moved = prob.subset(order).call(module, reduction, g[order] if reduction == "none" else g)
        agree(moved_loss, loss[order] if reduction == "none" else loss, prob.dtype, f"{name} loss")
        for key, value in grads.items():
            agree(moved[key], value[order] if key in ("S", "X") else value, prob.dtype, f"{name} d{key}")

    check()


# per_element and per_row document that chunk_size does not change their tile (one class, one row): bitwise.
BITWISE_ACROSS_CHUNKS = ("per_element", "per_row")


@pytest.mark.parametrize("name", NAMES)
def test_every_chunk_size_gives_the_same_result(name):
    module = VARIANTS[name]

    @few(name)
    @given(drawn(functions=("linear_cross_entropy",)), st.sampled_from(["mean", "sum", "none"]), st.data())
    def check(prob, reduction, data):
        V = prob.inputs["W"].shape[1]
        g = np.linspace(-1, 2, prob.rows).astype(prob.dtype) if reduction == "none" else -0.5
        loss, grads = prob.call(module, reduction, g)  # the default chunk: one chunk at these sizes
        for chunk in sorted({1, data.draw(st.integers(1, V)), V - 1 or 1, V + 3}):
            chunk_loss, chunk_grads = prob.call(module, reduction, g, chunk_size=chunk)
            if name in BITWISE_ACROSS_CHUNKS:
                assert np.array_equal(chunk_loss, loss, equal_nan=True), (name, chunk)
                assert all(np.array_equal(chunk_grads[k], grads[k]) for k in grads), (name, chunk)
                continue
            agree(chunk_loss, loss, prob.dtype, f"{name} chunk_size={chunk} loss")
            agree_grads(chunk_grads, grads, prob.dtype, f"{name} chunk_size={chunk}")

    check()


# ------------------------------------------------------------------ bad cotangents
BAD_GRAD_OUTPUTS = [
    ("none, a scalar", "none", 1.0, ValueError, r"grad_output must have shape \(N,\) = \(5,\).*got shape \(\)"),
    ("none, N + 1", "none", np.ones(6), ValueError, r"shape \(N,\) = \(5,\).*got shape \(6,\)"),
    ("none, a column", "none", np.ones((5, 1)), ValueError, r"got shape \(5, 1\)"),
    ("mean, a vector", "mean", np.ones(5), ValueError, r"must be a scalar for reduction='mean'.*\(5,\)"),
    ("sum, a 1-vector", "sum", np.ones(1), ValueError, r"must be a scalar for reduction='sum'.*\(1,\)"),
    ("none, NaN", "none", [1.0, 1.0, np.nan, 1.0, 1.0], ValueError, r"grad_output\[2\] = nan must be finite"),
    ("mean, inf", "mean", np.inf, ValueError, r"grad_output = inf must be finite"),
    ("none, past float32", "none", [1.0, 1e39, 1.0, 1.0, 1.0], ValueError, r"grad_output\[1\] = 1e\+39.*float32"),
    ("bool", "sum", True, TypeError, r"grad_output must hold real numbers, got dtype bool"),
    ("str", "none", ["1"] * 5, TypeError, r"grad_output must hold real numbers, got dtype <U1"),
]


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize(("case", "reduction", "value", "error", "message"), BAD_GRAD_OUTPUTS, ids=lambda v: str(v))
@pytest.mark.parametrize("name", NAMES)
def test_a_bad_cotangent_gets_a_clear_error(name, case, reduction, value, error, message, function):
    prob = problem(function, "plain", np.float32)
    with pytest.raises(error, match=message):
        prob.call(VARIANTS[name], reduction, value)


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_reduction_names_the_three(name):
    with pytest.raises(ValueError, match=r"reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        problem("softmax_loss", "plain", np.float64).call(VARIANTS[name], "avg")


def test_the_readme_example_of_none_runs_and_can_fail():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("### Per-row losses, cotangents and masked classes\n")
    block = readme[readme.index("```python\n", start) + len("```python\n") :]
    block = block[: block.index("```")]
    exec(block, {})
    wrong = block.replace("-2.0 * row_1[0]", "row_1[0]")  # the gradient without its cotangent
    assert wrong != block
    with pytest.raises(AssertionError):
        exec(wrong, {})


@pytest.mark.parametrize("devices", (2, 3))
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_vocabulary_parallel_form_takes_the_cotangent_and_masks_like_the_variants(dtype, devices):
    # manual/vocab_parallel.py (eqs. 45-53): "none" with a random cotangent and a masked bias (a whole block
    # masked at devices=3), an ignored row pointing at the masked class 0, the cap and the z-loss.
    from manual import vocab_parallel

    rng = np.random.default_rng(4)
    X, W = rng.standard_normal((5, 3)).astype(dtype), rng.standard_normal((3, 6)).astype(dtype)
    bias = rng.standard_normal(6).astype(dtype)
    bias[:2] = -np.inf
    y = np.array([2, -100, 5, 3, 4])
    options = {"bias": bias, "ignore_index": -100, "z_loss": 0.05, "softcap": 2.0, "weight": rng.random(6) + 0.5}
    g = np.array([1.0, 3.0, -2.0, 0.0, 0.5], dtype)
    for reduction, cotangent in (("none", g), ("mean", -1.5)):
        keywords = {**options, "reduction": reduction, "grad_output": cotangent}
        loss, grads = vocab_parallel.linear_cross_entropy(X, W, y, devices=devices, **keywords)
        expected_loss, expected = VARIANTS["vectorized"].linear_cross_entropy(X, W, y, **keywords)
        agree(loss, expected_loss, np.dtype(dtype), f"vocab_parallel {reduction} loss")
        agree_grads(grads, expected, np.dtype(dtype), f"vocab_parallel {reduction}")
        assert np.all(grads["W"][:, :2] == 0) and np.all(grads["b"][:2] == 0)
