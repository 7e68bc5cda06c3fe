"""What a user would run instead of the suite: torch on the CPU and JAX autodiff of the plain loss.

* ``torch``: ``torch.nn.functional.cross_entropy`` and ``backward()`` on CPU
  tensors that share the NumPy arrays' memory (``torch.from_numpy``); the
  options torch has (``weight``, ``ignore_index``, ``label_smoothing``) are
  its own, soft-capping and z-loss are written in torch ops, as a user would.
* ``jax autodiff``: ``jax.jit(jax.value_and_grad(plain_loss))`` on device
  arrays, the plain loss as a user writes it (``log_softmax``, gather, mean).
* For linear cross-entropy, ``torch dense`` (``F.linear`` then
  ``F.cross_entropy``, the (N, V) logits in full) and ``torch chunked``
  (``F.linear_cross_entropy`` with ``LinearCrossEntropyOptions()``, torch's own
  chunking, in torch 2.13 and later).

torch is optional: without it ``torch_module()`` is None and the torch rows are
skipped with ``TORCH_MISSING``, which the report repeats.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

TORCH_MISSING = "torch is not installed (pip install 'softmax-grad[torch]'): its rows are skipped"
TORCH_PEERS = ("torch", "torch dense", "torch chunked")
PEERS = (*TORCH_PEERS, "jax autodiff")


def torch_module() -> ModuleType | None:
    """``torch``, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def plain_loss(S: jax.Array, y: jax.Array) -> jax.Array:
    """The mean cross-entropy as a JAX user writes it (eq. 4): ``log_softmax``, the label's entry, the mean."""
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(S, axis=1), y[:, None], axis=1))


def torch_softmax_loss(S: np.ndarray, y: np.ndarray, options: dict[str, Any]) -> Callable[[], tuple[float, Any]]:
    """``run()``: the loss and ``dS`` by ``F.cross_entropy`` + ``backward(g)``, NumPy in, NumPy out.

    ``options`` holds the loss options and, for the per-row workload, ``reduction`` and ``grad_output``.
    """
    torch = torch_module()
    assert torch is not None, TORCH_MISSING
    F = torch.nn.functional
    labels = torch.from_numpy(y)
    weight = None if options.get("weight") is None else torch.from_numpy(options["weight"])
    ignore_index = -100 if options.get("ignore_index") is None else options["ignore_index"]  # torch's default
    smoothing, z, cap = options.get("label_smoothing", 0.0), options.get("z_loss", 0.0), options.get("softcap")
    reduction = options.get("reduction", "mean")
    cotangent = None if options.get("grad_output") is None else torch.from_numpy(np.asarray(options["grad_output"]))
    assert not (z and reduction != "mean"), "z-loss is written here for the mean only"

    def run() -> tuple[Any, np.ndarray]:
        scores = torch.from_numpy(S).requires_grad_()
        Z = scores if cap is None else cap * torch.tanh(scores / cap)  # eq. (17), in torch ops
        loss = F.cross_entropy(
            Z, labels, weight=weight, ignore_index=ignore_index, label_smoothing=smoothing, reduction=reduction
        )
        if z:  # eq. (21): z times the mean over kept rows of lse^2, in torch ops
            kept = labels != ignore_index
            loss = loss + z * torch.logsumexp(Z[kept], dim=1).square().mean()
        loss.backward(cotangent)  # the VJP at the cotangent (eq. 54); None is 1 for a scalar loss
        value = loss.detach().numpy()
        return (value if reduction == "none" else float(value)), scores.grad.numpy()

    return run


def torch_linear_cross_entropy(X: np.ndarray, W: np.ndarray, y: np.ndarray, chunked: bool) -> Callable[[], tuple]:
    """``run()``: loss, dX and dW by torch, dense (``F.linear`` + ``F.cross_entropy``) or torch's chunked op.

    torch stores the classifier as (V, D): ``W.T`` is passed, a view.
    """
    torch = torch_module()
    assert torch is not None, TORCH_MISSING
    F = torch.nn.functional
    labels = torch.from_numpy(y)
    if chunked and not hasattr(F, "linear_cross_entropy"):
        raise RuntimeError(f"torch {torch.__version__} has no F.linear_cross_entropy")

    def run() -> tuple[float, dict[str, np.ndarray]]:
        inputs = torch.from_numpy(X).requires_grad_()
        weights = torch.from_numpy(W.T).requires_grad_()
        if chunked:
            options = torch.nn.LinearCrossEntropyOptions()
            loss = F.linear_cross_entropy(inputs, weights, labels, options=options)
        else:
            loss = F.cross_entropy(F.linear(inputs, weights), labels)
        loss.backward()
        return float(loss.detach()), {"X": inputs.grad.numpy(), "W": weights.grad.numpy().T}

    return run


_PEAK_GROWTH = """
import json, os, sys, threading, time
from benchmarks.peers import torch_linear_cross_entropy
from benchmarks.workloads import linear_ce_inputs
shape, chunked = tuple(json.loads(sys.argv[1])), sys.argv[2] == "chunked"
page = os.sysconf("SC_PAGE_SIZE")
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
torch_linear_cross_entropy(*linear_ce_inputs((64, 16, 256)), chunked)()  # load torch's kernels first
run = torch_linear_cross_entropy(*linear_ce_inputs(shape), chunked)
before, peak, done = resident(), [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], resident())
        time.sleep(0.0005)
sampler = threading.Thread(target=sample)
sampler.start()
_, grads = run()
done.set()
sampler.join()
print(max(peak[0], resident()) - before - sum(g.nbytes for g in grads.values()))
"""


def torch_working_memory(shape: tuple[int, int, int], chunked: bool) -> int:
    """Bytes a torch linear cross-entropy call adds to a fresh process's resident memory at its peak, less the
    gradients it returns.

    torch's CPU allocator keeps no statistics and tracemalloc does not see it,
    so a child process that holds the inputs already samples its resident set
    (``/proc/self/statm``) every half millisecond during one call: an estimate
    at page granularity, on Linux only.
    """
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-c", _PEAK_GROWTH, json.dumps(list(shape)), "chunked" if chunked else "dense"]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
    return max(0, int(done.stdout.split()[-1]))
