"""A user's sharded JAX loss: its inputs placed on a simulated device mesh, its wrong results named by collective.

``check(..., mesh=(2, 4))`` (``softmax-grad check ... --mesh 2x4``) runs a JAX
target in a fresh child process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=B*V`` (the flag must be
set before JAX is imported, so that child is never forked from a process that
imported JAX), on ``jax.make_mesh((B, V), ("batch", "vocab"))`` with JAX's
default axis types, inside ``jax.set_mesh``: a ``jax.shard_map`` without
``mesh=`` finds it. ``X``, ``y`` (and ``scores``' rows) are split over
"batch", ``W``'s columns and ``bias`` (and ``scores``' columns) over "vocab"
(docs/derivation.md section 10, eqs. (45)-(53)). The results come back as NumPy
and are judged against the unsharded oracle as always.

A single number ``k`` means ``1xk``: every device on the vocabulary axis
(a batch-only split is spelled ``kx1``). Cases whose rows or classes the mesh
axes do not divide are not run (the report names them); without a class
``weight`` the battery's class count is set to a multiple of the vocabulary
axis, so every case can split its classes.

A wrong result is named by the collective it points to where the numbers say
so (``diagnose``): the loss ``log k`` below the oracle's (a ``pmean`` where the
``psum`` of eq. (46)'s sum of exponentials belongs), a gradient ``k`` times too
large or too small (a ``psum``/``pmean`` slip in the backward, eqs. (52)-(53)),
the smoothing term ``k`` times too large (the mean over the local vocabulary
slice, Megatron's slip of eq. (48)), ``dX`` equal to one block's term (the
all-reduce of eq. (53) missing).

>>> parse("2x4"), parse("8"), parse((8, 1))
((2, 4), (1, 8), (8, 1))
>>> mesh_classes((2, 4), None)
8
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

from reference.checker.errors import CheckError

AXES = ("batch", "vocab")
KINDS = ("linear_ce", "linear_ce without bias", "scores")
MAX_DEVICES = 64  # simulated CPU devices: each is a thread pool of its own, more only costs time
# How each argument is split: rows over "batch", classes over "vocab" (None: replicated).
SPECS: dict[str, tuple[str | None, ...]] = {
    "X": ("batch", None),
    "y": ("batch",),
    "W": (None, "vocab"),
    "bias": ("vocab",),
    "scores": ("batch", "vocab"),
}
_SPELLING = "'BxV' (batch x vocabulary shards, e.g. '2x4') or one number k (meaning 1xk)"


def parse(mesh: Any) -> tuple[int, int] | None:
    """``(B, V)`` of ``"BxV"``, ``"k"`` (``1xk``), ``k`` or ``(B, V)``; ValueError naming ``mesh`` otherwise."""
    if mesh is None:
        return None
    shape: tuple[Any, ...]
    if isinstance(mesh, str):
        parts = mesh.strip().lower().split("x")
        if not all(part.strip().isdigit() for part in parts) or len(parts) > 2:
            raise ValueError(f"mesh must be {_SPELLING}, got {mesh!r}")
        shape = tuple(int(part) for part in parts)
    elif isinstance(mesh, int | np.integer) and not isinstance(mesh, bool):
        shape = (int(mesh),)
    elif isinstance(mesh, tuple | list) and all(isinstance(n, int | np.integer) for n in mesh):
        shape = tuple(int(n) for n in mesh)
    else:
        raise TypeError(f"mesh must be {_SPELLING} or a (B, V) tuple of ints, got {mesh!r}")
    if len(shape) == 1:
        shape = (1, shape[0])
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"mesh must be {_SPELLING} with every size >= 1, got {mesh!r}")
    if math.prod(shape) > MAX_DEVICES:
        raise ValueError(f"mesh {mesh!r} needs {math.prod(shape)} devices; at most {MAX_DEVICES} are simulated")
    return shape[0], shape[1]


def require(kind: str, shape: tuple[int, int], classes: int | None) -> None:
    """ValueError unless a mesh check means something for ``kind`` and a class ``weight`` of ``classes``."""
    if kind not in KINDS:
        raise ValueError(f"mesh applies to kinds 'linear_ce' and 'scores' (their classes split), not {kind!r}")
    if classes is not None and classes % shape[1]:
        raise ValueError(f"mesh {shape[0]}x{shape[1]}: the weight's {classes} classes do not split over "
                         f"{shape[1]} vocabulary shards")  # fmt: skip


def require_jax(framework: str) -> None:
    if framework != "jax":
        raise CheckError(f"mesh runs JAX targets only (their inputs become sharded jax.Arrays); this one's "
                         f"framework is {framework}")  # fmt: skip


def mesh_classes(shape: tuple[int, int], classes: int | None) -> int | None:
    """The battery's class count on the mesh: the weight's, else the first multiple of V from 8 (None: as ever)."""
    if classes is not None or shape[1] == 1:
        return classes
    return shape[1] * math.ceil(8 / shape[1])


def environment(shape: tuple[int, int]) -> dict[str, str]:
    """The child's environment: this one's, with ``B*V`` simulated host devices for XLA."""
    env = dict(os.environ)
    flags = [flag for flag in env.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in flag]
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={math.prod(shape)}"])
    env["JAX_PLATFORMS"] = "cpu"  # simulated devices are host devices
    return env


def unfit(kind: Any, inputs: Mapping[str, Any], shape: tuple[int, int]) -> str | None:
    """Why a case's inputs cannot be split over ``shape``, or None."""
    for name, spec in SPECS.items():
        if name not in kind.arguments or name not in inputs:
            continue
        for axis, size in zip(spec, np.shape(inputs[name]), strict=False):
            shards = shape[AXES.index(axis)] if axis else 1
            if size % shards:
                what = "rows" if axis == "batch" else "classes"
                return f"its {size} {what} do not split over {shards} {axis} shards"
    return None


def describe(shape: tuple[int, int], skipped: Mapping[str, str]) -> str:
    """How the function ran, for the report's header."""
    B, V = shape
    text = (f"on a simulated {B}x{V} mesh of CPU devices, jax.make_mesh(({B}, {V}), ('batch', 'vocab')): rows "
            f"(X, y) over {B} batch shards, classes (W, bias) over {V} vocabulary shards")  # fmt: skip
    if skipped:
        text += "; not run there: " + "; ".join(f"{name!r} ({why})" for name, why in skipped.items())
    return text


# ----------------------------------------------------------------- in the child
class OnMesh:
    """The JAX adapter, with every argument placed on the mesh and the call made inside ``jax.set_mesh``."""

    def __init__(self, base: ModuleType, shape: tuple[int, int]) -> None:
        require_jax(base.NAME)
        import jax

        if jax.device_count() < math.prod(shape):
            raise CheckError(f"mesh {shape[0]}x{shape[1]}: this process has {jax.device_count()} devices; JAX was "
                             "imported before XLA_FLAGS could ask for more")  # fmt: skip
        self._base = base
        self.mesh = jax.make_mesh(shape, AXES, devices=jax.devices()[: math.prod(shape)])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    @contextmanager
    def context(self, dtype: np.dtype) -> Iterator[None]:
        import jax

        with self._base.context(dtype), jax.set_mesh(self.mesh):
            yield

    def arguments(self, kind: Any, inputs: Mapping[str, Any]) -> tuple[Any, ...]:
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        def placed(name: str, value: Any) -> Any:
            if name not in SPECS or not isinstance(value, jax.Array):
                return value
            return jax.device_put(value, NamedSharding(self.mesh, PartitionSpec(*SPECS[name])))

        args = self._base.arguments(kind, inputs)
        return tuple(placed(name, value) for name, value in zip(kind.arguments, args, strict=True))


# ----------------------------------------------------------------- the diagnosis
_RTOL = 1e-4  # float32 results too: the hypotheses differ by factors such as log 2 or 2, far beyond it


def _close(got: float, want: float, rtol: float = _RTOL) -> bool:
    return bool(np.isfinite(got) and abs(got - want) <= rtol * max(1.0, abs(want)))


def _shards(shape: tuple[int, int]) -> dict[int, str]:
    """Each distinct shard count a collective can run over, named by its axes."""
    B, V = shape
    counts = {B * V: "both axes ('batch', 'vocab')"}
    counts.setdefault(B, "the 'batch' axis")
    counts[V] = "the 'vocab' axis"
    return {k: name for k, name in counts.items() if k > 1}


def _logits(kind: Any, inputs: Mapping[str, Any]) -> np.ndarray:
    if "scores" in inputs:
        return np.asarray(inputs["scores"], np.float64)
    S = np.asarray(inputs["X"], np.float64) @ np.asarray(inputs["W"], np.float64)
    return S + np.asarray(inputs["bias"], np.float64) if "bias" in inputs and "bias" in kind.arguments else S


def _smoothing_term(S: np.ndarray, y: np.ndarray, options: Mapping[str, Any], reduction: str, denom: float) -> float:
    """The loss's share from eq. (48)'s ``(e/V) sum_j w_j (lse_i - Z_ij)``, reduced as eq. (20) says."""
    cap = options["softcap"]
    Z = S if cap is None else cap * np.tanh(S / cap)
    log_p = Z - Z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    w = np.ones(S.shape[1]) if options["weight"] is None else np.asarray(options["weight"], np.float64)
    kept = np.ones(len(y)) if options["ignore_index"] is None else (y != options["ignore_index"]).astype(float)
    total = options["label_smoothing"] / S.shape[1] * float(np.sum(kept * -(log_p @ w)))
    return total / denom if reduction == "mean" else total


def _dx_blocks(S: np.ndarray, inputs: Mapping[str, Any], options: Mapping[str, Any], reduction: str,
               V: int) -> list[np.ndarray]:  # fmt: skip
    """Eq. (53)'s terms ``dS^(v) W^(v)T``, one a vocabulary block, with ``dS`` from JAX autodiff."""
    import jax

    from reference import losses

    with jax.enable_x64(True):
        dS = np.asarray(jax.jit(jax.grad(lambda s, y: losses.softmax_loss_value(s, y, reduction, **options)))(
            S, np.asarray(inputs["y"])))  # fmt: skip
    W = np.asarray(inputs["W"], np.float64)
    width = S.shape[1] // V
    return [dS[:, v * width : (v + 1) * width] @ W[:, v * width : (v + 1) * width].T for v in range(V)]


def diagnose(kind: Any, inputs: Mapping[str, Any], result: Any, expected: tuple[float, Mapping[str, np.ndarray]],
             shape: tuple[int, int], options: Mapping[str, Any], reduction: str, denom: float,
             deep: bool = True) -> list[str]:  # fmt: skip
    """Sentences naming the collective a wrong result points to (empty when the numbers point to none).

    ``deep``: also test ``dX`` against each block's term of eq. (53), which
    takes one compiled ``dS`` per case shape (the checker does it for the first
    failing case, the one its report spells out).
    """
    if not (isinstance(result, tuple) and len(result) == 2):
        return []
    loss, grads = result
    want_loss, want_grads = expected
    try:
        got_loss = float(np.asarray(loss, np.float64).reshape(()))
    except (TypeError, ValueError):
        got_loss = math.nan
    found: list[str] = []
    if np.isfinite(want_loss) and not _close(got_loss, want_loss):
        rows = 1.0 if reduction == "mean" else denom
        found += _loss_slips(got_loss, want_loss, rows, kind, inputs, shape, options, reduction, denom)
    if not isinstance(grads, Mapping):
        return found
    # eq. (53)'s missing all-reduce leaves the loss and every other gradient right
    others_right = _close(got_loss, want_loss) and all(_same(grads.get(name), want)
                                                       for name, want in want_grads.items() if name != "X")  # fmt: skip
    for name, want in want_grads.items():
        got = grads.get(name)
        if not isinstance(got, np.ndarray) or got.shape != want.shape or _same(got, want):
            continue
        ratio = float(np.vdot(got, want)) / max(float(np.vdot(want, want)), 1e-300)
        if _same(got, ratio * want):
            found += _scaled(name, ratio, shape)
        elif name == "X" and deep and others_right and shape[1] > 1 and np.shape(inputs["W"])[1] % shape[1] == 0:
            found += _missing_reduce(kind, inputs, got, options, reduction, shape)
    return found


def _same(got: Any, want: np.ndarray) -> bool:
    """Equal up to float32 rounding: the hypotheses told apart here differ by factors, not by ulps."""
    if not (isinstance(got, np.ndarray) and got.shape == want.shape and np.all(np.isfinite(got))):
        return False
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-300)
    return bool(np.allclose(got, want, rtol=_RTOL, atol=_RTOL * 1e-3 * scale))


def _loss_slips(got: float, want: float, rows: float, kind: Any, inputs: Mapping[str, Any], shape: tuple[int, int],
                options: Mapping[str, Any], reduction: str, denom: float) -> list[str]:  # fmt: skip
    """A loss ``log k`` too low (eq. (46)), or with its smoothing term ``k`` times too large (eq. (48))."""
    found = []
    for k, axes in _shards(shape).items():
        if options["z_loss"] == 0 and _close(got, want - rows * math.log(k)):
            found.append(f"the loss is log {k} = {math.log(k):.4g} below the oracle's per row: the sum of exponentials "
                         f"of eq. (46) was averaged (pmean) over {axes} where a psum belongs")  # fmt: skip
    if options["label_smoothing"] > 0 and np.isfinite(got):
        term = _smoothing_term(_logits(kind, inputs), np.asarray(inputs["y"]), options, reduction, denom)
        factor = 1.0 + (got - want) / term if term else math.nan
        for k, axes in _shards(shape).items():
            if abs(factor - k) <= _RTOL * k:
                found.append(f"the label-smoothing term is {k} times the oracle's: its mean over classes divides by "
                             f"the local vocabulary slice (C / {k}) instead of the global class count C over "
                             f"{axes} (Megatron's slip; eq. (48))")  # fmt: skip
    return found


def _scaled(name: str, ratio: float, shape: tuple[int, int]) -> list[str]:
    """A gradient ``k`` or ``1/k`` times the oracle's: a psum/pmean slip in the backward (eqs. (52)-(53))."""
    shown = "d" + name.lstrip("d")
    for k, axes in _shards(shape).items():
        if abs(ratio - k) <= _RTOL * k:
            return [f"{shown} is {k} times the oracle's: a psum where a pmean belongs, or a gradient all-reduced "
                    f"twice, over {axes} in the backward (eqs. (52)-(53))"]  # fmt: skip
        if abs(ratio - 1 / k) <= _RTOL / k:
            return [f"{shown} is 1/{k} of the oracle's: a pmean where a psum belongs over {axes} in the backward "
                    "(eqs. (52)-(53))"]  # fmt: skip
    return []


def _missing_reduce(kind: Any, inputs: Mapping[str, Any], got: np.ndarray, options: Mapping[str, Any],
                    reduction: str, shape: tuple[int, int]) -> list[str]:  # fmt: skip
    """``dX`` equal to one vocabulary block's term of eq. (53): its all-reduce is missing."""
    blocks = _dx_blocks(_logits(kind, inputs), inputs, options, reduction, shape[1])
    for v, block in enumerate(blocks):
        if _same(got, block):
            return [f"dX is vocabulary block {v}'s term dS^({v}) W^({v})T alone: the all-reduce (psum over "
                    f"'vocab') of eq. (53) that sums the {shape[1]} blocks' terms is missing"]  # fmt: skip
    return []
