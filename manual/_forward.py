"""The forward pass, shared by every variant: what differs between them is the gradient."""

from __future__ import annotations

import numpy as np


def two_layer_forward(params: dict[str, np.ndarray], X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``Z1, H1, S`` of eq. (7): ``Z1 = X W1 + b1``, ``H1 = max(0, Z1)``, ``S = H1 W2 + b2``."""
    Z1 = X @ params["W1"] + params["b1"]
    H1 = np.maximum(Z1, 0)
    S = H1 @ params["W2"] + params["b2"]
    return Z1, H1, S


def l2_penalty(reg: float, *weights: np.ndarray) -> float:
    """Eq. (3): ``R = reg * 0.5 * sum of the squared entries of every weight matrix``."""
    return 0.5 * reg * sum(float(np.sum(np.square(W, dtype=np.float64))) for W in weights)
