"""The cases a user's function is run on, each in one of two tiers.

Correctness cases hold moderate inputs, where any right formula gives the
right numbers: a wrong value there fails. Robustness cases hold inputs at the
edge of floating point (logits 1000 apart, every row ignored): a wrong or
non-finite gradient fails, a non-finite loss beside a right gradient is a
warning. Beside the fixed cases (N = 1, C = 2, ties, several ``reg``, rows
1000 apart in offset within one case, a batch past the small sizes, square
layers, Fortran-ordered and non-contiguous inputs), seeded random cases of
varied shape catch what a fixed list would not.

The sizes kernels meet are drawn per seed (``Sizes``): a batch past 128 rows
that is a multiple of no common block size, and (scores, linear_ce) a class
count past 4096 that is odd, so a multiple of no chunk width; a large ``reg``
besides. So are the hard regimes of the label entry ``p_y - 1``: rows whose
label probability is within 1e-2, 1e-4 and 1e-6 of 1, and near-uniform rows
over the wide vocabulary. Each new class count is one more compiled oracle
program, so there is one wide count a check.

Masked lanes (eq. 56): the scores and linear_ce batteries hold a vocabulary
padded past a multiple of 64 with ``-inf`` (in the scores, or in the bias), and
per-row masks as constrained decoding makes them, on rows whose logits sit far
below 0, where a soft-cap that turned a mask into ``-c`` would hand it real
probability. Their class count is the wide one, so they add no oracle program.
They are left out where a mask is a contract error (label smoothing).

Cotangents (eq. 54): for the kinds whose backward is a vector-Jacobian product
(scores, linear_ce), every case carries its own ``grad_output``, drawn per case
(``cotangent``): a scalar of either sign in [0.5, 3] for "mean" and "sum"; for
"none" an (N,) vector of mixed signs with exact zeros. Never 1: a backward that
ignores it, or takes a shortcut at 1, is judged where it goes wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from softmax_grad.cases import params as make_params

CORRECTNESS = "correctness"
ROBUSTNESS = "robustness"
LAYOUTS = ("C", "F", "strided")
REGS = (0.05, 0.3, 1.7)  # several strengths, so that a missing or doubled penalty cannot hide
# C of the random cases. Every other axis varies freely; each class count is one compiled oracle
# program (rows and hidden units are padded, classes cannot be), and compiling is most of a check's time.
CLASS_COUNTS = (2, 5, 7)
LARGE_REG = 50.0  # the penalty dominates: a slip in it cannot hide behind the data term
CERTAIN = (1e-2, 1e-4, 1e-6)  # 1 - p_y of the "label certain" rows: p_y - 1 is computed by cancellation


@dataclass(frozen=True)
class Sizes:
    """The sizes of one seed's kernel-sized cases: ``rows`` in [130, 300), a multiple of no 8; ``classes``
    in [4097, 5000), odd. Drawn from their own generator, so the other random cases stay what they were.

    >>> sizes = Sizes.of(0)
    >>> 130 <= sizes.rows < 300 and sizes.rows % 8 != 0, 4096 < sizes.classes < 5000 and sizes.classes % 2 == 1
    (True, True)
    """

    rows: int
    classes: int

    @classmethod
    def of(cls, seed: int) -> Sizes:
        rng = np.random.default_rng([seed, 20])
        rows = int(rng.integers(130, 300))
        return cls(rows + 1 if rows % 8 == 0 else rows, int(rng.integers(2048, 2500)) * 2 + 1)


def certain_rows(C: int, gen: np.random.Generator, per_level: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose label probability is ``1 - delta`` for each ``delta`` of ``CERTAIN`` (C >= 2).

    The other logits are small noise with exponential sum ``R``; the label's
    leads by ``log R + log((1 - delta) / delta)``, so ``1 - p_y = delta`` exactly.
    """
    rows, labels = [], []
    for delta in CERTAIN:
        for _ in range(per_level):
            s = 0.3 * gen.standard_normal(C)
            y = int(gen.integers(0, C))
            rest = np.exp(np.delete(s, y)).sum()
            s[y] = np.log(rest) + np.log((1 - delta) / delta)
            rows.append(s)
            labels.append(y)
    return np.array(rows), np.array(labels)


@dataclass(frozen=True)
class Case:
    """One call: float64 ``inputs`` by argument name, a tier, and how the arrays are laid out in memory.

    ``relu_zeros`` marks a two-layer case whose pre-activations hold exact
    zeros, where the ReLU's derivative is a choice (0 or 1).
    """

    name: str
    tier: str
    inputs: dict[str, Any]
    layout: str = "C"
    relu_zeros: bool = False
    notes: tuple[str, ...] = field(default=())
    grad_output: Any = None  # the loss's cotangent g (eq. 54): a float, or (N,) for "none"; None for no VJP (g = 1)

    @property
    def labels(self) -> np.ndarray:
        return self.inputs["y"]


def cast(value: Any, dtype: np.dtype) -> Any:
    """Floating arrays (also inside a mapping) as ``dtype``; labels and ``reg`` as they are."""
    if isinstance(value, Mapping):
        return {key: cast(item, dtype) for key, item in value.items()}
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value.astype(dtype)
    return value


def laid_out(value: np.ndarray, layout: str) -> np.ndarray:
    """A fresh copy of ``value`` in memory order ``layout``: C, Fortran, or a strided view of a wider buffer."""
    if value.ndim == 0 or value.dtype.kind != "f" or layout == "C":
        return value.copy()
    if layout == "F":
        return np.asfortranarray(value)
    wide = np.zeros((*value.shape[:-1], 2 * value.shape[-1]), value.dtype)
    wide[..., ::2] = value
    return wide[..., ::2]


def spread_scores(C: int) -> tuple[np.ndarray, np.ndarray]:
    """Three rows of logits 1000 apart, each breaking a different unstable formula (C >= 2).

    Row 0, ``[-500, ..., -500, 500]`` with its true class at -500: ``p_y``
    underflows to 0, so ``-log(p_y)`` is inf even after the max shift, and its
    max lies 800 above its mean, so a shift by the row mean overflows. Row 1
    reaches 710, past ``exp``'s overflow at 709.78: no shift at all gives NaN.
    Row 2 spans -500 to 500.
    """
    row0 = np.full(C, -500.0)
    row0[-1] = 500.0
    S = np.stack([row0, np.roll(np.linspace(-300.0, 710.0, C), 1), np.roll(np.linspace(-500.0, 500.0, C), 2)])
    return S, np.array([0, 1 % C, 2 % C])


def _row_offsets(N: int, rng: np.random.Generator) -> np.ndarray:
    """Offsets up to 1000 apart between rows: a shift by the global max or by nothing overflows or underflows."""
    offsets = rng.uniform(-1000.0, 1000.0, N)
    offsets[:2] = (1000.0, 3.0)
    return offsets


# ----------------------------------------------------------------- scores
def _scores_cases(seed: int, classes: int | None) -> list[Case]:
    fixed = np.random.default_rng(12345)
    rng = np.random.default_rng(seed)

    def case(name: str, N: int, C: int, scale: float = 3.0, **extra: Any) -> Case:
        C = classes or C
        S = scale * fixed.standard_normal((N, C))
        return Case(name, CORRECTNESS, {"scores": S, "y": fixed.integers(0, C, N)}, **extra)

    far = case("rows 1000 apart in offset", 8, 5)
    far.inputs["scores"] += _row_offsets(8, fixed)[:, None]
    C = classes or 5
    cases = [
        case("N=1", 1, 5),
        case("C=2", 6, 2) if classes in (None, 2) else case("C small", 6, 2),
        Case("ties", CORRECTNESS, {"scores": np.zeros((8, C)), "y": np.arange(8) % C}),
        far,
        case("N=48", 48, 5, scale=2.0),
        case("Fortran-ordered scores", 8, 5, layout="F"),
        case("non-contiguous scores", 8, 5, layout="strided"),
    ]
    for k in range(2):
        N, C = int(rng.integers(2, 80)), int(rng.choice(CLASS_COUNTS))
        cases.append(
            case(f"random {k + 1} ({N}x{classes})", N, C, scale=float(rng.choice([0.1, 1.0, 5.0])))
            if classes
            else Case(
                f"random {k + 1} ({N}x{C})",
                CORRECTNESS,
                {
                    "scores": float(rng.choice([0.1, 1.0, 5.0])) * rng.standard_normal((N, C)),
                    "y": rng.integers(0, C, N),
                },
            )
        )
    sizes = Sizes.of(seed)
    wide = classes or sizes.classes
    S, y = certain_rows(classes or 5, fixed)
    cases += [
        case(f"N={sizes.rows}", sizes.rows, 5, scale=2.0),
        Case(f"a wide vocabulary (C = {wide})", CORRECTNESS,
             {"scores": 3.0 * fixed.standard_normal((6, wide)), "y": fixed.integers(0, wide, 6)}),
        Case(f"near-uniform rows, wide vocabulary (C = {wide})", CORRECTNESS,
             {"scores": 1e-3 * fixed.standard_normal((4, wide)), "y": fixed.integers(0, wide, 4)}),
        Case("label certain (1 - p_y = 1e-2, 1e-4, 1e-6)", CORRECTNESS, {"scores": S, "y": y}),
    ]  # fmt: skip
    S, y = spread_scores(classes or 5)
    cases.append(Case("logit spread 1000", ROBUSTNESS, {"scores": S, "y": y}))
    return cases


# ----------------------------------------------------------------- linear
def _linear_inputs(N: int, D: int, C: int, reg: float, gen: np.random.Generator, w_scale: float = 1.0) -> dict:
    W = w_scale * gen.standard_normal((D, C)) / np.sqrt(D)
    return {"W": W, "X": gen.standard_normal((N, D)), "y": gen.integers(0, C, N), "reg": reg}


def _linear_cases(seed: int, classes: int | None) -> list[Case]:
    fixed = np.random.default_rng(12345)
    rng = np.random.default_rng(seed)

    def case(name: str, N: int, D: int, C: int, reg: float, gen: Any = fixed, w_scale: float = 1.0, **extra: Any):
        return Case(
            name, extra.pop("tier", CORRECTNESS), _linear_inputs(N, D, classes or C, reg, gen, w_scale), **extra
        )

    far = case("rows 1000 apart in offset", 10, 6, 5, 0.1)
    far.inputs["X"][:, 0] = _row_offsets(10, fixed)
    far.inputs["W"][0, :] = 1.0  # the same for every class: each row's scores move by its offset, their spread does not
    ties = case("ties (W = 0)", 5, 3, 5, 0.3)
    ties.inputs["W"][:] = 0.0
    cases = [
        case("N=1", 1, 4, 5, 0.0),
        case("C=2", 8, 5, 2, 0.1) if classes in (None, 2) else case("C small", 8, 5, 2, 0.1),
        ties,
        case("reg 0", 12, 6, 5, 0.0, np.random.default_rng(7)),
        *(case(f"reg {reg}", 12, 6, 5, reg, np.random.default_rng(7)) for reg in REGS),
        far,
        case("N=48", 48, 7, 5, 0.2),
        case("Fortran-ordered X and W", 12, 6, 5, 0.3, layout="F"),
        case("non-contiguous X and W", 12, 6, 5, 0.3, layout="strided"),
    ]
    for k in range(2):
        N, D, C = int(rng.integers(2, 80)), int(rng.integers(2, 12)), int(rng.choice(CLASS_COUNTS))
        cases.append(case(f"random {k + 1} ({N}x{D}x{classes or C})", N, D, C, float(rng.choice((0.0, *REGS))), rng))
    rows = Sizes.of(seed).rows
    cases += [
        case(f"reg {LARGE_REG:g}", 12, 6, 5, LARGE_REG, np.random.default_rng(7)),
        case(f"N={rows}", rows, 7, 5, 0.3),
    ]
    S, y = spread_scores(classes or 5)
    spread = {"W": np.eye(S.shape[1]), "X": S, "y": y, "reg": 0.0}  # S = X W = X: the logits 1000 apart
    cases.append(Case("logit spread 1000", ROBUSTNESS, spread))
    return cases


# ----------------------------------------------------------------- two_layer
def _two_layer_inputs(N: int, D: int, H: int, C: int, reg: float, seed: int, w2_scale: float = 1.0) -> dict:
    gen = np.random.default_rng(seed)
    p = make_params(D, H, C, seed)
    p["W2"] = w2_scale * p["W2"]
    return {"params": p, "X": gen.standard_normal((N, D)), "y": gen.integers(0, C, N), "reg": reg}


def _two_layer_cases(seed: int, classes: int | None) -> list[Case]:
    rng = np.random.default_rng(seed)

    def case(name: str, N: int, D: int, H: int, C: int, reg: float, s: int, tier: str = CORRECTNESS, **extra):
        scale = extra.pop("w2_scale", 1.0)
        return Case(name, tier, _two_layer_inputs(N, D, H, classes or C, reg, s, scale), **extra)

    far = case("rows 1000 apart in offset", 10, 4, 6, 5, 0.1, 5)
    X, p = far.inputs["X"], far.inputs["params"]
    X[:, 0] = np.abs(_row_offsets(10, np.random.default_rng(6)))  # > 0: no exact zero in Z1
    p["W1"][:, 0], p["W1"][0, 0], p["b1"][0] = 0.0, 1.0, 0.0  # hidden unit 0 carries each row's offset...
    p["W2"][0, :] = 1.0  # ...to every class alike
    cases = [
        case("N=1", 1, 3, 4, 5, 0.0, 1),
        case("C=2", 6, 3, 4, 2, 0.0, 2) if classes in (None, 2) else case("C small", 6, 3, 4, 2, 0.0, 2),
        case("reg 0", 16, 5, 8, 5, 0.0, 3),
        *(case(f"reg {reg}", 16, 5, 8, 5, reg, 3) for reg in REGS[1:]),
        case("square layers (D = H = C)", 12, 5, 5, 5, 0.3, 9),
        far,
        case("N=48", 48, 5, 7, 5, 0.05, 4),
        case("Fortran-ordered X and params", 16, 5, 8, 5, 0.3, 3, layout="F"),
        case("non-contiguous X and params", 16, 5, 8, 5, 0.3, 3, layout="strided"),
    ]
    cases.append(_dead_units(classes or 5))
    for k in range(2):
        N, D, H, C = (*(int(rng.integers(2, n)) for n in (80, 10, 12)), int(rng.choice(CLASS_COUNTS)))
        reg, s = float(rng.choice((0.0, *REGS))), int(rng.integers(2**31))
        cases.append(case(f"random {k + 1} ({N}x{D}x{H}x{classes or C})", N, D, H, C, reg, s))
    rows = Sizes.of(seed).rows
    cases += [case(f"reg {LARGE_REG:g}", 16, 5, 8, 5, LARGE_REG, 3), case(f"N={rows}", rows, 5, 7, 5, 0.05, 4)]
    cases.append(_two_layer_spread(classes or 5))
    return cases


def _dead_units(C: int) -> Case:
    """As ``softmax_grad.cases.dead_units_case``: zero rows of X with zero bias put Z1 at exactly 0; unit 2 is dead."""
    p = make_params(4, 5, C, seed=7)
    p["b1"] = np.zeros(5)
    p["b1"][2] = -50.0
    X = np.random.default_rng(8).standard_normal((8, 4))
    X[[0, 3]] = 0.0
    y = np.random.default_rng(1008).integers(0, C, 8)
    # Z1 holds exact zeros here: eq. (10) takes relu'(0) = 0; relu'(0) = 1 is accepted, with a note (verdict.judge)
    return Case("dead ReLU units (exact zeros in Z1)", CORRECTNESS, {"params": p, "X": X, "y": y, "reg": 0.1},
                relu_zeros=True)  # fmt: skip


def _two_layer_spread(C: int) -> Case:
    """Scores 1000 apart through the layers: X = shifted spread scores, W1 = W2 = I, so S = relu(X) = X."""
    S, y = spread_scores(C)
    eye = np.eye(C)
    params = {"W1": eye.copy(), "b1": np.zeros(C), "W2": eye.copy(), "b2": np.zeros(C)}
    X = S + 600.0  # every pre-activation > 0: no exact zero in Z1
    return Case("logit spread 1000", ROBUSTNESS, {"params": params, "X": X, "y": y, "reg": 0.0})


# ----------------------------------------------------------------- linear_ce
def _linear_ce_cases(seed: int, classes: int | None, bias: bool = True) -> list[Case]:
    fixed = np.random.default_rng(12345)
    rng = np.random.default_rng(seed)

    def inputs(N: int, D: int, C: int, gen: np.random.Generator) -> dict[str, Any]:
        C = classes or C
        values = {"X": gen.standard_normal((N, D)), "W": gen.standard_normal((D, C)) / np.sqrt(D)}
        values["y"] = gen.integers(0, C, N)
        return values | ({"bias": 0.5 * gen.standard_normal(C)} if bias else {})

    def case(name: str, N: int, D: int, C: int, gen: Any = fixed, **extra: Any) -> Case:
        return Case(name, CORRECTNESS, inputs(N, D, C, gen), **extra)

    far = case("rows 1000 apart in offset", 10, 6, 5)
    far.inputs["X"][:, 0] = _row_offsets(10, fixed)
    far.inputs["W"][0, :] = 1.0  # the same for every class: each row's logits move by its offset
    ties = case("ties (W = 0)", 8, 3, 5)
    ties.inputs["W"][:] = 0.0
    cases = [
        case("N=1", 1, 4, 5),
        case("C=2", 8, 5, 2) if classes in (None, 2) else case("C small", 8, 5, 2),
        ties,
        far,
        case("N=48", 48, 7, 5),
        case("Fortran-ordered X and W", 12, 6, 5, layout="F"),
        case("non-contiguous X and W", 12, 6, 5, layout="strided"),
    ]
    for k in range(2):
        N, D, C = int(rng.integers(2, 80)), int(rng.integers(2, 12)), int(rng.choice(CLASS_COUNTS))
        cases.append(case(f"random {k + 1} ({N}x{D}x{classes or C})", N, D, C, rng))
    sizes = Sizes.of(seed)
    wide = classes or sizes.classes
    uniform = case(f"near-uniform rows, wide vocabulary (C = {wide})", 4, 6, wide)
    uniform.inputs["W"] *= 1e-3
    if bias:
        uniform.inputs["bias"] *= 1e-3
    S, y = certain_rows(classes or 5, fixed)
    certain = {"X": S, "W": np.eye(S.shape[1]), "y": y} | ({"bias": np.zeros(S.shape[1])} if bias else {})
    cases += [
        case(f"N={sizes.rows}", sizes.rows, 7, 5),
        case(f"a wide vocabulary (C = {wide})", 8, 6, wide),
        uniform,
        Case("label certain (1 - p_y = 1e-2, 1e-4, 1e-6)", CORRECTNESS, certain),  # X W = X
    ]
    S, y = spread_scores(classes or 5)
    spread = {"X": S, "W": np.eye(S.shape[1]), "y": y} | ({"bias": np.zeros(S.shape[1])} if bias else {})
    cases.append(Case("logit spread 1000", ROBUSTNESS, spread))  # X W = X: logits 1000 apart
    return cases


# ----------------------------------------------------------------- masked lanes (eq. 56)
LANE_MULTIPLE = 64  # a vocabulary padded past a multiple of this with -inf, as kernels pad it
PAD_LANES = 19  # the padding a real vocabulary needs to reach the multiple
MASK_OFFSETS = (-1000.0, -60.0, -8.0, 0.0, 5.0, 40.0)  # row offsets: far below 0 a soft-capped mask ties real logits


def _masked_shape(seed: int, classes: int | None) -> tuple[int, int]:
    """(C, real classes). C is the seed's wide class count (``Sizes``), whose oracle program the battery compiles
    anyway; the real vocabulary is 19 lanes short of the multiple of 64 below it, every lane past it -inf. With C
    fixed (a class weight), its last quarter is masked.

    >>> _masked_shape(0, None), _masked_shape(0, 8)
    ((4799, 4717), (8, 6))
    """
    if classes is not None:
        return classes, max(1, classes - max(1, classes // 4))
    C = Sizes.of(seed).classes
    return C, LANE_MULTIPLE * (C // LANE_MULTIPLE) - PAD_LANES


def _masked_logits(N: int, real: int, C: int, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) of ``real`` classes at row offsets ``MASK_OFFSETS``, -inf past them, and labels among them."""
    S = 3.0 * gen.standard_normal((N, C)) + np.resize(MASK_OFFSETS, N)[:, None]
    S[:, real:] = -np.inf
    return S, gen.integers(0, real, N)


def _masked_scores_cases(seed: int, classes: int | None) -> list[Case]:
    fixed = np.random.default_rng(64)
    C, real = _masked_shape(seed, classes)
    S, y = _masked_logits(12, real, C, fixed)
    padded = Case(f"vocabulary padded with -inf ({real} classes of {C})", CORRECTNESS, {"scores": S, "y": y})
    S, y = _masked_logits(12, C, C, fixed)
    allowed = fixed.random((12, C)) < 0.5  # constrained decoding: each row its own set of classes
    allowed[np.arange(12), y] = True
    S[~allowed] = -np.inf
    return [padded, Case("per-row masks (-inf), as constrained decoding", CORRECTNESS, {"scores": S, "y": y})]


def _masked_linear_ce_case(seed: int, classes: int | None) -> Case:
    """A bias of -inf on the padding columns: every row's padding lanes masked (eq. 56)."""
    fixed = np.random.default_rng(64)
    C, real = _masked_shape(seed, classes)
    N, D = 12, 6
    X, W = fixed.standard_normal((N, D)), fixed.standard_normal((D, C)) / np.sqrt(D)
    X[:, 0], W[0, :] = np.resize(MASK_OFFSETS, N), 1.0  # each row's logits move by its offset
    bias = 0.5 * fixed.standard_normal(C)
    bias[real:] = -np.inf
    name = f"bias -inf on padding columns ({real} classes of {C})"
    return Case(name, CORRECTNESS, {"X": X, "W": W, "y": fixed.integers(0, real, N), "bias": bias})


MASKED: dict[str, Callable[[int, int | None], list[Case]]] = {
    "scores": _masked_scores_cases,
    "linear_ce": lambda seed, classes: [_masked_linear_ce_case(seed, classes)],
}


# ----------------------------------------------------------------- cotangents (eq. 54)
VJP_KINDS = ("scores", "linear_ce", "linear_ce without bias")  # their loss takes reduction="none" and grad_output


def cotangent(rows: int, reduction: str, gen: np.random.Generator) -> float | np.ndarray:
    """A loss's cotangent ``g`` for one case: |g| in [0.5, 3], either sign; for "none", (N,) with exact zeros.

    Never 1, so a backward that ignores ``g`` or skips its work at ``g == 1`` is
    caught; for "none" at least one positive, one negative and one zero entry
    (N >= 3), so that a backward using ``g[0]`` for every row is too.

    >>> g = cotangent(5, "none", np.random.default_rng(0))
    >>> g.shape, bool((g > 0).any() and (g < 0).any() and (g == 0).any())
    ((5,), True)
    >>> 0.5 <= abs(cotangent(5, "mean", np.random.default_rng(0))) <= 3
    True
    """
    if reduction != "none":
        return float(_exact(gen.choice([-1.0, 1.0]) * gen.uniform(0.5, 3.0)))
    magnitude = gen.uniform(0.5, 3.0, rows)
    g = gen.choice([-1.0, 1.0], rows) * magnitude
    g[gen.random(rows) < 0.2] = 0.0
    for place, sign in zip(gen.permutation(rows)[:3], (1.0, -1.0, 0.0), strict=False):
        g[place] = sign * magnitude[place]
    return _exact(g)


def _exact(g: Any) -> Any:
    """``g`` on a grid of 1/64 in [0.5, 3]: 8 significant bits, exact in every dtype down to bfloat16 (and never 1)."""
    g = np.round(np.asarray(g) * 64.0) / 64.0
    return np.where(np.abs(g) == 1.0, g * 65.0 / 64.0, g)


BUILDERS: dict[str, Callable[[int, int | None], list[Case]]] = {
    "scores": _scores_cases,
    "linear": _linear_cases,
    "two_layer": _two_layer_cases,
    "linear_ce": _linear_ce_cases,
    "linear_ce without bias": lambda seed, classes: _linear_ce_cases(seed, classes, bias=False),
}


def _with_ignored_rows(case: Case, ignore_index: int) -> Case:
    """Every third row, from the second, labelled ``ignore_index``."""
    y = case.labels.copy()
    y[1::3] = ignore_index
    return replace(case, inputs={**case.inputs, "y": y})


def battery(
    kind: str,
    seed: int = 0,
    *,
    classes: int | None = None,
    ignore_index: int | None = None,
    reduction: str | None = None,
    masks: bool = True,
) -> list[Case]:
    """Every case for ``kind``, float64, correctness cases first.

    ``classes`` fixes C (a class ``weight`` has one entry per class). With
    ``ignore_index``, rows of every case with N > 1 carry it, and a robustness
    case has every row ignored (the mean of nothing: NaN, as torch gives).
    ``masks`` adds the masked-lane cases (scores, linear_ce; eq. 56); with
    ``reduction``, every case of a VJP kind carries a cotangent drawn for it (``cotangent``).
    """
    cases = BUILDERS[kind](seed, classes)
    if masks and kind in MASKED:
        cases[-1:-1] = MASKED[kind](seed, classes)  # before the robustness case
    if ignore_index is not None:
        cases = [_with_ignored_rows(c, ignore_index) if len(c.labels) > 1 else c for c in cases]
        template = next(c for c in cases if len(c.labels) >= 4 and np.isfinite(c.inputs.get("bias", 0.0)).all()
                        and np.isfinite(c.inputs.get("scores", 0.0)).all())  # fmt: skip
        all_ignored = {**template.inputs, "y": np.full_like(template.labels, ignore_index)}
        cases = [*cases, Case("every row ignored", ROBUSTNESS, all_ignored)]
    if reduction is None or kind not in VJP_KINDS:
        return cases
    return [
        replace(c, grad_output=cotangent(len(c.labels), reduction, np.random.default_rng([seed, 21, i])))
        for i, c in enumerate(cases)
    ]
