"""Hand-derived gradients of the softmax classifier loss, one module per variant.

``VARIANTS`` maps a name to a module; every module exposes the same six
functions with the same signatures (``softmax``, ``softmax_jacobian``,
``softmax_loss``, ``linear_loss``, ``two_layer_loss``,
``linear_cross_entropy``), so tests, benchmarks and the ``softmax-grad``
command take any of them. Add a variant here and it is
tested and timed with no other edit. ``vectorized`` is the textbook closed
form, each equation one line; ``tuned`` computes the same numbers with the
engineering that NumPy speed needs (cache blocks, a shift-free window).

>>> import manual
>>> list(manual.VARIANTS)
['per_element', 'per_row', 'vectorized', 'tuned', 'compiled']
"""

from __future__ import annotations

from types import ModuleType

from manual import compiled, per_element, per_row, tuned, vectorized

VARIANTS: dict[str, ModuleType] = {
    "per_element": per_element,
    "per_row": per_row,
    "vectorized": vectorized,
    "tuned": tuned,
    "compiled": compiled,
}

__all__ = ["VARIANTS", "compiled", "per_element", "per_row", "tuned", "vectorized"]
